"""Rotating pools (`max_answers`): each responder steps to the next answer of a rotation on
every answer it sends for that name and type, whatever the path (packet cache, fast path,
TCP, slow path). The model is a counter per name and type; the wire test is a burst to one
responder of the real supervisor."""

from __future__ import annotations

import collections
import itertools
import struct
from collections.abc import Iterator

import dns.message
import dns.name
import dns.rdatatype
import pytest
from harness import Server, config_toml
from hypothesis import given, settings
from hypothesis import strategies as st

from healthdns.responder.query import TCP, UDP, Answerer
from healthdns.responder.table import Table
from healthdns.shared import config, messages
from healthdns.signer.main import Signer

V4 = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"]
V6 = ["2001:db8::1", "2001:db8::2", "2001:db8::3"]
CFG = config.from_mapping({"zones": [{
    "origin": "example.test", "nameservers": ["ns1.example.net"],
    "records": {
        "www": {"pool": {"addresses": V4 + V6, "weights": [2, 1, 1, 1, 1, 1, 1],
                         "max_answers": 2, "check": {"port": 80}}},
        "web": {"cname": "www"},  # leads to the pool: rotates with it, counted on its own
        "static": {"a": ["198.51.100.1"]},
    },
}]})
NSID = b"\x00\x03\x00\x00"  # an EDNS option: the slow path answers


def snapshot() -> messages.Snapshot:
    health = {group.check.target(a): True  # type: ignore[union-attr]
              for group in CFG.zones[0].records["www"].pool.groups  # type: ignore[union-attr]
              for a in group.addresses}
    published = Signer(CFG).update(health, full=True)
    assert published is not None
    decoded = messages.decode_to_child(published.snapshot)
    assert isinstance(decoded, messages.Snapshot)
    return decoded


SNAPSHOT = snapshot()


def addresses(response: bytes, rdtype: int) -> list[str]:
    parsed = dns.message.from_wire(response)
    return [rd.to_text() for rrset in parsed.answer if rrset.rdtype == rdtype for rd in rrset]


def wire_key(name: str, rdtype: int) -> bytes:
    return dns.name.from_text(name).to_wire() + struct.pack(">H", rdtype)


def rotations() -> dict[tuple[str, int], list[list[str]]]:
    """The addresses of each rotating name and type, variant by variant, as the signer made
    them."""
    out = {}
    for name in ("www.example.test", "web.example.test"):
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            header = struct.pack(">HHHHHH", 0, 0, 1, 0, 0, 0)
            variants = SNAPSHOT.zones[0].variants[wire_key(name, rdtype)]
            out[(name, rdtype)] = [
                addresses(header[:2] + struct.pack(">H", v.flags) + b"\x00\x01"
                          + struct.pack(">HHH", v.ancount, v.nscount, v.arcount)
                          + wire_key(name, rdtype) + b"\x00\x01" + v.body, rdtype)
                for v in variants]
    return out


ROTATIONS = rotations()


def query(name: str, rdtype: int, shape: str, qid: int) -> bytes:
    question = dns.name.from_text(name).to_wire() + struct.pack(">HH", rdtype, 1)
    if shape == "plain":
        return struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0) + question
    options = NSID if shape == "nsid" else b""
    flags = 0x8000 if shape == "do" else 0
    opt = b"\x00\x00\x29" + struct.pack(">HHHH", 1232, 0, flags, len(options)) + options
    return struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 1) + question + opt


def test_the_pool_rotates_through_several_variants() -> None:
    """The premise: the configuration makes rotations to step through."""
    assert all(len(v) > 2 for v in ROTATIONS.values())
    assert len(ROTATIONS[("www.example.test", dns.rdatatype.A)]) == 5  # weights 2:1:1:1


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(
    st.sampled_from(["www.example.test", "WWW.Example.Test", "web.example.test",
                     "static.example.test"]),
    st.sampled_from([dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.ANY]),
    st.sampled_from(["plain", "edns", "do", "nsid"]), st.sampled_from([UDP, UDP, TCP])),
    max_size=60), st.integers(0, 2))
def test_every_answer_steps_its_name_and_types_rotation(
        asked: list[tuple[str, int, str, int]], warm: int) -> None:
    answerer = Answerer(1232)
    answerer.table = Table(SNAPSHOT, 100)  # with a packet cache: it must not pin a variant
    sent: collections.Counter[tuple[str, int]] = collections.Counter()
    for i, (name, rdtype, shape, transport) in enumerate(asked * (warm + 1)):
        response = answerer.answer(query(name, rdtype, shape, i), transport)
        assert response is not None
        key = (name.lower(), rdtype)
        got = addresses(response, dns.rdatatype.A if rdtype == dns.rdatatype.ANY else rdtype)
        if key in ROTATIONS:
            variants = ROTATIONS[key]
            assert got == variants[sent[key] % len(variants)], (i, key, sent[key])
            sent[key] += 1
        elif key == ("www.example.test", dns.rdatatype.ANY):  # RFC 8482: A, its first answer
            assert got == ROTATIONS[("www.example.test", dns.rdatatype.A)][0]
        elif key[0] == "static.example.test":
            assert got == (["198.51.100.1"] if rdtype != dns.rdatatype.AAAA else [])


def test_a_new_generation_starts_each_rotation_again() -> None:
    answerer = Answerer(1232)
    answerer.table = Table(SNAPSHOT, 100)
    www_a = ROTATIONS[("www.example.test", dns.rdatatype.A)]
    wire = query("www.example.test", dns.rdatatype.A, "plain", 1)
    for _ in range(3):
        answerer.answer(wire, UDP)
    answerer.table = Table(SNAPSHOT, 100)
    response = answerer.answer(wire, UDP)
    assert response is not None and addresses(response, dns.rdatatype.A) == www_a[0]


# --- on the wire: a burst to the one responder of a real supervisor ------------------------

# Port 9 answers nothing: every address is down, and all are served (serve-all).
TOML = config_toml({"www": {"pool": {
    "addresses": ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"], "max_answers": 2,
    "check": {"port": 9, "interval": 1, "timeout": 0.1}}}})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server([], tmp_path_factory.mktemp("rotation"), TOML).start()
    yield running
    assert running.stop() == 0


@pytest.mark.parametrize("tcp", [False, True])
def test_a_burst_to_one_responder_gets_the_answers_in_turn(server: Server, tcp: bool) -> None:
    """400 queries as fast as the client goes: every answer is the next of the rotation, so
    each of the four answers comes 100 times, and never twice in a row."""
    answers = [tuple(sorted(server.addresses("www.example.test"))) if not tcp else
               tuple(sorted(rd.to_text() for rrset in server.query(
                   "www.example.test", "A", tcp=True).answer for rd in rrset))
               for _ in range(400)]
    counts = collections.Counter(answers)
    assert len(counts) == 4 and set(counts.values()) == {100}, counts
    assert all(a != b for a, b in itertools.pairwise(answers))
    assert answers[:4] == answers[4:8]  # in the same order each time round

