"""Peers over HTTPS with verification on: two real instances, each serving a certificate from a
test CA. Instance a trusts that CA and its reports reach b; b trusts another CA only, so it
refuses a's certificate and none of its reports reach a. A stranger flooding b's listener with
connections (plain TCP, half-done TLS) is held to the cap per client address, counted, and
keeps no report of a's from being taken."""

from __future__ import annotations

import base64
import json
import os
import random
import re
import signal
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme
from harness import Server, config_toml

from healthdns.peers import gate

NET = f"127.{random.randint(64, 250)}.{random.randint(1, 250)}"
LISTEN = {"a": f"{NET}.41", "b": f"{NET}.42"}
PORT = 18054
SECRET = base64.b64encode(b"t" * 32).decode()
DEADLINE = 20.0


def site(name: str, tmp: Path, trusted: trustme.CA, issuer: trustme.CA) -> str:
    cert = issuer.issue_cert(LISTEN[name])
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp / "chain.pem"))
    cert.private_key_pem.write_to_path(str(tmp / "key.pem"))
    trusted.cert_pem.write_to_path(str(tmp / "ca.pem"))
    other = "b" if name == "a" else "a"
    check = {"port": 9, "interval": 0.2, "timeout": 0.1}
    return config_toml(
        {"www": {"pool": {"addresses": ["127.0.0.1"], "check": check}}},
        peers={"name": name, "listen": f"{LISTEN[name]}:{PORT}", "interval": 0.2,
               "cert_file": str(tmp / "chain.pem"), "key_file": str(tmp / "key.pem"),
               "ca_file": str(tmp / "ca.pem"),
               "peers": [{"name": other, "url": f"https://{LISTEN[other]}:{PORT}",
                          "secret": SECRET}]})


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    ca, stranger = trustme.CA(), trustme.CA()
    servers: dict[str, Server] = {}
    try:
        for name, trusted in (("a", ca), ("b", stranger)):
            tmp = tmp_path_factory.mktemp(f"tls-{name}")
            servers[name] = Server([], tmp, site(name, tmp, trusted, ca)).start()
        yield servers
    finally:
        for server in servers.values():
            assert server.stop() == 0


def peer_row(server: Server) -> dict[str, object]:
    with urllib.request.urlopen(server.control + "/status", timeout=5) as response:
        rows = json.loads(response.read())["peers"]
    assert isinstance(rows, list) and len(rows) == 1
    row: dict[str, object] = rows[0]
    return row


def wait(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)  # polling period, not a readiness guess
    raise AssertionError(f"{what}: not within {DEADLINE} s")


def test_a_verified_peer_is_heard_and_an_unverified_certificate_is_refused(
        sites: dict[str, Server]) -> None:
    a, b = sites["a"], sites["b"]
    wait(lambda: peer_row(b)["fresh"] is True, "a's reports reaching b over HTTPS")
    wait(lambda: int(str(peer_row(b)["failed"])) >= 3, "b failing to send to a: a's certificate is not from a CA b trusts")
    row = peer_row(a)
    assert row["fresh"] is False and row["received"] == 0
    assert "certificate" in b.output().lower()


def test_a_reload_with_peers_takes_new_checks_and_refuses_a_change_of_peers(
        sites: dict[str, Server]) -> None:
    """The prober's full report on the new checks goes through the peers process: the signer
    gets the verdict on them, and the new name answers."""
    a = sites["a"]
    path = Path(a.args[a.args.index("--config") + 1])
    text = path.read_text()
    check = '{ port = 9, interval = 0.2, timeout = 0.1 }'
    added = text.replace("[zones.records.www.pool]", "[zones.records.api.pool]\n"
                         f'addresses = ["127.0.0.2"]\ncheck = {check}\n\n'
                         "[zones.records.www.pool]", 1)
    assert added != text
    path.write_text(added)
    os.kill(a.pid, signal.SIGHUP)
    a.wait_for(r"reloaded: zones changed: example\.test\.", 10)
    wait(lambda: a.addresses("api.example.test") == {"127.0.0.2"}, "the new name answering")
    path.write_text(added.replace('interval = 0.2\n', 'interval = 0.3\n', 1))
    os.kill(a.pid, signal.SIGHUP)
    a.wait_for("reload failed, still serving the previous configuration: peers changed", 10)
    wait(lambda: peer_row(sites["b"])["fresh"] is True, "a still heard by b")


def refused(server: Server) -> int:
    with urllib.request.urlopen(server.control + "/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(r"^healthdns_peer_connections_refused_total (\S+)$", text, re.MULTILINE)
    return int(float(found.group(1))) if found else -1


def closed(conn: socket.socket, within: float) -> bool:
    """The server closed `conn` (an end of file or a reset) within `within` seconds."""
    conn.settimeout(within)
    try:
        return conn.recv(64) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_a_stranger_flooding_the_listener_is_capped_counted_and_stops_no_report(
        sites: dict[str, Server]) -> None:
    b = sites["b"]
    wait(lambda: peer_row(b)["fresh"] is True, "a's reports reaching b")
    before = refused(b)
    flood = 3 * gate.PER_CLIENT
    conns: list[socket.socket] = []
    start = time.monotonic()
    try:
        for i in range(2 * flood):  # from one address: plain TCP, and TLS started, not done
            conn = socket.create_connection((LISTEN["b"], PORT), timeout=5,
                                            source_address=(f"{NET}.99", 0))
            conns.append(conn)
            if i % 2:
                conn.sendall(b"\x16\x03\x01\x02\x00\x01")  # a ClientHello's first bytes
        # Those over the cap from that address are closed at once; the first ones held.
        shut = [closed(conn, 0.5 if n < gate.PER_CLIENT else 5.0) for n, conn in enumerate(conns)]
        assert shut == [False] * gate.PER_CLIENT + [True] * (len(conns) - gate.PER_CLIENT)
        seconds = time.monotonic() - start
        other = socket.create_connection((LISTEN["b"], PORT), timeout=5,
                                         source_address=(f"{NET}.98", 0))
        conns.append(other)
        assert not closed(other, 0.5), "another address still gets in"
        wait(lambda: refused(b) >= before + len(conns) - 1 - gate.PER_CLIENT,
             "the refused connections counted in /metrics")
        heard = int(str(peer_row(b)["received"]))
        wait(lambda: int(str(peer_row(b)["received"])) >= heard + 5 and peer_row(b)["fresh"]
             is True, "a's reports still taken by b while the stranger holds its places")
        # A handshake that never finishes has a deadline: the places come back.
        assert all(closed(conn, gate.HANDSHAKE + 10) for conn in conns[:gate.PER_CLIENT])
        said = b.output().count("refused a connection from")
        assert 1 <= said <= seconds + 2, "logged once per interval at most"
    finally:
        for conn in conns:
            conn.close()
