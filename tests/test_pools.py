"""Pools: failover groups, min_healthy, all-down policies, weights and rotation.

First what the signer renders for a health state (exact, no processes), then the real
`healthdns-supervisor` against real backends on loopback: TCP, HTTPS with a test CA, IPv6.
"""

from __future__ import annotations

import collections
import http.server
import ssl
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import pytest
import trustme
from harness import Backend, Server, config_toml, has_ipv6

from healthdns.shared import config, messages, tables
from healthdns.signer import pool as pools
from healthdns.signer.main import Signer

# ---------------------------------------------------------------------------------------------
# What is served, per health state.


def zone(pool: dict[str, Any], **records: Any) -> config.Config:
    return config.from_mapping({"zones": [{
        "origin": "example.test", "nameservers": ["ns1.example.net"],
        "records": {"www": {"pool": {"check": {"port": 80}, **pool}}, **records},
    }]})


def up(cfg: config.Config, *addresses: str) -> dict[str, bool]:
    """Health where exactly `addresses` (of www's pool) are up."""
    pool = cfg.zones[0].records["www"].pool
    assert pool is not None
    states = {}
    for group in pool.groups:
        assert group.check is not None
        for a in group.addresses:
            states[group.check.target(a)] = a in addresses
    return states


def snapshot(cfg: config.Config, health: dict[str, bool]) -> messages.Snapshot:
    published = Signer(cfg).update(health, full=True)
    assert published is not None
    decoded = messages.decode_to_child(published.snapshot)
    assert isinstance(decoded, messages.Snapshot)
    return decoded


def key(name: str, rdtype: str) -> bytes:
    return dns.name.from_text(name).to_wire() + struct.pack(">H", dns.rdatatype.from_text(rdtype))


def parse(answer: tables.Answer, name: str, rdtype: str) -> dns.message.Message:
    header = struct.pack(">HHHHHH", 1, answer.flags, 1, answer.ancount, answer.nscount,
                         answer.arcount)
    wire = key(name, rdtype) + b"\x00\x01"
    return dns.message.from_wire(header + wire + answer.body)


def served(snap: messages.Snapshot, name: str = "www.example.test",
           rdtype: str = "A") -> list[str]:
    table = snap.zones[0]
    answer = table.answers.get(key(name, rdtype))
    if answer is None:  # NODATA: the name exists, without this type
        assert dns.name.from_text(name).to_wire() in table.names
        return []
    response = parse(answer, name, rdtype)
    assert response.rcode() == dns.rcode.NOERROR
    return [rd.to_text() for rrset in response.answer for rd in rrset
            if rrset.rdtype == dns.rdatatype.from_text(rdtype)]


def rotation(snap: messages.Snapshot, name: str = "www.example.test",
             rdtype: str = "A") -> list[list[str]]:
    table = snap.zones[0]
    variants = table.variants[key(name, rdtype)]
    assert table.answers[key(name, rdtype)] == variants[0]  # for responders that do not rotate
    return [[rd.to_text() for rrset in parse(v, name, rdtype).answer for rd in rrset
             if rrset.rdtype == dns.rdatatype.from_text(rdtype)] for v in variants]


GROUPS = {"groups": [{"addresses": ["192.0.2.1", "192.0.2.2"]},
                     {"addresses": ["198.51.100.1", "198.51.100.2"]}]}


@pytest.mark.parametrize(("pool", "healthy", "expected"), [
    (GROUPS, ["192.0.2.1", "192.0.2.2", "198.51.100.1"], ["192.0.2.1", "192.0.2.2"]),
    (GROUPS, ["192.0.2.2", "198.51.100.1"], ["192.0.2.2"]),  # min_healthy 1: still primary
    (GROUPS, ["198.51.100.1", "198.51.100.2"], ["198.51.100.1", "198.51.100.2"]),
    ({**GROUPS, "min_healthy": 2}, ["192.0.2.2", "198.51.100.1", "198.51.100.2"],
     ["198.51.100.1", "198.51.100.2"]),
    # No group has two up: the first with any up serves what it has (degraded beats dark).
    ({**GROUPS, "min_healthy": 2}, ["192.0.2.2", "198.51.100.1"], ["192.0.2.2"]),
    ({**GROUPS, "min_healthy": 2}, ["198.51.100.2"], ["198.51.100.2"]),
    # All down: serve-all answers as if every check passed, that is with the first group.
    (GROUPS, [], ["192.0.2.1", "192.0.2.2"]),
    ({**GROUPS, "policy": "backup", "backup": ["203.0.113.9"]}, [], ["203.0.113.9"]),
    ({**GROUPS, "policy": "backup", "backup": ["203.0.113.9"]}, ["198.51.100.2"],
     ["198.51.100.2"]),
    ({**GROUPS, "policy": "empty"}, [], []),
])
def test_failover_groups(pool: dict[str, Any], healthy: list[str],
                         expected: list[str]) -> None:
    cfg = zone(pool)
    assert served(snapshot(cfg, up(cfg, *healthy))) == expected


