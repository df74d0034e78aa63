"""The product's promise, end to end: what every pool serves follows the documented rules.

The real supervisor (2 responders) serves a zone that uses every pool feature, with real TCP
and HTTP backends on 127.0.1.x and 127.0.2.x (and ::1). A seeded random schedule takes
backends down and brings them back; after each change every name is asked many times, over
UDP and TCP, and every answer is compared with `pool_model`, an independent reading of
docs/configuration.md. The signed zone's answers must also validate (delv).

Below it, without processes: hypothesis draws any pool and health and the signer's rendered
answers must equal the model's; and the model is checked against the documentation's own
examples and promises.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import random
import re
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest
from conftest import need_tool
from harness import Backend, HttpBackend, Server, has_ipv6
from hypothesis import given, settings
from hypothesis import strategies as st
from pool_model import Group, Pool, chosen, expected, family, rule
from test_control import status

from healthdns.shared import config, messages, tables
from healthdns.signer.main import Signer

# A backend taken down refuses at once; the timeout only has to spare an up one on a busy
# machine (a starved prober or HTTP backend), where 0.2 s took healthy ones down.
INTERVAL, TIMEOUT, RISE, FALL = 0.5, 0.5, 1, 2
# How long a change may take to show in the log: FALL checks, the last one timing out, and a
# margin for a machine busy with other tests.
DETECTED = INTERVAL * max(RISE, FALL) + TIMEOUT + 5.0
# Deadlines, not targets (the failover time is bench/prober_scale.py's): until every responder
# serves a generation whose answers are the model's, and then until every documented answer
# has shown up (rotation turns), each answer checked meanwhile and for at least OBSERVED s.
SETTLED = 10.0
OBSERVED = 0.8
COVERED = 15.0
QUERY_TIMEOUT = 5.0  # a slow answer on a busy machine is not a wrong one
STEPS = 8
SEEDS = [int(s) for s in os.environ.get("HEALTHDNS_MODEL_SEEDS", "1,6").split(",")]

TCP = tuple(f"127.0.1.{i}" for i in range(1, 7))
HTTP = tuple(f"127.0.2.{i}" for i in range(1, 5))
V6 = ("::1",) if has_ipv6() else ()
BACKUP = ("127.0.9.1", "2001:db8::9")

POOLS = {
    # The known bug's pool: 4 addresses, 2 per answer, served in turn.
    "rot": Pool((Group(TCP[0:4]),), max_answers=2),
    # Weighted rotation; a CNAME leads to it; NODATA when all are down.
    "wrot": Pool((Group((TCP[4], TCP[5], TCP[0], TCP[1]), (2, 2, 1, 1)),), max_answers=2,
                 policy="empty"),
    # Failover with min_healthy over a TCP group, an HTTP group and a mixed-family group.
    "fo": Pool((Group(TCP[0:3]), Group(HTTP[0:2]), Group((TCP[5], *V6))), min_healthy=2,
               policy="backup", backup=BACKUP),
    # A weighted HTTP group rotating one address per answer, failing over to a TCP group.
    "fe": Pool((Group(HTTP[2:4], (3, 1)), Group((TCP[3], TCP[4]))), max_answers=1,
               policy="empty"),
    # Serve-all with a mixed-family first group.
    "sa": Pool((Group((TCP[4], *V6)), Group((TCP[5], TCP[2]))), min_healthy=2),
}
CNAMES = {"web": "wrot"}
SIGNED_POOLS = ("rot", "fe")
SIGNED_CNAMES = {"web": "rot"}
ZONE, ALIAS, SIGNED = "pool.test", "pool.example", "signed.test"
TTL = 1  # every zone's; a short TTL is what rotation wants
TTLS = {"fe": 7}  # a name's own TTL covers its pool's addresses too
NEGATIVE_TTL = {ZONE: 60, ALIAS: 60, SIGNED: 1}  # min(soa.ttl, soa.minimum): 3600/60, 3600/1


@dataclasses.dataclass(frozen=True)
class Question:
    """One name and type to ask, and the pool that answers it."""

    qname: str
    rdtype: str
    pool: str
    target: str  # the owner of the addresses: qname, or where its CNAME leads
    zone: str

    def __str__(self) -> str:
        return f"{self.qname} {self.rdtype}"

    @property
    def signed(self) -> bool:
        return self.zone == SIGNED

    @property
    def version(self) -> int:
        return 4 if self.rdtype == "A" else 6


@dataclasses.dataclass(frozen=True)
class Way:
    """How a question is sent: each reaches its own path in the responders."""

    name: str
    tcp: bool
    edns: bool


WAYS = (Way("UDP", False, True), Way("TCP", True, True), Way("UDP without EDNS", False, False),
        Way("TCP without EDNS", True, False))


def questions() -> list[Question]:
    found = []
    for zone, names, cnames in ((ZONE, POOLS, CNAMES), (ALIAS, POOLS, CNAMES),
                                (SIGNED, SIGNED_POOLS, SIGNED_CNAMES)):
        for rdtype in ("A", "AAAA"):
            for name in names:
                found.append(Question(f"{name}.{zone}.", rdtype, name, f"{name}.{zone}.", zone))
            for name, pool in cnames.items():
                found.append(Question(f"{name}.{zone}.", rdtype, pool, f"{pool}.{zone}.", zone))
    return found


# ---------------------------------------------------------------------------------------------
# The configuration, rendered from the same `Pool` values the model reads.


def check(address: str, tcp_port: int, http_port: int) -> str:
    timing = f"interval = {INTERVAL}, timeout = {TIMEOUT}, rise = {RISE}, fall = {FALL}"
    if address in HTTP:
        return f'{{ kind = "http", port = {http_port}, path = "/health", body = "ok", {timing} }}'
    return f"{{ port = {tcp_port}, {timing} }}"


def pool_toml(owner: str, pool: Pool, tcp_port: int, http_port: int) -> str:
    lines = [f"[zones.records.{owner}]", f"ttl = {TTLS.get(owner, TTL)}",
             f"[zones.records.{owner}.pool]", f"min_healthy = {pool.min_healthy}",
             f"max_answers = {pool.max_answers}", f'policy = "{pool.policy}"']
    if pool.backup:
        lines.append(f"backup = {list(pool.backup)!r}".replace("'", '"'))
    for group in pool.groups:
        lines += [f"[[zones.records.{owner}.pool.groups]]",
                  "addresses = [" + ", ".join(f'"{a}"' for a in group.addresses) + "]",
                  f"check = {check(group.addresses[0], tcp_port, http_port)}"]
        if group.weights:
            lines.append(f"weights = {list(group.weights)}")
    return "\n".join(lines) + "\n"


def server_toml(tcp_port: int, http_port: int, csk: Path) -> str:
    unsigned = "".join(pool_toml(n, p, tcp_port, http_port) for n, p in POOLS.items())
    signed = "".join(pool_toml(n, POOLS[n], tcp_port, http_port) for n in SIGNED_POOLS)
    return f"""
