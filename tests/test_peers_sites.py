"""Several sites on loopback: three real healthdns instances as each other's peers, each
prober sending its checks from a source address of its own, and backends that refuse the
connections of one source only (a partition between one vantage and one backend).

One vantage cut off from a backend: no instance's verdict flips, and all three keep serving
it. Two of three cut off: all three drop it, and answer the same. Forged, replayed and
oversized reports are refused and counted in /metrics. A vantage that fences says so; peers
killed go stale, and a site left alone keeps its last verdict.
"""

from __future__ import annotations

import base64
import json
import random
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Server, config_toml

from healthdns.peers import wire

NET = f"127.{random.randint(64, 250)}.{random.randint(1, 250)}"  # apart from other tests
SOURCES = {name: f"{NET}.{i}" for i, name in enumerate("abc", 1)}  # each vantage's prober
LISTEN = {name: f"{NET}.{i}" for i, name in enumerate("abc", 11)}  # each one's peers.listen
PEER_PORT = 18053
CUT, KEPT = f"{NET}.21", f"{NET}.22"  # the backend cut off from vantages, and one that is not
SECRET = base64.b64encode(b"k" * 32).decode()
INTERVAL = 0.2  # the peers' reports
CHECK_INTERVAL = 0.5  # the checks': a timeout of 0.4 s holds on a loaded machine
DEADLINE = 20.0


class Backend:
    """An HTTP backend on (host, port) that answers 200, and resets the connections of the
    sources in `cut` right after they are accepted."""

    def __init__(self, host: str, port: int = 0) -> None:
        self.sock = socket.create_server((host, port))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.cut: set[str] = set()
        self.open = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.open:
            try:
                conn, (source, _) = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                if source in self.cut:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    continue
                conn.settimeout(0.5)
                try:
                    request = b""
                    while b"\r\n\r\n" not in request:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        request += chunk
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                                 b"Connection: close\r\n\r\nok")
                except OSError:
                    pass

    def close(self) -> None:
        self.open = False
        self.thread.join()
        self.sock.close()


def site_config(name: str, port: int) -> str:
    check = {"kind": "http", "port": port, "interval": CHECK_INTERVAL, "timeout": 0.4,
             "rise": 1, "fall": 2}
    peers = [{"name": other, "url": f"http://{LISTEN[other]}:{PEER_PORT}", "secret": SECRET}
             for other in "abc" if other != name]
    return config_toml(
        {"www": {"ttl": 5, "pool": {"addresses": [CUT, KEPT], "check": check}}},
        prober={"source": [SOURCES[name]], "fence_min_targets": 2},
        peers={"name": name, "listen": f"{LISTEN[name]}:{PEER_PORT}", "plain_http": True,
               "interval": INTERVAL, "stale_after": 3.0, "peers": peers})


@pytest.fixture(scope="module")
def backends() -> Iterator[tuple[Backend, Backend]]:
    cut = Backend(CUT)
    kept = Backend(KEPT, cut.port)
    yield cut, kept
    cut.close()
    kept.close()


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory,
          backends: tuple[Backend, Backend]) -> Iterator[dict[str, Server]]:
    servers: dict[str, Server] = {}
    try:
        for name in "abc":
            tmp = tmp_path_factory.mktemp(f"site-{name}")
            servers[name] = Server([], tmp, site_config(name, backends[0].port)).start()
        for server in servers.values():  # every peer heard: each vantage's view counts
            wait(lambda s=server: all(p["fresh"] for p in status(s)["peers"]),
                 "every peer fresh")
        yield servers
    finally:
        for server in servers.values():
            assert server.stop() == 0


def status(server: Server) -> dict[str, object]:
    with urllib.request.urlopen(server.control + "/status", timeout=5) as response:
        found: dict[str, object] = json.loads(response.read())
        return found


def metrics(server: Server) -> str:
    with urllib.request.urlopen(server.control + "/metrics", timeout=5) as response:
        text: str = response.read().decode()
        return text


def target(server: Server, address: str) -> dict[str, object]:
    rows = status(server)["targets"]
    assert isinstance(rows, list)
    return next(row for row in rows if row["address"] == address)


def wait(predicate: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)  # polling period, not a readiness guess
    raise AssertionError(f"{what}: not within {timeout} s")


def explained(server: Server, address: str) -> dict[str, Any]:
    """What `healthdns-ctl explain` says of `address` in www's A answer: its peers part."""
    query = urllib.parse.urlencode({"name": "www.example.test", "type": "A"})
    with urllib.request.urlopen(f"{server.control}/explain?{query}", timeout=5) as response:
        doc = json.loads(response.read())
    rows = [row for answer in doc["answers"] for row in answer.get("addresses") or ()
            if row["address"] == address]
    assert len(rows) == 1, doc
    peers: dict[str, Any] = rows[0]["peers"]
    return peers


def vantage(said: dict[str, Any], name: str) -> dict[str, Any]:
    row: dict[str, Any] = next(v for v in said["vantages"] if v["vantage"] == name)
    return row


