"""`explain` against the wire: what it says a name answers is what the responders answer.

Two real supervisors, one on the demo configuration (shared/demo.toml, with its alias zone, a
CNAME, static records), one on the model configuration of tests/test_model_pools.py (every pool
feature, an alias zone, a signed zone). In several health states, with names and addresses
drained and forced, every name of every zone and alias (owners, apex, empty non-terminals),
names that do not exist and names outside every zone are asked for every type explain knows,
over UDP, and the answers are compared with `GET /explain`: rcode, CNAME chain, owner, TTL and
records (a rotating pool: each answer `per_answer` of the addresses explain lists).
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from harness import Backend, HttpBackend, Server
from test_control import TOKEN, call, get
from test_model_pools import HTTP, TCP, V6, Lab, make_key, move_to, open_backends, server_toml

from healthdns.shared import config

TYPES = ("A", "AAAA", "CNAME", "MX", "TXT", "SRV", "CAA", "PTR", "NS", "SOA")
CONTROL = f'\n[control]\ntoken = "{TOKEN}"\n'
DEMO = Path(__file__).parent.parent / "shared" / "demo.toml"
DEEP = """
[zones.records."host.deep"]
a = ["192.0.2.7"]
mx = ["10 host.deep"]
srv = ["0 5 443 web"]
caa = ['0 issue "ca.example"']
"""
AGREED = 15.0  # seconds for explain and the responders to agree after a change


@dataclass
class Setup:
    lab: Lab
    names: list[str]


def names_of(path: Path) -> list[str]:
    """Every name of the configuration's zones and aliases (apex, owners, empty non-terminals),
    names that do not exist, and names outside every zone."""
    cfg = config.load(path)
    found: dict[str, None] = {}
    for zone in cfg.zones:
        owners = [o for o in zone.records if o != "@"]
        for origin in (zone.origin, *zone.aliases):
            apex = origin.rstrip(".")
            found[apex] = None
            for owner in owners:
                labels = owner.split(".")
                for i in range(len(labels)):  # the owner, then its empty non-terminals
                    found[".".join([*labels[i:], apex])] = None
            found[f"absent.{apex}"] = None
            found[f"below.{owners[0]}.{apex}"] = None
            found[f"{apex}.outside.invalid"] = None
    found["outside.invalid"] = None
    found["test"] = None  # the parent of the zones: not ours either
    return list(found)


def explained(server: Server, name: str, rdtype: str) -> dict[str, Any]:
    code, text = get(server, "/explain?" + urllib.parse.urlencode({"name": name,
                                                                   "type": rdtype}))
    assert code == 200, text
    doc: dict[str, Any] = json.loads(text)
    return doc


def ask(server: Server, name: str, rdtype: str) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, use_edns=0)
    query.flags &= ~dns.flags.RD
    response = dns.query.udp(query, server.host, port=server.port, timeout=2)
    if response.flags & dns.flags.TC:
        response = dns.query.tcp(query, server.host, port=server.port, timeout=2)
    return response


def rdatas(rdtype: str, texts: list[str]) -> set[dns.rdata.Rdata]:
    return {dns.rdata.from_text(dns.rdataclass.IN, rdtype, t) for t in texts}


def disagreement(doc: dict[str, Any], rdtype: str, response: dns.message.Message) -> str | None:
    """What the wire answer has that explain does not say, or None when they agree."""
    rcode = dns.rcode.to_text(response.rcode())
    if not doc["answers"]:  # the name decides: REFUSED or NXDOMAIN
        if rcode != doc["rcode"] or response.answer:
            return f"explain says {doc['rcode']}, the wire {rcode} {response.answer}"
        return _negative(doc.get("negative_ttl"), response)
    (answer,) = doc["answers"]
    if rcode != answer["rcode"]:
        return f"explain says {answer['rcode']} ({answer['why']}), the wire {rcode}"
    rrsets = list(response.answer)
    chain = [] if rdtype == "CNAME" else [r for r in rrsets if r.rdtype == dns.rdatatype.CNAME]
    rest = rrsets[len(chain):]
    wire_chain = [(r.name.to_text(omit_final_dot=True).lower(), r.ttl,
                   r[0].target.to_text().lower()) for r in chain]
    said_chain = [(c["name"], c["ttl"], c["target"].lower()) for c in answer["chain"]]
    if wire_chain != said_chain:
        return f"chain: explain {said_chain}, the wire {wire_chain}"
    if not answer["records"]:
        if rest:
            return f"explain says no {rdtype} ({answer['why']}), the wire {rest}"
        return _negative(answer.get("negative_ttl"), response)
    return _records(answer, rdtype, rest)


def _records(answer: dict[str, Any], rdtype: str, rest: list[dns.rrset.RRset]) -> str | None:
    if len(rest) != 1 or dns.rdatatype.to_text(rest[0].rdtype) != rdtype:
        return f"explain says {answer['records']}, the wire {rest}"
    rrset = rest[0]
    owner = rrset.name.to_text(omit_final_dot=True).lower()
    if (owner, rrset.ttl) != (answer["owner"], answer["ttl"]):
        return f"explain says {answer['owner']} ttl {answer['ttl']}, the wire {owner} ttl " \
               f"{rrset.ttl}"
    said, served = rdatas(rdtype, answer["records"]), set(rrset)
    if answer.get("rotates"):
        if not served <= said or len(served) != answer["per_answer"]:
            return (f"explain says {answer['per_answer']} of {answer['records']} per answer, "
                    f"the wire {rrset}")
    elif served != said:
        return f"explain says {answer['records']}, the wire {rrset}"
    return None


def _negative(ttl: int | None, response: dns.message.Message) -> str | None:
    """A negative answer's SOA carries the negative TTL explain gives."""
    soa = [r for r in response.authority if r.rdtype == dns.rdatatype.SOA]
    if ttl is not None and (not soa or soa[0].ttl != ttl):
        return f"explain says a negative TTL of {ttl}, the wire {response.authority}"
    return None