[server]
listen = ["127.0.0.1:0"]
responders = 2

[prober]
fence_min_targets = 0  # a schedule may take many targets down at once: report each

[[zones]]
origin = "{ZONE}"
aliases = ["{ALIAS}"]
nameservers = ["ns1.example.net"]
ttl = {TTL}
{"".join(f'[zones.records.{n}]{chr(10)}cname = "{t}"{chr(10)}' for n, t in CNAMES.items())}
{unsigned}
[[zones]]
origin = "{SIGNED}"
nameservers = ["ns1.example.net"]
ttl = {TTL}
soa = {{ minimum = 1 }}
dnssec = {{ csk = "{csk}" }}
{"".join(f'[zones.records.{n}]{chr(10)}cname = "{t}"{chr(10)}' for n, t in SIGNED_CNAMES.items())}
{signed}
"""


# ---------------------------------------------------------------------------------------------
# Backends, the server, and moving the backends to a health state.


@dataclasses.dataclass
class Lab:
    server: Server
    backends: dict[str, Backend]
    anchor: str
    tmp: Path

    def up(self) -> frozenset[str]:
        return frozenset(a for a, b in self.backends.items() if b.listening)


def make_key(tmp: Path) -> tuple[Path, str]:
    """A CSK made by `healthdns-key`, and its DNSKEY (the trust anchor for delv)."""
    path = tmp / "csk.pem"
    tool = Path(sys.executable).parent / "healthdns-key"
    out = subprocess.run([str(tool), "generate", "--zone", SIGNED, "--out", str(path),
                          "--algorithm", "ECDSAP256SHA256", "--role", "csk"],
                         capture_output=True, text=True, check=True).stdout
    dnskey = re.search(r"IN DNSKEY (.+)", out)
    assert dnskey is not None, out
    return path, dnskey.group(1)


def open_backends() -> dict[str, Backend]:
    """One listener per address, all up; TCP ones share a port, HTTP ones another."""
    first = Backend(V6[0]) if V6 else Backend(TCP[0])
    backends: dict[str, Backend] = {first.host: first}
    backends |= {a: Backend(a, first.port) for a in (*TCP, *V6) if a not in backends}
    http = HttpBackend(HTTP[0])
    backends |= {HTTP[0]: http, **{a: HttpBackend(a, http.port) for a in HTTP[1:]}}
    for backend in backends.values():
        backend.up()
    return backends


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("model")
    csk, anchor = make_key(tmp)
    backends = open_backends()
    try:
        toml = server_toml(backends[TCP[0]].port, backends[HTTP[0]].port, csk)
        server = Server([], tmp, toml).start()
        yield Lab(server, backends, anchor, tmp)
        assert server.stop() == 0
    finally:
        for backend in backends.values():
            backend.close()


STATE_LINE = re.compile(r"(?:tcp|http) \[?([0-9.]+|[0-9a-f:]+)\]?:\d+\S* is (up|down)")


def move_to(lab: Lab, up: frozenset[str], where: str) -> None:
    """Start or stop listeners until exactly `up` listen; return once the prober logged each
    change. Any other state line fails: a target shared by several names, zones and aliases
    changes with one line, and a change the schedule did not make breaks the model."""
    before = lab.up()
    pending = {a: a in up for a in lab.backends if (a in up) != (a in before)}
    for address, alive in pending.items():
        if alive:
            lab.backends[address].up()
        else:
            lab.backends[address].down()
    deadline = time.monotonic() + DETECTED
    while pending:
        remaining = deadline - time.monotonic()
        try:
            line = lab.server.wait_for(STATE_LINE, max(remaining, 0.001))
        except AssertionError:
            pytest.fail(f"{where}: the prober did not report {pending} (address: up?) "
                        f"within {DETECTED} s; output:\n{lab.server.output()}")
        address, alive = line.group(1), line.group(2) == "up"
        if pending.pop(address, None) != alive:
            pytest.fail(f"{where}: {line.group(0)!r} is no change of this step")


# ---------------------------------------------------------------------------------------------
# Asking, and comparing with the model.


def ask(lab: Lab, question: Question, way: Way) -> dns.message.Message:
    edns = 0 if way.edns else -1
    return lab.server.query(question.qname, question.rdtype, tcp=way.tcp,
                            timeout=QUERY_TIMEOUT, use_edns=edns,
                            want_dnssec=question.signed and way.edns)


def served(response: dns.message.Message, question: Question) -> tuple[str, ...]:
    """The addresses in the answer, in wire order, after checking the answer's shape."""
    rdtype = dns.rdatatype.from_text(question.rdtype)
    assert response.rcode() == dns.rcode.NOERROR, f"rcode {dns.rcode.to_text(response.rcode())}"
    assert response.flags & dns.flags.AA, "not authoritative"
    if question.target != question.qname:
        cname = response.find_rrset(response.answer, dns.name.from_text(question.qname),
                                    dns.rdataclass.IN, dns.rdatatype.CNAME)
        assert cname[0].target.to_text() == question.target, f"CNAME to {cname[0].target}"
    found = [r for r in response.answer if r.rdtype == rdtype]
    if not found:
        nodata(response, question)
        return ()
    assert found[0].name.to_text() == question.target, f"addresses owned by {found[0].name}"
    ttl = TTLS.get(question.pool, TTL)
    assert found[0].ttl == ttl, f"TTL {found[0].ttl}, configured {ttl}"
    if question.signed and response.edns >= 0:  # DO=1 only with EDNS
        assert any(r.rdtype == dns.rdatatype.RRSIG and r.covers == rdtype
                   for r in response.answer), "no RRSIG with the addresses"
    return tuple(rd.to_text() for rd in found[0])