def failed_checks(server: Server, address: str) -> int:
    failures = target(server, address)["failures"]
    assert isinstance(failures, dict)
    return sum(failures.values())


def test_one_vantage_cut_off_flips_no_verdict_anywhere(
        sites: dict[str, Server], backends: tuple[Backend, Backend]) -> None:
    cut, _ = backends
    before = {name: target(s, CUT)["changes"] for name, s in sites.items()}
    assert all(target(s, CUT)["state"] == "up" for s in sites.values())
    cut.cut = {SOURCES["c"]}
    # Site c's own prober sees it down for many intervals (fall is 2): the others outvote it.
    start = failed_checks(sites["c"], CUT)
    wait(lambda: failed_checks(sites["c"], CUT) >= start + 6, "c's checks of it failing")
    for name, server in sites.items():  # the disagreement is shown, at a glance
        cut_id = target(server, CUT)["id"]
        wait(lambda s=server, i=cut_id: status(s)["disagreeing"] == [
            {"id": i, "vantages": {"a": "up", "b": "up", "c": "down"}, "outcome": "up",
             "verdict": "up", "flip_due": None}],
            f"{name} showing the disagreement")
        said = explained(server, CUT)  # each vantage's say, the verdict and its rule
        assert said["verdict"] == "up", said
        assert said["rule"] == "up: 2 of 3 fresh vantages say up, quorum majority (2 up " \
            "needed)", said
        assert said["held"] is False, said
        assert {v["vantage"]: (v["state"], v["standing"]) for v in said["vantages"]} == {
            "a": ("up", "fresh"), "b": ("up", "fresh"), "c": ("down", "fresh")}, said
        age = vantage(said, "c")["age"]
        assert isinstance(age, float) and 0 <= age <= 3.0, said  # within stale_after
        kept = explained(server, KEPT)  # an address all agree on: each says its verdict
        assert [v["state"] for v in kept["vantages"]] == ["up"] * 3, kept
        row = target(server, CUT)
        assert row["state"] == "up", name
        assert row["changes"] == before[name], f"{name}: its verdict flipped"
        assert server.addresses("www.example.test") == {CUT, KEPT}, name
    told = subprocess.run(  # healthdns-ctl explain, as an operator reads it
        [sys.executable, "-m", "healthdns.supervisor.ctl", "--url", sites["a"].control,
         "explain", "www.example.test", "A"], capture_output=True, text=True, timeout=30,
        check=False)
    assert told.returncode == 0, told.stderr
    assert f"vantages on {CUT}: up: 2 of 3 fresh vantages say up" in told.stdout, told.stdout
    assert re.search(r"c down \(fresh, \d+\.\d s ago\)", told.stdout), told.stdout
    cut.cut = set()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium, as tests/test_status_page.py drives it; skipped without it."""
    page = pytest.importorskip("test_status_page")
    if not (page.CHROMIUM and page.DRIVER):
        pytest.skip("chromium and chromium-driver are not installed")
    options = page.webdriver.ChromeOptions()
    options.binary_location = str(page.CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = page.webdriver.Chrome(
        options=options, service=page.webdriver.ChromeService(executable_path=str(page.DRIVER)))
    yield driver
    driver.quit()


def shown_on_page(browser: Any) -> dict[str, Any]:
    """The page's vantages section, read in one script (it replaces its rows every second)."""
    found: dict[str, Any] = browser.execute_script("""
        const texts = row => [...row.cells].map(c => c.innerText.trim());
        return {
          hidden: document.getElementById("vantages").hidden,
          peers: [...document.querySelectorAll("#peers tbody tr")].map(texts),
          note: document.getElementById("contested").textContent,
          rows: [...document.querySelectorAll("#disagreeing tbody tr")].map(texts),
        };""")
    return found


def test_the_status_page_shows_the_disagreement_at_a_glance(
        sites: dict[str, Server], backends: tuple[Backend, Backend], browser: Any) -> None:
    cut, _ = backends
    cut.cut = {SOURCES["c"]}
    try:
        browser.get(sites["a"].control + "/")
        wait(lambda: shown_on_page(browser)["rows"] != [], "the page showing a disagreement")
        shown = shown_on_page(browser)
        assert shown["hidden"] is False
        assert shown["note"] == "1 target(s) the vantages do not all agree on", shown
        [row] = shown["rows"]
        assert row[0] == CUT and row[2:5] == ["up", "up", "a: up b: up c: down"], shown
        assert [(p[0], p[1]) for p in shown["peers"]] == [("b", "fresh"), ("c", "fresh")]
    finally:
        cut.cut = set()
    wait(lambda: shown_on_page(browser)["rows"] == [], "the page showing agreement again")
    assert shown_on_page(browser)["note"] == "every vantage agrees on every target"


