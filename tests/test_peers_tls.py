"""Peers over HTTPS with verification on: two real instances, each serving a certificate from a
test CA. Instance a trusts that CA and its reports reach b; b trusts another CA only, so it
refuses a's certificate and none of its reports reach a."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme
from harness import Server, config_toml

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