def nodata(response: dns.message.Message, question: Question) -> None:
    """NODATA carries the SOA with the negative TTL; signed, an NSEC without the type."""
    soa = [r for r in response.authority if r.rdtype == dns.rdatatype.SOA]
    assert soa, "NODATA without the SOA"
    assert soa[0].ttl == NEGATIVE_TTL[question.zone], f"negative TTL {soa[0].ttl}"
    if question.signed and response.edns >= 0:
        nsec = [r for r in response.authority if r.rdtype == dns.rdatatype.NSEC
                and r.name.to_text() == question.target]
        assert nsec, f"signed NODATA without an NSEC for {question.target}"
        assert question.rdtype not in nsec[0][0].to_text().split()[1:], f"{nsec[0]}"


def problem(lab: Lab, question: Question, up: frozenset[str], way: Way) -> tuple[
        str | None, tuple[str, ...] | None]:
    """(what is wrong, or None; the addresses served, or None when the answer was wrong)."""
    try:
        answer = served(ask(lab, question, way), question)
    except (AssertionError, KeyError, dns.exception.DNSException) as error:
        return f"{question} over {way.name}: {error!r}", None
    pool = POOLS[question.pool]
    allowed = expected(pool, up, question.version)
    if answer in allowed:
        return None, answer
    picked = {a for a, _ in chosen(pool, up, question.version)}
    wrong = sorted(set(answer) - picked)
    why = (f"serves {wrong}, not chosen by the rules" if wrong else
           f"{len(answer)} addresses, documented {len(allowed[0])}"
           if len(answer) != len(allowed[0]) else "an order the rotation never gives")
    return (f"{question} over {way.name}: {why}: served {list(answer)}, the model "
            f"({rule(pool, up, question.version)}) allows "
            f"{[list(v) for v in dict.fromkeys(allowed)]}"), None