def test_two_vantages_of_three_cut_off_drop_it_everywhere(
        sites: dict[str, Server], backends: tuple[Backend, Backend]) -> None:
    cut, _ = backends
    cut.cut = {SOURCES["b"], SOURCES["c"]}
    try:
        for name, server in sites.items():
            wait(lambda s=server: target(s, CUT)["state"] == "down",
                 f"{name} dropping it")
        for name, server in sites.items():
            wait(lambda s=server: s.addresses("www.example.test") == {KEPT},
                 f"{name} answering without it")
    finally:
        cut.cut = set()
    for name, server in sites.items():
        wait(lambda s=server: target(s, CUT)["state"] == "up",
             f"{name} taking it back")


def post(to: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(f"http://{LISTEN[to]}:{PEER_PORT}{wire.PATH}", body,
                                     headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return e.code


def rejected(server: Server, peer: str, reason: str) -> float:
    prefix = f'healthdns_peer_reports_rejected_total{{peer="{peer}",reason="{reason}"}} '
    line = next(x for x in metrics(server).splitlines() if x.startswith(prefix))
    return float(line.split()[-1])


def test_forged_replayed_and_oversized_reports_are_refused_and_counted(
        sites: dict[str, Server]) -> None:
    a = sites["a"]
    rows = status(a)["targets"]
    assert isinstance(rows, list)
    states = {str(row["id"]): False for row in rows}
    counts = {r: rejected(a, "b", r) for r in ("signature", "replay", "oversized")}
    forged, signature = wire.encode(wire.Report("b", time.time(), states), b"x" * 32)
    assert post("a", forged, {wire.SENDER: "b", wire.SIGNATURE: signature}) == 403
    old, signature = wire.encode(wire.Report("b", time.time() - 3600, states),
                                 base64.b64decode(SECRET))
    assert post("a", old, {wire.SENDER: "b", wire.SIGNATURE: signature}) == 403
    assert post("a", b"\0" * (5 << 20), {wire.SENDER: "b", wire.SIGNATURE: "0"}) == 413
    for reason in counts:
        wait(lambda r=reason: rejected(a, "b", r) == counts[r] + 1,
             f"{reason} counted")
    assert target(a, CUT)["state"] == "up"  # none of them moved the verdict


def peer_row(server: Server, peer: str) -> dict[str, object]:
    rows = status(server)["peers"]
    assert isinstance(rows, list)
    row: dict[str, object] = next(row for row in rows if row["peer"] == peer)
    return row


def test_a_vantage_whose_prober_fences_says_so_and_flips_nothing(
        sites: dict[str, Server], backends: tuple[Backend, Backend]) -> None:
    before = {name: target(s, CUT)["changes"] for name, s in sites.items()}
    for backend in backends:  # c sees every target fail: its own network, most likely
        backend.cut = {SOURCES["c"]}
    try:
        for name in "ab":
            wait(lambda s=sites[name]: peer_row(s, "c")["fenced"] is True,
                 f"{name} hearing that c is fenced")
        for name, server in sites.items():
            assert target(server, CUT)["state"] == "up", name
            assert target(server, CUT)["changes"] == before[name], name
    finally:
        for backend in backends:
            backend.cut = set()
    wait(lambda: peer_row(sites["a"], "c")["fenced"] is False, "c's fence lifted")


def peer_fresh(server: Server, peer: str) -> bool:
    return bool(peer_row(server, peer)["fresh"])


def test_peers_killed_go_stale_and_a_site_alone_keeps_its_last_verdict(
        sites: dict[str, Server], backends: tuple[Backend, Backend]) -> None:
    """Runs last: it stops and restarts sites b and c."""
    cut, _ = backends
    a = sites["a"]
    before = target(a, CUT)["changes"]
    assert sites["c"].stop() == 0
    for name in "ab":
        wait(lambda s=sites[name]: not peer_fresh(s, "c"), f"{name} marking c stale")
        said = explained(sites[name], CUT)
        assert vantage(said, "c")["standing"] == "stale", said
        assert vantage(said, "c")["state"] == "up", said  # its last say
        assert vantage(said, "c")["age"] > 3.0, said
        assert said["rule"].startswith("up: 2 of 2 fresh vantages say up"), said
    for name in "ab":  # two of three vantages are still a majority: no alert, no flip
        assert status(sites[name])["peers_too_few_vantages"] is False
        assert target(sites[name], CUT)["state"] == "up"
    assert sites["b"].stop() == 0
    wait(lambda: status(a)["peers_too_few_vantages"] is True, "a raising the alert")
    assert "healthdns_peers_too_few_vantages 1.0" in metrics(a)
    cut.cut = {SOURCES["a"]}  # alone, a keeps the last verdict (cut_off = "keep")
    try:
        start = failed_checks(a, CUT)
        wait(lambda: failed_checks(a, CUT) >= start + 6, "a's checks of it failing")
        assert target(a, CUT)["state"] == "up"
        assert target(a, CUT)["changes"] == before
    finally:
        cut.cut = set()
    for name in "bc":
        sites[name] = Server(sites[name].args).start()
    for name, server in sites.items():
        for peer in set("abc") - {name}:
            wait(lambda s=server, p=peer: peer_fresh(s, p), f"{name} hearing {peer} again")
    wait(lambda: status(a)["peers_too_few_vantages"] is False, "a's alert cleared")
