"""The control endpoint of the real supervisor: health, readiness, metrics, status, overrides."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Backend, Server, config_toml, run_cli
from prometheus_client.parser import text_string_to_metric_families

INTERVAL = 0.2
TOKEN = "test-token-0123456789abcdef"


def config(port: int, state_file: Path, token: str | None = TOKEN, responders: int = 1) -> str:
    check = {"port": port, "interval": INTERVAL, "timeout": 0.1, "rise": 1, "fall": 1}
    pool = {"addresses": ["127.0.0.1", "127.0.0.2"], "check": check}
    return config_toml({"www": {"ttl": 5, "pool": pool},
                        "api": {"pool": {**pool, "policy": "empty"}},
                        "static": {"a": ["192.0.2.1"]}},
                       server={"responders": responders},
                       control={"state_file": str(state_file), "token": token or None})


@pytest.fixture
def server(tmp_path: Path, backends: tuple[Backend, Backend]) -> Iterator[Server]:
    srv = Server([], tmp_path, config(backends[0].port, tmp_path / "overrides.json")).start()
    yield srv
    srv.stop()


def get(server: Server, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(server.control + path, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def call(server: Server, method: str, path: str, body: dict[str, Any] | None = None,
         token: str | None = TOKEN) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.control + path, data=data, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def metrics(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    code, text = get(server, "/metrics")
    assert code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(server: Server, name: str, labels: dict[str, str]) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    return sum(value for (sample, have), value in metrics(server).items()
               if sample == name and labels.items() <= dict(have).items())


def status(server: Server) -> dict[str, Any]:
    code, text = get(server, "/status")
    assert code == 200
    doc: dict[str, Any] = json.loads(text)
    return doc


def wait(predicate: Any, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)  # polling period, not a readiness guess
    raise AssertionError(f"{what} did not happen within {timeout} s")


def test_the_bound_address_is_logged_and_port_0_resolved(server: Server) -> None:
    assert server.control.startswith("http://127.0.0.1:")
    assert not server.control.endswith(":0")


def test_healthz_and_readyz(server: Server) -> None:
    assert get(server, "/healthz") == (200, "ok\n")
    # Ready once both responders report the generation the signer last published.
    wait(lambda: get(server, "/readyz")[0] == 200, "readyz")
    assert get(server, "/readyz")[1].startswith("ready: generation ")


@pytest.fixture
def two_responders(tmp_path: Path, backends: tuple[Backend, Backend]) -> Iterator[Server]:
    srv = Server([], tmp_path, config(backends[0].port, tmp_path / "o.json", responders=2))
    yield srv.start()
    srv.stop()


def test_metrics_count_queries_and_never_go_back_after_a_responder_restart(
        two_responders: Server) -> None:
    server = two_responders
    for _ in range(5):
        server.query("static.example.test")
    server.query("static.example.test", "TXT", tcp=True)
    udp_a = {"proto": "udp", "type": "A"}
    # The first two at each responder take the fast path (the cache admits a query on its
    # second miss), the others its packet cache: 5 split over 2 responders leave 1 to 3.
    wait(lambda: total(server, "healthdns_dns_requests_total", udp_a) == 5,
         "five UDP A queries counted")
    assert total(server, "healthdns_dns_requests_total", {**udp_a, "path": "cache"}) in (1, 2, 3)
    wait(lambda: total(server, "healthdns_dns_requests_total",
                       {"proto": "tcp", "type": "TXT"}) == 1, "one TCP TXT query counted")
    assert total(server, "healthdns_dns_responses_total", {"rcode": "NOERROR"}) >= 6
    before = total(server, "healthdns_dns_requests_total", {})
    victim = status(server)["responders"][1]["pid"]  # the pid is in /status
    os.kill(victim, signal.SIGKILL)
    restarts = ("healthdns_child_restarts_total", (("role", "responder"),))
    wait(lambda: metrics(server).get(restarts) == 1, "the restart counted")
    wait(lambda: get(server, "/readyz")[0] == 200, "ready again after the restart")
    assert total(server, "healthdns_dns_requests_total", {}) >= before
    found = metrics(server)
    assert ("healthdns_build_info", ()) not in found  # it has labels
    assert any(name == "healthdns_build_info" for name, _ in found)


def test_backend_metrics_and_status_follow_health(server: Server,
                                                  backends: tuple[Backend, Backend]) -> None:
    check = f"tcp {backends[0].port}"
    up = ("healthdns_backend_up", (("address", "127.0.0.2"), ("check", check),
                                   ("name", "www.example.test"), ("zone", "example.test")))
    wait(lambda: metrics(server).get(up) == 1.0, "127.0.0.2 up")
    backends[1].down()
    wait(lambda: metrics(server).get(up) == 0.0, "127.0.0.2 down in the metrics")
    doc = status(server)
    assert doc["targets"][0]["address"] == "127.0.0.2"  # down first
    assert doc["targets"][0]["state"] == "down"
    assert doc["targets"][0]["names"] == ["www.example.test", "api.example.test"]
    www = next(n for n in doc["names"] if n["name"] == "www.example.test")
    assert www["down"] == ["127.0.0.2"] and www["up"] == ["127.0.0.1"]
    changes = ("healthdns_backend_state_changes_total",
               (("address", "127.0.0.2"), ("check", f"tcp {backends[0].port}")))
    assert metrics(server)[changes] >= 1


def test_drain_takes_an_address_out_within_one_publish(server: Server) -> None:
    server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.1",
                                                                         "127.0.0.2"},
                      5, "both addresses served")
    start = time.monotonic()
    code, answer = call(server, "POST", "/overrides",
                        {"address": "127.0.0.2", "action": "drain", "reason": "maintenance"})
    assert code == 200, answer
    server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.1"}, 2,
                      "127.0.0.2 drained")
    assert time.monotonic() - start < 1.0  # one publish, plus the HTTP and DNS round trips
    doc = status(server)
    assert doc["overrides"][0]["address"] == "127.0.0.2"
    assert doc["overrides"][0]["reason"] == "maintenance"
    target = next(t for t in doc["targets"] if t["address"] == "127.0.0.2")
    assert (target["state"], target["probed"], target["override"]) == ("down", "up", "drain")
    code, _ = call(server, "DELETE", "/overrides/127.0.0.2")
    assert code == 200
    server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.1",
                                                                         "127.0.0.2"},
                      2, "127.0.0.2 back")


def test_force_serves_a_down_address_until_it_expires(server: Server,
                                                      backends: tuple[Backend, Backend]) -> None:
    backends[1].down()
    server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.1"}, 5,
                      "127.0.0.2 down")
    code, _ = call(server, "POST", "/overrides",
                   {"address": "127.0.0.2", "action": "force", "expires_in": 1.0})
    assert code == 200
    server.wait_until(lambda: "127.0.0.2" in server.addresses("www.example.test"), 2,
                      "127.0.0.2 forced up")
    server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.1"}, 4,
                      "the force expired")
    assert status(server)["overrides"] == []


def test_write_calls_need_the_token_and_valid_fields(server: Server) -> None:
    body = {"address": "127.0.0.2", "action": "drain"}
    assert call(server, "POST", "/overrides", body, token=None)[0] == 401
    assert call(server, "POST", "/overrides", body, token="wrong-token-0123456789")[0] == 401
    code, answer = call(server, "POST", "/overrides", {"address": "192.0.2.9",
                                                       "action": "drain"})
    assert code == 400 and "192.0.2.9" in answer["error"]
    code, answer = call(server, "POST", "/overrides", {"address": "127.0.0.2",
                                                       "action": "sleep"})
    assert code == 400 and answer["error"].startswith("action:")
    code, answer = call(server, "DELETE", "/overrides/127.0.0.1")
    assert code == 404


def test_without_a_token_write_calls_are_refused(tmp_path: Path,
                                                 backends: tuple[Backend, Backend]) -> None:
    srv = Server([], tmp_path, config(backends[0].port, tmp_path / "o.json", token=None))
    srv.start()
    try:
        code, answer = call(srv, "POST", "/overrides", {"address": "127.0.0.2",
                                                        "action": "drain"})
        assert code == 403 and "token" in answer["error"]
    finally:
        srv.stop()


def test_overrides_survive_a_restart(tmp_path: Path, backends: tuple[Backend, Backend]) -> None:
    toml = config(backends[0].port, tmp_path / "overrides.json")
    first = Server([], tmp_path, toml).start()
    try:
        assert call(first, "POST", "/overrides", {"address": "127.0.0.2", "action": "drain",
                                                  "reason": "kept"})[0] == 200
    finally:
        first.stop()
    kept = json.loads((tmp_path / "overrides.json").read_text())["state"]["overrides"]
    assert [(o["address"], o["action"]) for o in kept] == [("127.0.0.2", "drain")]
    second = Server([], tmp_path, toml).start()
    try:
        second.wait_until(lambda: second.addresses("www.example.test") == {"127.0.0.1"}, 5,
                          "the drain restored")
        assert status(second)["overrides"][0]["reason"] == "kept"
    finally:
        second.stop()


def test_control_listen_empty_turns_it_off(tmp_path: Path,
                                           backends: tuple[Backend, Backend]) -> None:
    srv = Server(["--control-listen", ""], tmp_path,
                 config(backends[0].port, tmp_path / "o.json")).start()
    try:
        assert srv.control == ""
        assert "control: listening" not in srv.output()
    finally:
        srv.stop()


@pytest.mark.parametrize(("toml", "error"), [
    ('[control]\nlisten = "127.0.0.1"', "control.listen: '127.0.0.1' has no port"),
    ('[control]\nlisten = "nowhere:80"', "control.listen: 'nowhere:80': 'nowhere' is not"),
    ('[control]\ntoken = "short"', "control.token: the token must be at least 16"),
    ('[control]\ntoken = "0123456789abcdef0"\ntoken_file = "/x"',
     "control.token_file: give token or token_file, not both"),
    ('[control]\ntoken_file = "/nonexistent/token"', "control.token_file: cannot read"),
])
def test_control_config_errors_name_the_field(tmp_path: Path, toml: str, error: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml + '\n[[zones]]\norigin = "example.test"\n'
                    'nameservers = ["ns1.example.net"]\n')
    result = run_cli(["--config", str(path), "--check-config"])
    assert result.returncode == 1
    assert error in result.stderr, result.stderr


def test_a_busy_control_port_stops_the_start_with_its_name(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = tmp_path / "c.toml"
        path.write_text('[server]\nlisten = ["127.0.0.1:0"]\n[[zones]]\norigin = "example.test"'
                        '\nnameservers = ["ns1.example.net"]\n')
        result = run_cli(["--config", str(path), "--control-listen", f"127.0.0.1:{port}"])
    assert result.returncode == 1
    assert f"control: cannot listen on 127.0.0.1:{port}" in result.stderr + result.stdout


def test_a_name_force_fills_its_pool_and_a_drain_empties_it(
        server: Server, backends: tuple[Backend, Backend]) -> None:
    server.wait_until(lambda: len(server.addresses("www.example.test")) == 2, 5, "both up")
    backends[1].down()
    server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.1"}, 5,
                      "127.0.0.2 down")
    code, answer = call(server, "POST", "/overrides", {"name": "WWW.example.test.",
                                                       "action": "force"})
    assert code == 200, answer
    server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.1",
                                                                         "127.0.0.2"},
                      2, "the name forced: every address served")
    www = next(n for n in status(server)["names"] if n["name"] == "www.example.test")
    assert (www["override"], www["all_down"]) == ("force", False)
    # Drained, every address counts as down: the pool's policy answers (api: "empty").
    assert call(server, "POST", "/overrides", {"name": "api.example.test",
                                               "action": "drain"})[0] == 200
    server.wait_until(lambda: server.addresses("api.example.test") == set(), 2,
                      "api drained")
    assert server.addresses("www.example.test") == {"127.0.0.1", "127.0.0.2"}  # still forced
    wait(lambda: total(server, "healthdns_record_all_down", {"name": "api.example.test"}) == 1,
         "all down in the metrics")
    assert call(server, "DELETE", "/overrides/www.example.test")[0] == 200
    server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.1"}, 2,
                      "back to the checks' verdict")
    code, answer = call(server, "POST", "/overrides", {"name": "static.example.test",
                                                       "action": "drain"})
    assert code == 400 and "checked pool" in answer["error"]


def test_status_says_what_each_name_answers_and_which_rule_chose_it(
        server: Server, backends: tuple[Backend, Backend]) -> None:
    def www() -> dict[str, Any]:
        found: dict[str, Any] = next(n for n in status(server)["names"]
                                     if n["name"] == "www.example.test")
        return found

    wait(lambda: www()["answers"] and www()["answers"][0]["addresses"] == ["127.0.0.1",
                                                                           "127.0.0.2"],
         "both served")
    assert www()["answers"] == [{"type": "A", "addresses": ["127.0.0.1", "127.0.0.2"],
                                 "rule": "healthy", "group": 0, "per_answer": 2,
                                 "rotates": False, "variants": 1}]
    assert www()["pool"] == {"groups": [["127.0.0.1", "127.0.0.2"]], "weights": [[1, 1]],
                             "min_healthy": 1, "max_answers": 0, "policy": "serve-all",
                             "backup": []}
    assert www()["if_all_down"] == {"policy": "serve-all",
                                    "answers": {"A": ["127.0.0.1", "127.0.0.2"]}}
    backends[0].down()
    backends[1].down()
    wait(lambda: www()["answers"][0]["rule"] == "policy serve-all", "every address down")
    api = next(n for n in status(server)["names"] if n["name"] == "api.example.test")
    assert api["answers"] == [{"type": "A", "addresses": [], "rule": "policy empty",
                               "group": None, "per_answer": 0, "rotates": False,
                               "variants": 1}]
    assert api["if_all_down"] == {"policy": "empty", "answers": {"A": []}}


def test_check_durations_and_failures_by_reason(server: Server,
                                                backends: tuple[Backend, Backend]) -> None:
    labels = {"address": "127.0.0.2", "check": f"tcp {backends[0].port}"}
    wait(lambda: total(server, "healthdns_backend_check_duration_seconds_count", labels) >= 2,
         "checks of 127.0.0.2 counted")
    backends[1].down()
    wait(lambda: total(server, "healthdns_backend_check_failures_total",
                       {**labels, "reason": "refused"}) >= 1, "a refused check counted")
    target = next(t for t in status(server)["targets"] if t["address"] == "127.0.0.2")
    assert "refused" in target["reason"].lower()
    assert target["failures"]["refused"] >= 1
    buckets = total(server, "healthdns_backend_check_duration_seconds_bucket",
                    {**labels, "le": "+Inf"})
    assert buckets == total(server, "healthdns_backend_check_duration_seconds_count", labels)


def test_responders_generation_and_snapshot_age(two_responders: Server) -> None:
    server = two_responders
    wait(lambda: get(server, "/readyz")[0] == 200, "ready")
    found = metrics(server)
    generation = found[("healthdns_generation", ())]
    for slot in ("0", "1"):
        assert found[("healthdns_responder_generation", (("responder", slot),))] == generation
        age = found[("healthdns_responder_snapshot_age_seconds", (("responder", slot),))]
        assert 0 <= age < 60
    assert found[("healthdns_zone_serial", (("zone", "example.test"),))] > 0


def test_every_documented_metric_is_exposed(server: Server) -> None:
    """The operations page's metrics table and the Grafana dashboard name only real metrics."""
    docs = Path(__file__).parent.parent / "docs"
    table = re.findall(r"^\| `(healthdns_\w+)` \|", (docs / "operations.md").read_text(),
                       re.MULTILINE)
    dashboard = set(re.findall(r"healthdns_\w+", (docs / "grafana-dashboard.json").read_text()))
    wait(lambda: get(server, "/readyz")[0] == 200, "ready")
    wait(lambda: total(server, "healthdns_backend_check_duration_seconds_count", {}) > 0,
         "checks counted")
    _, text = get(server, "/metrics")
    exposed = set(re.findall(r"^# TYPE (\w+)", text, re.MULTILINE))
    exposed |= {name + suffix for name in exposed for suffix in ("_total", "_bucket")}
    assert len(table) >= 20
    assert sorted(set(table) - exposed) == []
    assert sorted(dashboard - exposed) == []


def test_slow_clients_delay_neither_health_changes_nor_other_clients(
        server: Server, backends: tuple[Backend, Backend]) -> None:
    host, port = server.control.removeprefix("http://").rsplit(":", 1)
    stuck = []
    for _ in range(50):  # each sends half a request line and then nothing
        sock = socket.create_connection((host, int(port)), timeout=5)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        stuck.append(sock)
    try:
        server.wait_until(lambda: len(server.addresses("www.example.test")) == 2, 5, "both up")
        backends[1].down()
        server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.1"}, 3,
                          "127.0.0.2 out of the answers while clients hang")
        assert get(server, "/healthz") == (200, "ok\n")
    finally:
        for sock in stuck:
            sock.close()


def test_check_config_does_not_print_the_token(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[control]\ntoken = "{TOKEN}"\n[[zones]]\norigin = "example.test"\n'
                    'nameservers = ["ns1.example.net"]\n')
    result = run_cli(["--config", str(path), "--check-config"])
    assert result.returncode == 0, result.stderr
    assert TOKEN not in result.stdout
    assert json.loads(result.stdout)["control"]["token"] == "<redacted>"