def round_of_questions(lab: Lab, up: frozenset[str], way: Way,
                       seen: dict[Question, set[tuple[str, ...]]]) -> list[str]:
    """Ask every question once; record what was served; return what was wrong."""
    problems = []
    for question in questions():
        wrong, answer = problem(lab, question, up, way)
        if wrong is not None:
            problems.append(wrong)
        elif answer is not None:
            seen.setdefault(question, set()).add(answer)
    return problems


def missing(up: frozenset[str], seen: dict[Question, set[tuple[str, ...]]]) -> list[str]:
    """Documented answers not served yet: every chosen address, every rotation variant."""
    gaps = []
    for question in questions():
        allowed = set(expected(POOLS[question.pool], up, question.version))
        got = seen.get(question, set())
        if got != allowed:
            gaps.append(f"{question}: never served {sorted(allowed - got)}")
    return gaps


def check_serving(lab: Lab, up: frozenset[str], where: str) -> None:
    """Poll until a round of answers matches the model and every responder serves the latest
    generation (/status says so: until then one may answer from an older one), then hold
    every answer to the model until each documented answer has shown up."""
    start = time.monotonic()
    settled: float | None = None
    seen: dict[Question, set[tuple[str, ...]]] = {}
    last: dict[Way, list[str]] = {}  # the latest problems of each way of asking
    turn = 0
    while True:
        way = WAYS[turn % len(WAYS)]
        turn += 1
        problems = last[way] = round_of_questions(lab, up, way, seen)
        now = time.monotonic()
        if problems and settled is not None:
            pytest.fail(f"{where}: a wrong answer once every responder served the state:\n"
                        + "\n".join(problems))
        if settled is None and now - start > SETTLED:
            pytest.fail(f"{where}: not serving the model's answers from every responder "
                        f"{SETTLED} s after the prober reported the change (/status: "
                        f"{status(lab.server)}):\n"
                        + "\n".join(p for found in last.values() for p in found))
        if problems:
            seen = {}
            continue
        if settled is None:
            if not status(lab.server)["current"]:
                continue  # a responder has not said it serves the latest generation
            settled = now
        gaps = missing(up, seen)
        if now - settled >= OBSERVED and not gaps:
            return
        if now - settled > COVERED:
            pytest.fail(f"{where}: documented answers never served:\n" + "\n".join(gaps))