def test_each_family_fails_over_on_its_own() -> None:
    cfg = zone({"groups": [{"addresses": ["192.0.2.1", "2001:db8::1"]},
                           {"addresses": ["198.51.100.1", "2001:db8::2"]}],
                "policy": "backup", "backup": ["2001:db8::99"]})
    snap = snapshot(cfg, up(cfg, "2001:db8::1", "198.51.100.1"))
    assert served(snap, rdtype="A") == ["198.51.100.1"]
    assert served(snap, rdtype="AAAA") == ["2001:db8::1"]
    snap = snapshot(cfg, up(cfg))  # all down: the backup has no IPv4 address, so A is NODATA
    assert served(snap, rdtype="A") == []
    assert served(snap, rdtype="AAAA") == ["2001:db8::99"]


def test_max_answers_rotates_through_every_address() -> None:
    addresses = [f"192.0.2.{i}" for i in range(1, 6)]
    cfg = zone({"addresses": addresses, "max_answers": 2})
    snap = snapshot(cfg, up(cfg, *addresses))
    assert rotation(snap) == [["192.0.2.1", "192.0.2.2"], ["192.0.2.2", "192.0.2.3"],
                              ["192.0.2.3", "192.0.2.4"], ["192.0.2.4", "192.0.2.5"],
                              ["192.0.2.5", "192.0.2.1"]]
    # Only the healthy ones rotate; when they fit in one answer, nothing rotates.
    snap = snapshot(cfg, up(cfg, "192.0.2.2", "192.0.2.4"))
    assert served(snap) == ["192.0.2.2", "192.0.2.4"]
    assert key("www.example.test", "A") not in snap.zones[0].variants


def test_weights_set_how_often_an_address_comes_first() -> None:
    cfg = zone({"addresses": ["192.0.2.1", "192.0.2.2", "192.0.2.3"], "weights": [6, 3, 3],
                "max_answers": 1})
    variants = rotation(snapshot(cfg, up(cfg, "192.0.2.1", "192.0.2.2", "192.0.2.3")))
    assert len(variants) == 4  # 6:3:3 is 2:1:1
    assert collections.Counter(v[0] for v in variants) == {
        "192.0.2.1": 2, "192.0.2.2": 1, "192.0.2.3": 1}
    assert variants[0] != variants[1]  # interleaved, not in runs


def test_weighted_order_is_smooth_and_bounded() -> None:
    assert pools.weighted_order((5, 1, 1)) == (0, 0, 1, 0, 2, 0, 0)
    assert len(pools.weighted_order((100,) * 64)) == 64
    assert len(pools.weighted_order(tuple(range(1, 65)))) == pools.MAX_VARIANTS


def test_a_cname_to_a_rotating_pool_rotates_too() -> None:
    cfg = zone({"addresses": ["192.0.2.1", "192.0.2.2"], "max_answers": 1},
               web={"cname": "www"})
    snap = snapshot(cfg, up(cfg, "192.0.2.1", "192.0.2.2"))
    variants = snap.zones[0].variants[key("web.example.test", "A")]
    assert [served_from(v) for v in variants] == [["192.0.2.1"], ["192.0.2.2"]]


def served_from(answer: tables.Answer) -> list[str]:
    response = parse(answer, "web.example.test", "A")
    return [rd.to_text() for rrset in response.answer for rd in rrset
            if rrset.rdtype == dns.rdatatype.A]


def test_a_change_in_rotation_is_a_new_serial() -> None:
    addresses = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    cfg = zone({"addresses": addresses, "max_answers": 1})
    signer = Signer(cfg)
    assert signer.update(up(cfg, *addresses), full=True) is not None
    assert signer.update(up(cfg, *addresses), full=True) is None
    assert signer.update(up(cfg, "192.0.2.1", "192.0.2.3"), full=True) is not None


