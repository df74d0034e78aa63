"""Check header values are secrets: no surface a reader sees shows them, or anything made
from them (a digest of a guessable `Authorization` value is found by trying).

One real supervisor checks one HTTP backend twice, with checks that differ only in their
`Authorization` value (one right, one wrong, so the log has lines for both); then every
surface is searched for either value: the log, /status, /metrics, `healthdns-ctl` (explain,
targets), `--check-config`, a configuration error, and the state file.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import HttpBackend, Server, read_request, reply, run_cli

from healthdns.shared import config

GOOD = "Bearer right-" + secrets.token_hex(8)
BAD = "Bearer wrong-" + secrets.token_hex(8)


class AuthBackend(HttpBackend):
    """An HTTP backend that answers 200 to requests that carry GOOD, and 401 to others."""

    def answer(self, conn: socket.socket) -> None:
        _answer(conn)


def _answer(conn: socket.socket) -> None:
    request = read_request(conn)
    if request is not None:
        status = b"200 OK" if f"Authorization: {GOOD}".encode() in request else b"401 No"
        reply(conn, b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def toml(port: int, state_file: Path, good: str = GOOD, bad: str = BAD) -> str:
    check = (f'kind = "http", port = {port}, path = "/health", interval = 2, timeout = 2, '
             "rise = 1, fall = 1")
    return f"""
        [server]
        listen = ["127.0.0.1:0"]
        responders = 1

        [control]
        state_file = "{state_file}"

        [[zones]]
        origin = "example.test"
        nameservers = ["ns1.example.net"]

        [zones.records.www]
        pool = {{ addresses = ["127.0.0.1"], check = {{ {check}, headers = {{ Authorization = "{good}" }} }} }}

        [zones.records.api]
        pool = {{ addresses = ["127.0.0.1"], check = {{ {check}, headers = {{ Authorization = "{bad}" }} }} }}
    """


@pytest.fixture(scope="module")
def backend() -> Iterator[AuthBackend]:
    found = AuthBackend()
    found.up()
    yield found
    found.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, backend: AuthBackend) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("secrets")
    srv = Server([], tmp, toml(backend.port, tmp / "state.json")).start()
    # The wrong value's check is down in the first round, told before the server is ready.
    assert "is down: status 401" in srv.output(), srv.output()
    yield srv
    srv.stop()


def _get(server: Server, path: str) -> str:
    with urllib.request.urlopen(server.control + path, timeout=5) as response:
        text: str = response.read().decode()
        return text


def _ctl(server: Server, *args: str) -> str:
    done = subprocess.run([str(Path(sys.executable).parent / "healthdns-ctl"), "--url",
                           server.control, *args], capture_output=True, text=True, timeout=20, check=False)
    return done.stdout + done.stderr


def _assert_secret_free(surface: str, text: str) -> None:
    for value in (GOOD, BAD):
        secret = value.split()[1]
        assert secret not in text, f"{surface} shows a header value:\n{text}"


def test_the_log_tells_the_two_checks_apart_without_their_values(server: Server) -> None:
    log = server.output()
    assert "http 127.0.0.1:" in log and "[headers=Authorization #2]" in log, log
    _assert_secret_free("the log", log)


def test_status_metrics_and_ctl_show_no_header_value(server: Server) -> None:
    surfaces = {"/status": _get(server, "/status"), "/metrics": _get(server, "/metrics"),
                "explain": _ctl(server, "explain", "api.example.test"),
                "explain --json": _ctl(server, "--json", "explain", "www.example.test"),
                "targets": _ctl(server, "targets"), "status": _ctl(server, "status")}
    for surface, text in surfaces.items():
        _assert_secret_free(surface, text)


def test_status_ids_hold_no_bit_of_the_header_values(server: Server, backend: AuthBackend,
                                                     tmp_path: Path) -> None:
    """The ids are those of the same file with other values: nothing in them comes from the
    values, so there is nothing to try guesses against (an unkeyed digest fell to 20,000
    guesses in 0.23 s)."""
    shown = sorted(t["id"] for t in json.loads(_get(server, "/status"))["targets"])
    assert len(shown) == 2  # the two checks are two targets
    path = tmp_path / "other.toml"
    path.write_text(toml(backend.port, tmp_path / "state.json", good="Bearer a", bad="Bearer b"))
    assert sorted(config.from_mapping(config.read(path)).checks()) == shown


def test_the_state_file_keeps_no_header_value(server: Server, tmp_path: Path) -> None:
    state = next(Path(p) for p in server.args if p.endswith(".toml")).parent / "state.json"
    server.wait_until(state.exists, 10, "the state file written")
    _assert_secret_free("the state file", state.read_text())


def test_check_config_redacts_header_values(server: Server) -> None:
    path = next(p for p in server.args if p.endswith(".toml"))
    done = run_cli(["--config", path, "--check-config"])
    assert done.returncode == 0, done.stderr
    _assert_secret_free("--check-config", done.stdout + done.stderr)
    zone = json.loads(done.stdout)["zones"][0]
    check = zone["records"]["www"]["pool"]["groups"][0]["check"]
    assert check["headers"] == {"Authorization": "<redacted>"}


def test_a_config_error_in_a_header_does_not_show_its_value(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml(80, tmp_path / "s.json", good=GOOD + "\\n"))
    done = run_cli(["--config", str(path), "--check-config"])
    assert done.returncode == 1
    assert "headers.Authorization: the value holds a line break" in done.stderr, done.stderr
    _assert_secret_free("a configuration error", done.stdout + done.stderr)