def validate(lab: Lab, question: Question, up: frozenset[str], where: str) -> None:
    """delv, trusting only our key, validates the answer, and it holds chosen addresses."""
    flags, proto, alg, *key = lab.anchor.split()
    anchors = lab.tmp / "anchors"
    anchors.write_text(f'trust-anchors {{ {SIGNED}. static-key {flags} {proto} {alg} '
                       f'"{"".join(key)}"; }};\n')
    result = subprocess.run([need_tool("delv"), "@" + lab.server.host, "-p",
                             str(lab.server.port), "-a", str(anchors), f"+root={SIGNED}",
                             question.qname, question.rdtype],
                            capture_output=True, text=True, timeout=20, check=False)
    out = result.stdout + result.stderr
    picked = {a for a, _ in chosen(POOLS[question.pool], up, question.version)}
    served = set(re.findall(rf"IN\s+{question.rdtype}\s+(\S+)", out))
    verdict = "; fully validated" if picked else "; negative response, fully validated"
    assert verdict in out and served <= picked and bool(served) == bool(picked), (
        f"{where}: delv {question}: expected {verdict!r} with some of {sorted(picked)}:\n{out}")


def test_each_address_is_checked_once(lab: Lab) -> None:
    """Pools, aliases and the signed zone share the target of an address checked one way."""
    # The number of targets is the point; how many were up depends on the machine's load (a
    # check that times out on a busy CI box is a down target, not a second one).
    found = re.search(r"first round: (\d+) of (\d+) targets up", lab.server.output())
    assert found is not None, lab.server.output()
    assert int(found[2]) == len(lab.backends), found[0]


# ---------------------------------------------------------------------------------------------
# The schedule.


def next_state(rng: random.Random, up: frozenset[str], everything: frozenset[str]) -> tuple[
        str, frozenset[str]]:
    """One random change of health: a description and the new set of addresses up."""
    while True:
        pool_name = rng.choice(sorted(POOLS))
        pool = POOLS[pool_name]
        group = rng.randrange(len(pool.groups))
        kind = rng.choice(["one down", "one up", "a group down", "a pool down", "all up",
                           "a random set"])
        if kind == "one down" and up:
            address = rng.choice(sorted(up))
            new, what = up - {address}, f"{address} down"
        elif kind == "one up" and everything - up:
            address = rng.choice(sorted(everything - up))
            new, what = up | {address}, f"{address} up"
        elif kind == "a group down":
            new = up - set(pool.groups[group].addresses)
            what = f"group {group + 1} of {pool_name} down"
        elif kind == "a pool down":
            new, what = up - set(pool.addresses()), f"all of {pool_name} down"
        elif kind == "all up":
            new, what = everything, "all up"
        else:
            new = frozenset(a for a in sorted(everything) if rng.random() < 0.5)
            what = f"only {sorted(new)} up"
        if new != up:
            return what, new


def schedule(seed: int) -> list[tuple[str, frozenset[str]]]:
    """All up, then the known bug (two of the rotating pool's four go away while it rotates),
    then STEPS random changes. The same on hosts without IPv6: ::1 is dropped afterwards."""
    everything = frozenset((*TCP, *HTTP, "::1"))
    up = everything - {TCP[2], TCP[3]}
    states = [("all up", everything), (f"{TCP[2]} and {TCP[3]} down", up)]
    rng = random.Random(seed)
    for _ in range(STEPS):
        what, up = next_state(rng, up, everything)
        states.append((what, up))
    return [(what, up & frozenset((*TCP, *HTTP, *V6))) for what, up in states]


@pytest.mark.parametrize("seed", SEEDS)
def test_pools_serve_what_the_documentation_says(lab: Lab, seed: int) -> None:
    signed = [q for q in questions() if q.signed and q.rdtype == "A"]
    for step, (what, up) in enumerate(schedule(seed)):
        where = f"seed {seed} (rerun: HEALTHDNS_MODEL_SEEDS={seed}), step {step} ({what})"
        move_to(lab, up, where)
        check_serving(lab, up, where)
        validate(lab, signed[step % len(signed)], up, where)


