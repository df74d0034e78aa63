"""The real `healthdns-supervisor` on loopback: answers, health, processes, signals."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from harness import Backend, Server, config_toml

INTERVAL, FALL, RISE = 0.2, 2, 1


def config(port: int) -> str:
    check = {"port": port, "interval": INTERVAL, "timeout": 0.1, "rise": RISE, "fall": FALL}
    example = {
        "origin": "example.test", "aliases": ["example.org"],
        "nameservers": ["ns1.example.net", "ns2.example.net"], "ttl": 60,
        "soa": {"ttl": 600, "minimum": 30},
        "records": {
            "www": {"ttl": 5, "pool": {"addresses": ["127.0.0.1", "127.0.0.2"], "check": check}},
            "static": {"a": ["192.0.2.1"], "aaaa": ["2001:db8::1"]},
            "a.b": {"txt": ['"deep"']},
            "alias": {"cname": "static"},
            "ext": {"cname": "www.example.net."},
        },
    }
    other = {"origin": "other.test", "nameservers": ["ns1.other.test"],
             "records": {"ns1": {"a": ["192.0.2.53"]}}}
    return config_toml(zones=[example, other], server={"responders": 2})


@pytest.fixture(scope="module")
def backends() -> Iterator[tuple[Backend, Backend]]:
    first = Backend("127.0.0.1")
    second = Backend("127.0.0.2", first.port)
    first.up()  # 127.0.0.1 up, 127.0.0.2 down when the server starts
    yield first, second
    first.close()
    second.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           backends: tuple[Backend, Backend]) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("integration")
    srv = Server([], tmp, config(backends[0].port)).start()
    yield srv
    assert srv.stop() == 0


def rrsets(response: dns.message.Message) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rrset in response.answer:
        key = (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype))
        out[key] = {rd.to_text() for rd in rrset}
    return out


def test_health_aware_from_the_first_query(server: Server) -> None:
    # Readiness came after the first probe round: the down backend was never served.
    assert server.addresses("www.example.test") == {"127.0.0.1"}


def test_static_answer_is_authoritative(server: Server) -> None:
    response = server.query("static.example.test", "AAAA")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert not response.flags & dns.flags.RA
    assert rrsets(response) == {("static.example.test.", "AAAA"): {"2001:db8::1"}}
    assert response.answer[0].ttl == 60


def test_nxdomain_carries_soa_with_negative_ttl(server: Server) -> None:
    response = server.query("nothere.example.test", "A")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.flags & dns.flags.AA
    assert not response.answer
    (soa,) = response.authority
    assert soa.rdtype == dns.rdatatype.SOA and soa.name.to_text() == "example.test."
    assert soa.ttl == 30  # min(SOA TTL 600, MINIMUM 30), RFC 2308


@pytest.mark.parametrize("name,rdtype", [
    ("static.example.test", "MX"),  # the name has other types
    ("b.example.test", "A"),  # empty non-terminal (RFC 8020)
    ("example.test", "A"),  # the apex
    ("static.example.test", "TYPE65000"),  # unknown type (RFC 3597)
])
def test_nodata(server: Server, name: str, rdtype: str) -> None:
    response = server.query(name, rdtype)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert not response.answer
    assert [r.rdtype for r in response.authority] == [dns.rdatatype.SOA]


def test_below_a_leaf_is_nxdomain(server: Server) -> None:
    assert server.query("x.static.example.test").rcode() == dns.rcode.NXDOMAIN


def test_outside_our_zones_is_refused_without_aa(server: Server) -> None:
    response = server.query("www.example.com", "A")
    assert response.rcode() == dns.rcode.REFUSED
    assert not response.flags & dns.flags.AA


def test_apex_soa_and_ns(server: Server) -> None:
    ns = server.query("example.test", "NS")
    assert rrsets(ns) == {("example.test.", "NS"): {"ns1.example.net.", "ns2.example.net."}}
    soa = server.query("example.test", "SOA").answer[0][0]
    assert soa.mname.to_text() == "ns1.example.net."
    assert soa.minimum == 30


def test_second_zone(server: Server) -> None:
    assert server.addresses("ns1.other.test") == {"192.0.2.53"}


def test_alias_zone_answers_with_its_own_names(server: Server) -> None:
    assert rrsets(server.query("static.example.org")) == {
        ("static.example.org.", "A"): {"192.0.2.1"}}
    chained = rrsets(server.query("alias.example.org", "A"))
    assert chained == {("alias.example.org.", "CNAME"): {"static.example.org."},
                       ("static.example.org.", "A"): {"192.0.2.1"}}
    assert server.query("example.org", "SOA").answer[0].name.to_text() == "example.org."


def test_cname_out_of_zone_is_not_followed(server: Server) -> None:
    response = server.query("ext.example.test", "A")
    assert response.rcode() == dns.rcode.NOERROR
    assert rrsets(response) == {("ext.example.test.", "CNAME"): {"www.example.net."}}


def test_tcp_gives_the_same_answer(server: Server) -> None:
    udp = server.query("static.example.test", "A")
    tcp = server.query("static.example.test", "A", tcp=True)
    assert rrsets(udp) == rrsets(tcp) and tcp.rcode() == dns.rcode.NOERROR


def test_question_echoed_exactly_as_sent(server: Server) -> None:
    query = dns.message.make_query("StAtIc.ExAmPlE.TeSt", "A")
    wire = query.to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(wire, (server.host, server.port))
        response = sock.recv(4096)
    question_end = wire.index(b"\x00", 12) + 5
    assert response[:2] == wire[:2]
    assert response[12:question_end] == wire[12:question_end]
    assert dns.message.from_wire(response).answer[0][0].to_text() == "192.0.2.1"


def test_dig_sees_the_same(server: Server, dig: str) -> None:
    out = subprocess.run([dig, "@" + server.host, "-p", str(server.port), "+norec", "+short",
                          "static.example.test", "A"], capture_output=True, text=True,
                         timeout=10, check=True)
    assert out.stdout.split() == ["192.0.2.1"]
    flags = subprocess.run([dig, "@" + server.host, "-p", str(server.port), "+norec",
                            "nothere.example.test"], capture_output=True, text=True,
                           timeout=10, check=True).stdout
    assert "status: NXDOMAIN" in flags and re.search(r"flags: qr aa;", flags)


def test_health_changes_reach_the_answers(server: Server,
                                          backends: tuple[Backend, Backend]) -> None:
    first, second = backends
    bound = INTERVAL * FALL + 1.0  # the promise: interval x fall + 1 s
    second.up()
    server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.1",
                                                                        "127.0.0.2"},
                      INTERVAL * RISE + 1.0, "127.0.0.2 coming up")
    first.down()
    took = server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.2"},
                             bound, "127.0.0.1 going away")
    assert took <= bound
    second.down()  # every address down: serve-all answers with the whole pool
    server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.1",
                                                                        "127.0.0.2"},
                      bound, "serve-all when all are down")
    assert server.addresses("www.example.org") == {"127.0.0.1", "127.0.0.2"}
    first.up()
    server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.1"},
                      INTERVAL * RISE + 1.0, "127.0.0.1 coming back")


def test_serial_increases_on_change(server: Server, backends: tuple[Backend, Backend]) -> None:
    before = server.query("example.test", "SOA").answer[0][0].serial
    second = backends[1]
    second.up()
    try:
        server.wait_until(lambda: "127.0.0.2" in server.addresses("www.example.test"),
                          INTERVAL * RISE + 1.0, "127.0.0.2 coming up")
        after = server.query("example.test", "SOA").answer[0][0].serial
        assert after != before and (after - before) % 2**32 < 2**31  # RFC 1982 greater
    finally:
        second.down()
        server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.1"},
                          INTERVAL * FALL + 1.0, "127.0.0.2 going away again")


def responder_pids(srv: Server) -> dict[str, int]:
    """responderN -> the pid the supervisor most recently logged for it."""
    found: dict[str, int] = {}
    for match in re.finditer(r"(responder\d+) started \(pid (\d+)\)", srv.output()):
        found[match.group(1)] = int(match.group(2))
    return found


def test_sighup_does_not_stop_the_server(server: Server) -> None:
    os.kill(server.pid, signal.SIGHUP)
    server.wait_for("SIGHUP", 5)
    assert server.addresses("static.example.test") == {"192.0.2.1"}


def test_killed_responder_is_replaced_while_queries_are_answered(server: Server) -> None:
    pids = responder_pids(server)
    victim = pids["responder1"]
    answered = total = 0
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    replaced = False
    while time.monotonic() < deadline and (total < 200 or not replaced):
        total += 1
        try:
            if server.addresses("static.example.test") == {"192.0.2.1"}:
                answered += 1
        except dns.exception.Timeout:
            pass
        replaced = responder_pids(server)["responder1"] != victim
    assert replaced, "responder1 was not respawned"
    assert answered / total >= 0.95, f"{answered}/{total} answered"
    assert victim not in server.children()


@pytest.mark.parametrize("role", ["signer", "prober"])
def test_killed_signer_or_prober_is_replaced(server: Server, backends: tuple[Backend, Backend],
                                             role: str) -> None:
    pid = int(re.findall(rf"{role} started \(pid (\d+)\)", server.output())[-1])
    serial = server.query("example.test", "SOA").answer[0][0].serial
    os.kill(pid, signal.SIGKILL)
    server.wait_for(rf"{role} started \(pid \d+\)", 5)
    if role == "signer":  # the new signer takes over where the old one stopped
        server.wait_for(r"signer\S* INFO resuming from generation \d+", 10)
    else:  # the new prober's first round changes nothing that is served
        server.wait_for("first round: 1 of 2 targets up", 5)
    assert server.addresses("www.example.test") == {"127.0.0.1"}
    assert server.addresses("static.example.test") == {"192.0.2.1"}
    # Nothing served changed: neither role's respawn bumps a serial.
    assert server.query("example.test", "SOA").answer[0][0].serial == serial
    # And the new one works: a health change still reaches the answers, and back.
    backends[1].up()
    server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.1", "127.0.0.2"},
                      5, "127.0.0.2 served once it is up")
    backends[1].down()
    server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.1"},
                      5, "127.0.0.2 gone once it is down")
    after = server.query("example.test", "SOA").answer[0][0].serial
    assert (after - serial) % 2**32 < 2**31 and after != serial


def test_a_pool_larger_than_an_answer_rotates(tmp_path: Path) -> None:
    pool = {"addresses": ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"],
            "check": {"port": 9, "interval": 1, "timeout": 0.1}, "max_answers": 2}
    server = Server(["--responders", "1"], tmp_path,
                    config_toml({"www": {"pool": pool}}, server={"responders": None})).start()
    try:
        seen: set[frozenset[str]] = set()

        def several() -> bool:
            answer = server.addresses("www.example.test")
            assert len(answer) == 2
            seen.add(frozenset(answer))
            return len(seen) > 1

        server.wait_until(several, 3, "a second set of addresses")
        assert set().union(*seen) <= {"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"}
    finally:
        assert server.stop() == 0