# ---------------------------------------------------------------------------------------------
# The real server against real backends.

INTERVAL = 0.2


@pytest.fixture
def tcp_backends() -> Iterator[list[Backend]]:
    first = Backend("127.0.0.1")
    rest = [Backend(f"127.0.0.{i}", first.port) for i in (2, 3)]
    backends = [first, *rest]
    for backend in backends:
        backend.up()
    yield backends
    for backend in backends:
        backend.close()


def test_failover_to_the_next_group_and_back(tmp_path: Path,
                                             tcp_backends: list[Backend]) -> None:
    primary = tcp_backends[0]
    check = {"port": primary.port, "interval": INTERVAL, "timeout": 0.1, "rise": 1, "fall": 1}
    server = Server([], tmp_path, config_toml({"www": {"pool": {
        "check": check, "policy": "backup", "backup": ["127.0.0.9"],
        "groups": [{"addresses": ["127.0.0.1"]}, {"addresses": ["127.0.0.2", "127.0.0.3"]}],
    }}})).start()
    try:
        assert server.addresses("www.example.test") == {"127.0.0.1"}
        primary.down()
        server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.2",
                                                                            "127.0.0.3"},
                          INTERVAL + 1.0, "failover to the second group")
        for backend in tcp_backends[1:]:
            backend.down()
        server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.9"},
                          INTERVAL + 1.0, "the backup when all are down")
        primary.up()
        server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.1"},
                          INTERVAL + 1.0, "back to the first group")
    finally:
        assert server.stop() == 0
    assert "tcp 127.0.0.1:" in server.output() and "is down: connection refused" in \
        server.output()


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        body = b"ok" if self.status == 200 else b"draining"
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def https_backend(tmp_path: Path) -> Iterator[tuple[int, Path, type[_Health]]]:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("www.example.test").configure_cert(context)
    handler = type("Handler", (_Health,), {"status": 200})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield httpd.server_address[1], ca_file, handler
    httpd.shutdown()
    httpd.server_close()


LOADED = 10.0  # seconds: a few check intervals, even with the host's CPUs taken


def test_https_check_through_the_server(tmp_path: Path,
                                        https_backend: tuple[int, Path, type[_Health]]) -> None:
    port, ca_file, handler = https_backend
    check = {"kind": "https", "port": port, "address": "127.0.0.1", "path": "/health",
             "host": "www.example.test", "ca_file": str(ca_file), "body": "ok",
             "interval": INTERVAL, "timeout": INTERVAL, "rise": 1, "fall": 1}
    server = Server([], tmp_path, config_toml({"www": {"pool": {
        "addresses": ["192.0.2.1"], "policy": "empty", "check": check}}})).start()
    try:
        # A first check that timed out on a loaded host is retried an interval later.
        server.wait_until(lambda: server.addresses("www.example.test") == {"192.0.2.1"},
                          LOADED, "up after a 200")
        handler.status = 503
        server.wait_until(lambda: server.addresses("www.example.test") == set(),
                          LOADED, "the pool emptied by a 503")
        handler.status = 200
        server.wait_until(lambda: server.addresses("www.example.test") == {"192.0.2.1"},
                          LOADED, "back after a 200")
    finally:
        assert server.stop() == 0
    assert (f"https 127.0.0.1:{port}/health (Host www.example.test) is down: status 503"
            in server.output())


@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback")
def test_aaaa_pool_is_checked_over_ipv6(tmp_path: Path) -> None:
    v6 = Backend("::1")
    v6.up()
    v4 = Backend("127.0.0.1", v6.port)  # same port, IPv4 side down: only ::1 passes
    try:
        check = {"port": v6.port, "interval": INTERVAL, "timeout": 0.1, "rise": 1, "fall": 1}
        server = Server([], tmp_path, config_toml({"www": {"pool": {
            "addresses": ["::1", "127.0.0.1"], "policy": "empty", "check": check}}})).start()
        try:
            assert server.addresses("www.example.test", "AAAA") == {"::1"}
            assert server.addresses("www.example.test", "A") == set()
            v6.down()
            server.wait_until(lambda: server.addresses("www.example.test", "AAAA") == set(),
                              INTERVAL + 1.0, "::1 going away")
        finally:
            assert server.stop() == 0
        assert f"tcp [::1]:{v6.port} is down: connection refused" in server.output()
    finally:
        v6.close()
        v4.close()
