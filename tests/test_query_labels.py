"""The `zone` and `family` labels of the DNS query counters (issue #9), as CoreDNS has them.

In process: whatever the query and whichever path answers it (fast, packet cache, slow), it is
counted under the zone its name falls in ("." for none of ours), the socket's family and the
protocol; the zone stays right when a new generation renumbers the zones. Then the real
supervisor: two zones queried over IPv4 and IPv6, UDP and TCP, and the labels in /metrics,
which never go back across a responder restart.
"""

from __future__ import annotations

import os
import re
import signal
import struct
from collections import Counter
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rcode
from harness import Server, has_ipv6
from hypothesis import given, settings
from hypothesis import strategies as st
from test_control import get, metrics, status, total, wait

from healthdns.responder.query import TCP, V6, Answerer
from healthdns.responder.table import Table
from healthdns.shared import config, messages
from healthdns.signer.main import Signer

CFG = config.from_mapping({
    "zones": [
        {"origin": "alpha.test", "aliases": ["alpha.example"], "nameservers": ["ns1.example.net"],
         "records": {"www": {"a": ["192.0.2.1"]}, "alias": {"cname": "www"},
                     "big": {"txt": [f'"{i} {"x" * 200}"' for i in range(4)]}}},  # truncated
        {"origin": "beta.test", "nameservers": ["ns1.example.net"],
         "records": {"www": {"a": ["192.0.2.2"], "txt": ['"beta"']}}},
    ],
})
PUBLISHED = Signer(CFG).update({}, full=True)
assert PUBLISHED is not None
SNAPSHOT = messages.decode_to_child(PUBLISHED.snapshot)
assert isinstance(SNAPSHOT, messages.Snapshot)
ORIGINS = [dns.name.from_text(o) for o in ("alpha.test", "alpha.example", "beta.test")]
NAMES = ["www.alpha.test", "WWW.Alpha.Test", "nothere.alpha.test", "alpha.test", "big.alpha.test",
         "alias.alpha.example", "x.www.alpha.example", "www.beta.test", "beta.test",
         "www.example.com", "test", "."]
TYPES = [1, 2, 6, 16, 28, 41, 252, 255, 65280]


def model_zone(wire: bytes) -> bytes:
    """The zone a query is counted under, worked out from its text: the origin its single
    question's name ends in (wire, lower-case), b"" when none or without one question."""
    query = dns.message.from_wire(wire, question_only=True)
    if len(query.question) != 1:
        return b""
    name = query.question[0].name
    for origin in ORIGINS:
        if name.is_subdomain(origin):
            return origin.canonicalize().to_wire()
    return b""


@st.composite
def queries(draw: st.DrawFn) -> bytes:
    """Well-formed queries (the fast path's shapes and the slow path's: other classes, opcodes,
    flags, EDNS versions and options, meta types, zero or two questions)."""
    name = dns.name.from_text(draw(st.sampled_from(NAMES))).to_wire()
    flags = draw(st.sampled_from([0, 0x0100, 0x0110, 0x0400, 0x2000, 0x0200]))
    question = name + struct.pack(">HH", draw(st.sampled_from(TYPES)),
                                  draw(st.sampled_from([1, 1, 3])))
    additional, arcount = b"", 0
    if draw(st.booleans()):
        options = b"\x00\x0a\x00\x08" + b"c" * 8 if draw(st.booleans()) else b""
        version = draw(st.sampled_from([0, 0, 0x00010000]))
        additional = b"\x00\x00\x29" + struct.pack(">HIH", 1232, version | 0x8000,
                                                   len(options)) + options
        arcount = 1
    qdcount = draw(st.sampled_from([1, 1, 1, 0, 2]))
    questions = question * qdcount
    return struct.pack(">HHHHHH", 7, flags, qdcount, 0, 0, arcount) + questions + additional


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(queries(), st.sampled_from([0, TCP, V6, TCP | V6])), max_size=30))
def test_every_path_counts_the_zone_family_and_protocol(
        asked: list[tuple[bytes, int]]) -> None:
    a = Answerer(1232)
    a.table = Table(SNAPSHOT, cache_size=100)
    expected: Counter[tuple[bool, int, bytes]] = Counter()
    for wire, transport in asked * 3:  # thrice: the cache admits on the second miss
        if a.answer(wire, transport) is not None:
            expected[(bool(transport & TCP), 2 if transport & V6 else 1, model_zone(wire))] += 1
    found: Counter[tuple[bool, int, bytes]] = Counter()
    for (_, tcp, family, zone, _, _), n in a.counts_by_label().items():
        found[(tcp, family, zone)] += n
    assert found == expected