def agree(setup: Setup, where: str) -> None:
    """Poll until explain and the wire agree on every name and type (a change reaches the
    view and the responders within a generation, not at the same instant)."""
    deadline = time.monotonic() + AGREED
    questions = [(name, rdtype) for name in setup.names for rdtype in TYPES]
    while True:
        problems = []
        for name, rdtype in questions:
            wrong = disagreement(explained(setup.lab.server, name, rdtype), rdtype,
                                 ask(setup.lab.server, name, rdtype))
            if wrong is not None:
                problems.append(f"{name} {rdtype}: {wrong}")
        if not problems:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{where}: explain and the wire disagree {AGREED} s after the change:\n"
                        + "\n".join(problems))
        questions = [q for q in questions if any(p.startswith(f"{q[0]} {q[1]}:")
                                                 for p in problems)]
        time.sleep(0.2)  # polling period


def steer(setup: Setup, up: frozenset[str], overrides: list[dict[str, str]],
          where: str) -> None:
    """Move the backends to `up` and hold exactly `overrides`."""
    server = setup.lab.server
    for held in json.loads(get(server, "/overrides")[1]):
        assert call(server, "DELETE", "/overrides/" + (held["name"] or held["address"]))[0] \
            == 200
    move_to(setup.lab, up, where)
    for override in overrides:
        code, answer = call(server, "POST", "/overrides", override)
        assert code == 200, answer


# --- the demo configuration ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("demo")
    first = HttpBackend("127.0.0.1")
    backends: dict[str, Backend] = {"127.0.0.1": first,
                                    "127.0.0.2": HttpBackend("127.0.0.2", first.port)}
    text = DEMO.read_text().replace('"127.0.0.1:53053"', '"127.0.0.1:0"')
    text, changed = re.subn(r"port = 8080, interval = 1, timeout = 0.5",
                            f"port = {first.port}, interval = 0.2, timeout = 0.2", text)
    assert changed == 1, "the demo's check changed: update this test"
    try:
        server = Server([], tmp, text + CONTROL).start()
        (tmp / "healthdns.toml").write_text(text)  # for names_of: the same zones
        yield Setup(Lab(server, backends, "", tmp), names_of(tmp / "healthdns.toml"))
        assert server.stop() == 0
    finally:
        for backend in backends.values():
            backend.close()


def test_explain_tells_what_the_demo_answers(demo: Setup) -> None:
    states: list[tuple[str, frozenset[str], list[dict[str, str]]]] = [
        ("every backend down: serve-all", frozenset(), []),
        ("127.0.0.2 up", frozenset({"127.0.0.2"}), []),
        ("both up, www drained", frozenset({"127.0.0.1", "127.0.0.2"}),
         [{"name": "www.demo.test", "action": "drain"}]),
        ("127.0.0.1 down but forced, 127.0.0.2 drained", frozenset({"127.0.0.2"}),
         [{"address": "127.0.0.1", "action": "force"},
          {"address": "127.0.0.2", "action": "drain"}]),
    ]
    for what, up, overrides in states:
        steer(demo, up, overrides, what)
        agree(demo, what)


# --- the model configuration --------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("model")
    csk, _ = make_key(tmp)
    backends = open_backends()
    try:
        # The model's zones, and in the last one (signed.test) a name with an empty
        # non-terminal above it (deep.signed.test) and static records of other types.
        text = server_toml(backends[TCP[0]].port, backends[HTTP[0]].port, csk) + DEEP
        server = Server([], tmp, text + CONTROL).start()
        (tmp / "names.toml").write_text(text)
        yield Setup(Lab(server, backends, "", tmp), names_of(tmp / "names.toml"))
        assert server.stop() == 0
    finally:
        for backend in backends.values():
            backend.close()


def test_explain_tells_what_every_pool_of_the_model_answers(model: Setup) -> None:
    everything = frozenset((*TCP, *HTTP, *V6))
    states: list[tuple[str, frozenset[str], list[dict[str, str]]]] = [
        ("all up: the rotating pools rotate", everything, []),
        ("two of rot's four down, fo's first group degraded",
         everything - {TCP[2], TCP[3]}, []),
        ("only the HTTP group up, rot drained, 127.0.1.5 forced",
         frozenset(HTTP), [{"name": "rot.pool.test", "action": "drain"},
                           {"address": TCP[4], "action": "force"}]),
        ("all down: every policy answers", frozenset(), []),
    ]
    for what, up, overrides in states:
        steer(model, up, overrides, what)
        agree(model, what)