def reached(states: list[frozenset[str]]) -> set[tuple[str, int, str]]:
    """(pool, family, documented step or "rotating"/"one answer") the states lead to."""
    found = set()
    for up in states:
        for name, pool in POOLS.items():
            for version in (4, 6):
                found.add((name, version, rule(pool, up, version)))
                if pool.max_answers and chosen(pool, up, version):
                    rotating = len(expected(pool, up, version)) > 1
                    found.add((name, version, "rotating" if rotating else "one answer"))
    return found


def required() -> set[tuple[str, int, str]]:
    """Every step of the rules each pool can take, for each family it has addresses of."""
    needed = set()
    for name, pool in POOLS.items():
        for version in (4, 6):
            groups = [g for g in pool.groups if any(family(a) == version for a in g.addresses)]
            if not groups:
                continue
            needed |= {(name, version, f"group {i}") for i in range(1, len(groups) + 1)}
            needed.add((name, version, f"all down: {pool.policy}"))
            needed |= {(name, version, f"degraded group {i}") for i, g in enumerate(groups, 1)
                       if 1 < pool.min_healthy <= sum(family(a) == version for a in g.addresses)}
            if pool.max_answers and sum(family(a) == version
                                        for a in pool.addresses()) > pool.max_answers:
                needed |= {(name, version, "rotating"), (name, version, "one answer")}
    return needed


def test_the_schedules_reach_every_rule() -> None:
    """The seeds are chosen so that, together, they take every pool through every step of
    the rules it can take; a new seed or pool must keep it so."""
    states = [up for seed in SEEDS for _, up in schedule(seed)]
    assert required() - reached(states) == set()


# ---------------------------------------------------------------------------------------------
# The model itself, against the documentation's own examples.


def test_model_reproduces_the_documented_rotation() -> None:
    cdn = Pool((Group(("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"), (2, 2, 1, 1)),),
               max_answers=2)
    every = frozenset(cdn.addresses())
    short = [tuple(a.rsplit(".", 1)[1] for a in v) for v in expected(cdn, every, 4)]
    assert short == [("1", "2"), ("2", "3"), ("3", "4"), ("4", "1"), ("1", "2"), ("2", "1")]
    two = frozenset({"192.0.2.1", "192.0.2.3"})
    assert expected(cdn, two, 4) == [("192.0.2.1", "192.0.2.3")]  # nothing rotates


def test_model_follows_the_documented_failover() -> None:
    shop = Pool((Group(("192.0.2.10", "192.0.2.11", "192.0.2.12", "2001:db8::10")),
                 Group(("198.51.100.10", "198.51.100.11", "2001:db8:1::10"))),
                min_healthy=2, policy="backup", backup=("203.0.113.80",))
    assert expected(shop, frozenset({"192.0.2.10", "198.51.100.10", "198.51.100.11"}), 4) == [
        ("198.51.100.10", "198.51.100.11")]
    assert expected(shop, frozenset({"192.0.2.10", "198.51.100.10"}), 4) == [("192.0.2.10",)]
    assert expected(shop, frozenset({"2001:db8:1::10"}), 6) == [("2001:db8:1::10",)]
    assert expected(shop, frozenset({"2001:db8::10"}), 6) == [("2001:db8::10",)]  # smaller
    assert expected(shop, frozenset(), 4) == [("203.0.113.80",)]
    assert expected(shop, frozenset(), 6) == [()]  # no IPv6 backup: NODATA
    assert family("::1") == 6


ADDRESSES = [f"192.0.2.{i}" for i in range(1, 7)] + [f"2001:db8::{i}" for i in range(1, 4)]


@st.composite
def pools(draw: st.DrawFn) -> Pool:
    """Any valid pool over a few addresses: groups, weights, min_healthy, a policy."""
    order = draw(st.permutations(ADDRESSES))
    cuts = sorted(draw(st.sets(st.integers(1, len(order) - 1), max_size=3)))
    parts = [order[a:b] for a, b in zip([0, *cuts], [*cuts, len(order)], strict=True)]
    backup = tuple(parts.pop()) if len(parts) > 1 and draw(st.booleans()) else ()
    groups = tuple(Group(tuple(p), tuple(draw(st.lists(st.integers(1, 6), min_size=len(p),
                                                        max_size=len(p)))))
                   for p in parts)
    policy = "backup" if backup else draw(st.sampled_from(["serve-all", "empty"]))
    return Pool(groups, min_healthy=draw(st.integers(1, max(len(g.addresses) for g in groups))),
                max_answers=draw(st.integers(0, 4)), policy=policy, backup=backup)


