"""The TTL that follows health, on the wire: dig sees a pool's TTL move with the health of its
checks, the signed answer keeps its RRSIG's original TTL at the max while the records and the
RRSIG are served with the rung, and delv validates each rung served.

The pool: 127.0.0.1 (checked every 1 s, fall 3, rise 9) first, 127.0.0.2 (every 5 s, fall 3,
rise 3) second, ttl = "16/1" (rungs 16, 8, 4, 2, 1). All up: 127.0.0.1 is 3 failed checks
from down, the first of which may run at once: T_next = 2 s, TTL 2. With 127.0.0.1 down it is
9 passed checks from up (8 s) and 127.0.0.2 3 failed ones from down (10 s): TTL 8.

`deep` (127.0.0.3, checked every 1 s, fall 6) measures the staleness bound: after its backend
goes down at t, no answer that still carries it outlives the failover (the first answer
without it, at f) by more than min, since the TTL shrinks with every failed check.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.rdatatype
import pytest
from conftest import need_tool
from harness import Backend, Server, config_toml
from test_control import TOKEN, call
from test_dnssec import Unbound, delv, generate

MAX = 16


DEEP = Backend("127.0.0.3")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Backend, str]]:
    tmp = tmp_path_factory.mktemp("healthttl")
    key, anchor = generate(tmp, "ECDSAP256SHA256", "csk")
    first, second = Backend("127.0.0.1"), Backend("127.0.0.2")
    first.up()
    second.up()
    DEEP.up()
    deep = {"addresses": ["127.0.0.3"],
            "check": {"port": DEEP.port, "interval": 1.0, "timeout": 0.5, "fall": 6, "rise": 1}}
    groups = [
        {"addresses": ["127.0.0.1"], "check": {"port": first.port, "interval": 1.0,
                                               "timeout": 0.5, "fall": 3, "rise": 9}},
        {"addresses": ["127.0.0.2"], "check": {"port": second.port, "interval": 5.0,
                                               "timeout": 0.5, "fall": 3, "rise": 3}}]
    toml = config_toml({"www": {"pool": {"groups": groups, "ttl": f"{MAX}/1"}},
                        "deep": {"pool": {"groups": [deep, {"addresses": ["127.0.0.2"]}],
                                          "check": {"port": second.port}, "ttl": f"{MAX}/1"}},
                        "static": {"a": ["192.0.2.1"]}},
                       zone={"ttl": 60, "dnssec": {"csk": str(key)}},
                       control={"token": TOKEN})
    server = Server([], tmp, toml).start()
    yield server, first, anchor
    assert server.stop() == 0
    first.close()
    second.close()
    DEEP.close()


def dig(server: Server, name: str, *flags: str) -> list[list[str]]:
    """The answer section's records as dig prints them, split into fields."""
    out = subprocess.run([need_tool("dig"), "@" + server.host, "-p", str(server.port),
                          "+norec", "+noall", "+answer", *flags, name, "A"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    return [line.split() for line in out.splitlines() if line and not line.startswith(";")]


def ttls(server: Server) -> tuple[set[str], set[int]]:
    records = dig(server, "www.example.test")
    return {r[4] for r in records}, {int(r[1]) for r in records}


def check_signed(server: Server, ttl: int, anchor: str, tmp: Path) -> None:
    """The records and their RRSIG served at `ttl`, the RRSIG's original TTL the max; delv
    and a validating unbound both accept it."""
    records = dig(server, "www.example.test", "+dnssec")
    sigs = [r for r in records if r[3] == "RRSIG"]
    assert sigs and all(int(r[1]) == ttl for r in records), records
    assert all(int(r[7]) == MAX for r in sigs), sigs  # type covered, alg, labels, original
    out = delv(server, anchor, "example.test", "www.example.test", "A", tmp)
    assert "; fully validated" in out, out
    assert re.search(rf"www\.example\.test\.\s+{ttl}\s+IN\s+A", out), out
    resolver = Unbound(server, anchor, tmp).start()
    try:
        response = resolver.ask("www.example.test", "A")
        assert response.flags & dns.flags.AD and response.answer, response
    finally:
        resolver.stop()


def said(server: Server, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """What /explain says of a name's A answer, and its row of /status."""
    code, explained = call(server, "GET", f"/explain?name={name}&type=A")
    assert code == 200, explained
    (explained,) = explained["answers"]
    code, status = call(server, "GET", "/status")
    assert code == 200, status
    return explained, next(n for n in status["names"] if n["name"] == name)


def test_the_ttl_follows_health_and_every_rung_validates(
        served: tuple[Server, Backend, str], tmp_path: Path) -> None:
    server, first, anchor = served
    assert ttls(server) == ({"127.0.0.1"}, {2})
    check_signed(server, 2, anchor, tmp_path)
    explained, row = said(server, "www.example.test")
    assert (explained["ttl"], explained["ttl_max"]) == (2, MAX)
    assert explained["ttl_why"] == "TTL 2: 127.0.0.1 is 3 failed checks from down"
    assert (row["ttl"], row["ttl_why"]) == (2, explained["ttl_why"])
    first.down()
    server.wait_until(lambda: ttls(server)[0] == {"127.0.0.2"}, 30, "failover")
    assert ttls(server) == ({"127.0.0.2"}, {8})
    check_signed(server, 8, anchor, tmp_path)
    explained, row = said(server, "www.example.test")
    assert explained["ttl"] == row["ttl"] == 8
    assert row["ttl_why"] == "TTL 8: 127.0.0.1 is 9 passed checks from up"
    first.up()
    server.wait_until(lambda: ttls(server)[0] == {"127.0.0.1"}, 40, "failback")
    assert ttls(server) == ({"127.0.0.1"}, {2})


def test_names_without_a_range_keep_their_fixed_ttl(
        served: tuple[Server, Backend, str]) -> None:
    server = served[0]
    answer = server.query("static.example.test").answer
    assert [(r.rdtype, r.ttl) for r in answer] == [(dns.rdatatype.A, 60)]


def test_the_staleness_bound(served: tuple[Server, Backend, str]) -> None:
    server = served[0]
    seen: list[tuple[float, int, set[str]]] = []  # (when, TTL, addresses) of each answer
    assert server.addresses("deep.example.test") == {"127.0.0.3"}
    t = time.monotonic()
    DEEP.down()
    deadline = t + 40
    while time.monotonic() < deadline:
        answer = server.query("deep.example.test").answer
        seen.append((time.monotonic(), answer[0].ttl, {r.to_text() for r in answer[0]}))
        if "127.0.0.3" not in seen[-1][2]:
            break
        time.sleep(0.05)
    failover = seen[-1][0]
    assert seen[-1][2] == {"127.0.0.2"}, seen[-1]
    stale = [(at, ttl) for at, ttl, addresses in seen if "127.0.0.3" in addresses]
    # Up and passing: 6 failed checks from down, the first of which may run at once: 5 s, 4.
    assert stale[0][1] == 4, stale[:3]
    # Each failed check shortens it: before the flip the TTL came down to min.
    assert min(ttl for _, ttl in stale) == 1, stale
    slack = 1.5  # a count takes the prober, the supervisor and the signer to reach the answer
    late = [(round(at - t, 2), ttl) for at, ttl in stale if at + ttl > failover + 1 + slack]
    assert not late, (round(failover - t, 2), late)


def test_negative_answers_keep_the_soa_negative_ttl(served: tuple[Server, Backend, str]) -> None:
    """NODATA of a pooled name and NXDOMAIN carry the SOA at min(SOA TTL, MINIMUM), 60 s
    here (RFC 2308 3), whatever the pool's TTL."""
    server = served[0]
    for name, rdtype in (("www.example.test", "AAAA"), ("nothere.example.test", "A")):
        response = server.query(name, rdtype, use_edns=0, want_dnssec=True)
        assert not response.answer
        soa = [r for r in response.authority if r.rdtype == dns.rdatatype.SOA]
        assert [r.ttl for r in soa] == [60], response