def test_the_zone_survives_a_generation_that_renumbers_the_zones() -> None:
    """A reload may reorder zones: counts made before it keep the zone they were made in."""
    a = Answerer(1232)
    a.table = Table(SNAPSHOT, cache_size=100)
    alpha = dns.message.make_query("www.alpha.test", "A").to_wire()
    beta = dns.message.make_query("www.beta.test", "A").to_wire()
    for _ in range(3):
        a.answer(alpha, False)
    a.table = Table(messages.Snapshot(2, SNAPSHOT.zones[::-1]), cache_size=100)
    a.answer(beta, V6)
    zones: Counter[tuple[int, bytes]] = Counter()
    for (_, _, family, zone, _, _), n in a.counts_by_label().items():
        zones[(family, zone)] += n
    assert zones == {(1, ORIGINS[0].to_wire()): 3, (2, ORIGINS[2].to_wire()): 1}


# --- the real supervisor --------------------------------------------------------------------------

TOML = """
    [server]
    listen = [{listen}]
    responders = 2

    [[zones]]
    origin = "alpha.test"
    nameservers = ["ns1.example.net"]
    [zones.records.www]
    a = ["192.0.2.1"]

    [[zones]]
    origin = "Beta.Test"
    nameservers = ["ns1.example.net"]
    [zones.records.www]
    a = ["192.0.2.2"]
    txt = ['"beta"']
"""


def endpoints(server: Server) -> list[tuple[str, int]]:
    """Every address the ready line names (each port 0 got a port of its own)."""
    found = re.search(r"ready: serving \d+ zone\(s\) on (.*?) \(udp, tcp\)", server.output())
    assert found, server.output()
    return [(h.strip("[]"), int(p)) for h, p in
            (e.rsplit(":", 1) for e in found.group(1).split(", "))]


def ask(where: tuple[str, int], name: str, rdtype: str, tcp: bool = False) -> int:
    q = dns.message.make_query(name, rdtype)
    answer = (dns.query.tcp if tcp else dns.query.udp)(q, where[0], port=where[1], timeout=2)
    return answer.rcode()


def requests(server: Server, **labels: str) -> float:
    return total(server, "healthdns_dns_requests_total", labels)


def test_metrics_label_zone_family_and_protocol(tmp_path: Path) -> None:
    ipv6 = has_ipv6()
    listen = '"127.0.0.1:0", "[::1]:0"' if ipv6 else '"127.0.0.1:0"'
    server = Server([], tmp_path, TOML.format(listen=listen)).start()
    try:
        found = endpoints(server)
        v4 = found[0]
        v6 = found[1] if ipv6 else None
        for _ in range(3):  # fast, fast (admitted), then the packet cache
            assert ask(v4, "www.alpha.test", "A") == dns.rcode.NOERROR
        assert ask(v4, "www.beta.test", "TXT", tcp=True) == dns.rcode.NOERROR
        assert ask(v4, "www.example.com", "A") == dns.rcode.REFUSED
        if v6 is not None:
            for _ in range(2):
                assert ask(v6, "WWW.beta.test", "A") == dns.rcode.NOERROR
            assert ask(v6, "www.alpha.test", "AAAA", tcp=True) == dns.rcode.NOERROR
        wait(lambda: requests(server) == (8 if v6 else 5), "every query counted")
        assert requests(server, zone="alpha.test", proto="udp", family="1", type="A") == 3
        assert requests(server, zone="beta.test", proto="tcp", family="1", type="TXT") == 1
        assert requests(server, zone=".", proto="udp", family="1") == 1  # none of ours
        assert total(server, "healthdns_dns_responses_total",
                     {"zone": ".", "rcode": "REFUSED"}) == 1
        if v6 is not None:
            assert requests(server, zone="beta.test", proto="udp", family="2", type="A") == 2
            assert requests(server, zone="alpha.test", proto="tcp", family="2",
                            type="AAAA") == 1
            assert requests(server, family="2") == 3
        assert total(server, "healthdns_dns_responses_total",
                     {"zone": "alpha.test", "rcode": "NOERROR"}) == (4 if v6 else 3)
        # The zone label is the one healthdns_zone_serial has: the two join in PromQL.
        serials = {dict(labels)["zone"] for (name, labels) in metrics(server)
                   if name == "healthdns_zone_serial"}
        zones = {dict(labels)["zone"] for (name, labels) in metrics(server)
                 if name == "healthdns_dns_requests_total"}
        assert zones == {"."} | serials

        before = {key: value for key, value in metrics(server).items()
                  if key[0] == "healthdns_dns_requests_total"}
        os.kill(status(server)["responders"][1]["pid"], signal.SIGKILL)
        restarts = ("healthdns_child_restarts_total", (("role", "responder"),))
        wait(lambda: metrics(server).get(restarts) == 1, "the restart counted")
        wait(lambda: get(server, "/readyz")[0] == 200, "ready again after the restart")
        after = metrics(server)
        for key, value in before.items():  # each series: zone, family, proto, type, path
            assert after.get(key, 0.0) >= value, key
    finally:
        server.stop()