@given(pools(), st.sets(st.sampled_from(ADDRESSES)), st.sampled_from([4, 6]))
def test_model_keeps_the_documented_promises(pool: Pool, up: set[str], version: int) -> None:
    """What the documentation promises of any answer, checked on the model itself."""
    picked = chosen(pool, frozenset(up), version)
    answers = expected(pool, frozenset(up), version)
    checked = [a for a in pool.addresses() if family(a) == version]
    if any(a in up for a in checked):  # never a down address while one is up
        assert {a for a, _ in picked} <= up and picked
    size = min(pool.max_answers or len(picked), len(picked))
    for answer in answers:  # each answer: max_answers of the chosen, or all when fewer
        assert len(answer) == len(set(answer)) == size
        assert set(answer) <= {a for a, _ in picked}
    assert {a for answer in answers for a in answer} == {a for a, _ in picked}
    if len(answers) > 1:  # each comes first as often as its reduced weight says
        divisor = math.gcd(*(w for _, w in picked))
        firsts = collections.Counter(answer[0] for answer in answers)
        assert firsts == {a: w // divisor for a, w in picked}


def pool_mapping(pool: Pool) -> dict[str, Any]:
    """The configuration of a model pool, as `[zones.records.www.pool]` would hold it."""
    mapping: dict[str, Any] = {
        "groups": [{"addresses": list(g.addresses), "weights": list(g.weights)}
                   for g in pool.groups],
        "check": {"port": 80}, "min_healthy": pool.min_healthy,
        "max_answers": pool.max_answers, "policy": pool.policy}
    if pool.backup:
        mapping["backup"] = list(pool.backup)
    return mapping


def rendered(pool: Pool, up: frozenset[str], rdtype: str) -> list[tuple[str, ...]]:
    """The answers the signer renders for www (in turn when it rotates); [()]: NODATA."""
    cfg = config.from_mapping({"zones": [{"origin": "example.test",
                                          "nameservers": ["ns1.example.net"],
                                          "records": {"www": {"pool": pool_mapping(pool)}}}]})
    built = cfg.zones[0].records["www"].pool
    assert built is not None
    health = {g.check.target(a): a in up for g in built.groups if g.check for a in g.addresses}
    published = Signer(cfg).update(health, full=True)
    assert published is not None
    snapshot = messages.decode_to_child(published.snapshot)
    assert isinstance(snapshot, messages.Snapshot)
    table = snapshot.zones[0]
    qname = dns.name.from_text("www.example.test")
    key = qname.to_digestable() + struct.pack(">H", dns.rdatatype.from_text(rdtype))
    answers = table.variants.get(key) or [table.answers[key]] if key in table.answers else []
    return [addresses_in(a, qname, rdtype) for a in answers] or [()]


def addresses_in(answer: tables.Answer, qname: dns.name.Name,
                 rdtype: str) -> tuple[str, ...]:
    header = struct.pack(">HHHHHH", 1, answer.flags, 1, answer.ancount, answer.nscount,
                         answer.arcount)
    question = qname.to_digestable() + struct.pack(">HH", dns.rdatatype.from_text(rdtype), 1)
    response = dns.message.from_wire(header + question + answer.body)
    return tuple(rd.to_text() for r in response.answer for rd in r
                 if r.rdtype == dns.rdatatype.from_text(rdtype))


@settings(max_examples=300, deadline=None)
@given(pools(), st.sets(st.sampled_from(ADDRESSES)), st.sampled_from(["A", "AAAA"]))
def test_signer_renders_what_the_model_says(pool: Pool, up: set[str], rdtype: str) -> None:
    """Any pool and health, no processes: the signer's answers, in turn, are the model's."""
    version = 4 if rdtype == "A" else 6
    assert rendered(pool, frozenset(up), rdtype) == expected(pool, frozenset(up), version), (
        f"model: {rule(pool, frozenset(up), version)}")
