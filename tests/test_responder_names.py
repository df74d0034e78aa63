"""Untrusted question names: bounded, checked once in linear time, FORMERR when malformed; and
no UDP response ever larger than the client allows, on any path."""

from __future__ import annotations

import struct
from typing import Any

import dns.exception
import dns.message
import dns.rcode
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_responder_paths import ANSWERER, CFG, SIGNED, answerer

from healthdns.responder.query import Answerer

ORIGIN = b"\x07example\x04test\x00"  # 14 octets
NXDOMAIN, FORMERR = dns.rcode.NXDOMAIN, dns.rcode.FORMERR


def label(size: int, byte: int = 0x61) -> bytes:
    return bytes([size]) + bytes([byte]) * (size & 0x3F)


def name_of(octets: int) -> bytes:
    """A name under ORIGIN of exactly `octets` octets, of labels up to 63 octets."""
    prefix, left = b"", octets - len(ORIGIN)
    while left:
        size = min(63, left - 1) if left != 65 else 62  # never leave a lone length byte
        prefix += label(size)
        left -= size + 1
    name = prefix + ORIGIN
    assert len(name) == octets
    return name


def query(name: bytes, qtype: int = 1, payload: int | None = None, nsid: bool = False,
          flags: int = 0) -> bytes:
    wire = struct.pack(">HHHHHH", 0x4242, flags, 1, 0, 0, payload is not None) + name \
        + struct.pack(">HH", qtype, 1)
    if payload is not None:
        options = struct.pack(">HH", 3, 0) if nsid else b""
        wire += b"\x00\x00\x29" + struct.pack(">HIH", payload, 0, len(options)) + options
    return wire


def rcode_both_paths(a: Answerer, wire: bytes, tcp: bool = False) -> int:
    fast, slow = a.answer(wire, tcp), a.slow(wire, tcp)
    assert fast is not None and fast == slow
    return fast[3] & 0x0F


@pytest.mark.parametrize("edns", [None, 1232])
@pytest.mark.parametrize("tcp", [False, True])
@pytest.mark.parametrize(("name", "rcode"), [
    (name_of(255), NXDOMAIN),
    (name_of(256), FORMERR),
    (label(63) + ORIGIN, NXDOMAIN),
    (label(63) + label(63) + ORIGIN, NXDOMAIN),
    (b"\x40" + b"a" * 64 + ORIGIN, FORMERR),  # a 64-octet label: the 0x40 bit
    # Label types 01 (extended, RFC 6891 5) and 10 (reserved), whose bytes read as lengths
    # would skip exactly to the origin.
    (b"\x7f" + b"a" * 0x7F + ORIGIN, FORMERR),  # not 0x41-0x5A: lower() turns them to 0x61-0x7A
    (b"\x81" + b"a" * 0x81 + ORIGIN, FORMERR),
    (label(1) + b"\xc0\x0c", FORMERR),  # a compression pointer in the question
    (b"\x01a" * 2000 + ORIGIN, FORMERR),  # 4,014 octets
], ids=["255", "256", "label-63", "labels-63-63", "label-64", "type-0x40", "type-0x80",
        "pointer", "4014"])
def test_name_bounds(name: bytes, rcode: int, tcp: bool, edns: int | None) -> None:
    assert rcode_both_paths(ANSWERER, query(name, payload=edns), tcp) == rcode


def test_a_65534_octet_tcp_query_is_formerr() -> None:
    wire = query(b"\x01a" * ((65534 - 12 - 4 - len(ORIGIN)) // 2) + ORIGIN)
    assert len(wire) == 65534
    assert rcode_both_paths(ANSWERER, wire, tcp=True) == FORMERR


class CountingDict(dict[bytes, Any]):
    """A table dict that counts its lookups and the key octets they hash."""

    lookups = 0
    octets = 0

    def get(self, key: bytes, default: Any = None) -> Any:
        CountingDict.lookups += 1
        CountingDict.octets += len(key)
        return super().get(key, default)


def counting_answerer() -> Answerer:
    a = answerer()
    table = a.table
    assert table is not None
    table.answers, table.names = CountingDict(table.answers), CountingDict(table.names)
    table.zones = CountingDict(table.zones)
    return a


def work(a: Answerer, wire: bytes, tcp: bool) -> tuple[int, int]:
    CountingDict.lookups = CountingDict.octets = 0
    a.answer(wire, tcp)
    return CountingDict.lookups, CountingDict.octets


def test_an_over_long_name_is_rejected_before_any_lookup() -> None:
    a = counting_answerer()
    for size in (256, 4_000, 65_000):
        many_labels = b"\x01a" * ((size - len(ORIGIN)) // 2) + ORIGIN
        for tcp in (False, True):
            assert work(a, query(many_labels), tcp) == (0, 0)


# Per query, both paths together: the qname+type+class key, the name, and one suffix per
# origin of a distinct length (here two), each at most 259 octets, whatever the query.
MAX_LOOKUPS = 2 * (2 + 2)
MAX_OCTETS = MAX_LOOKUPS * 259


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 63), max_size=200), st.booleans(), st.booleans())
def test_lookup_work_is_bounded_whatever_the_labels(sizes: list[int], under: bool,
                                                    tcp: bool) -> None:
    prefix = b"".join(label(size) for size in sizes if size)
    a = counting_answerer()
    lookups, octets = work(a, query(prefix + (ORIGIN if under else b"\x00")), tcp)
    assert lookups <= MAX_LOOKUPS and octets <= MAX_OCTETS


# --- what a client allows --------------------------------------------------------------------

def allowed(wire: bytes, response: bytes, ours: int) -> int:
    """The largest UDP response the client takes, read with dnspython, not our parser.

    A response without OPT tells the client nothing about EDNS: then 512 (RFC 1035 4.2.1).
    With an OPT, the lesser of the client's size and ours, at least 512 (RFC 6891 6.2.5);
    ours alone when dnspython cannot read the query.
    """
    # Read as a QUERY whatever its opcode: dnspython reads an UPDATE's question as a zone
    # section and refuses one of type A (FormError), and the opcode changes no size rule.
    as_query = response[:2] + bytes([response[2] & 0x87]) + response[3:]
    reply = dns.message.from_wire(as_query, ignore_trailing=True)
    if reply.edns < 0:
        return 512
    try:
        client = dns.message.from_wire(wire, ignore_trailing=True).payload
    except dns.exception.DNSException:
        client = ours
    return min(ours, max(512, client))


ANSWERERS = {(size, nsid): Answerer(size, nsid) for size in (512, 1232, 4096)
             for nsid in (b"", b"n" * 40, b"N" * 512)}
for _a in ANSWERERS.values():
    _a.table = ANSWERER.table
SIGNED_4096 = Answerer(4096, b"N" * 512)
SIGNED_4096.table = SIGNED.table


@st.composite
def names(draw: st.DrawFn) -> bytes:
    """Names of every shape: long, deep, odd label types, in and out of our zones."""
    sizes = draw(st.lists(st.one_of(st.integers(1, 63), st.sampled_from([0x40, 0x41, 0x81, 0xC0])),
                          max_size=80))
    prefix = b"".join(label(size, draw(st.sampled_from([0x61, 0x41, 0x00]))) for size in sizes)
    known = [b"\x03www" + ORIGIN, b"\x03big" + ORIGIN, ORIGIN, b"\x07example\x03org\x00", b"\x00"]
    return prefix + draw(st.sampled_from(known))


@st.composite
def packets(draw: st.DrawFn) -> bytes:
    name = draw(names())
    qtype = draw(st.sampled_from([1, 16, 28, 255, 2, 6, 99]))
    payload = draw(st.sampled_from([None, 0, 511, 512, 513, 1000, 1232, 1500, 4096, 65535]))
    wire = query(name, qtype, payload, draw(st.booleans()),
                 draw(st.sampled_from([0, 0x0100, 0x0010, 0x7800, 0x1000, 0x2010])))
    for _ in range(draw(st.integers(0, 3))):  # mutations: a byte set, cut or inserted
        i = draw(st.integers(0, len(wire)))
        op = draw(st.sampled_from(["set", "cut", "insert"]))
        byte = bytes([draw(st.integers(0, 255))])
        wire = {"set": wire[:i] + byte + wire[i + 1:], "cut": wire[:i],
                "insert": wire[:i] + byte + wire[i:]}[op]
    return wire


@settings(max_examples=2000, deadline=None)
@given(packets(), st.sampled_from(list(ANSWERERS)), st.booleans())
def test_no_udp_response_exceeds_what_the_client_allows(
        wire: bytes, which: tuple[int, bytes], signed: bool) -> None:
    a = SIGNED_4096 if signed else ANSWERERS[which]
    fast = a.answer(wire, False)
    assert fast == a.slow(wire, False)
    assert a.answer(wire, True) == a.slow(wire, True)
    if fast is not None:
        assert len(fast) <= allowed(wire, fast, a.payload_size)


def test_a_large_nsid_is_left_out_rather_than_overflow() -> None:
    a = ANSWERERS[(512, b"N" * 512)]
    wire = query(b"\x03www" + ORIGIN, payload=512, nsid=True)
    response = a.answer(wire, False)
    assert response is not None and len(response) <= 512
    reply = dns.message.from_wire(response)
    assert reply.answer and not reply.options  # the answer, without the NSID
    assert dns.message.from_wire(a.answer(wire, True)).options  # TCP has room for it


def test_the_packet_cache_keeps_the_limit_of_the_query_it_answered() -> None:
    a = answerer(CFG)
    assert a.table is not None
    a.table.cache_size = 100
    long_name = b"\x01a" * 1990 + ORIGIN  # 3,994 octets: fits a 4,096-octet datagram
    for _ in range(3):  # the second round admits, the third comes from the cache
        for name, qtype in ((b"\x03big" + ORIGIN, 16), (long_name, 1)):
            for payload in (None, 512, 1232):
                wire = query(name, qtype, payload)
                response = a.answer(wire, False)
                assert response is not None
                assert len(response) <= allowed(wire, response, 1232)
    # The long queries are not cached at all, nor are truncated answers (big's, at every
    # size): each is made again, fitting its own query's limit, and counted as truncated.
    assert not a.cache_counts
    assert a.truncated == 9


def test_long_queries_are_answered_but_not_cached() -> None:
    """The cache bounds its entries, not their size: 10,000 queries of 4 KB each would hold
    40 MB (640 MB through the one-datagram path, which reads up to 64 KB)."""
    a = answerer(CFG)
    assert a.table is not None
    a.table.cache_size = 100
    for i in range(20):
        wire = query(b"\x01a" * 1990 + ORIGIN, payload=1232, nsid=False)
        wire = struct.pack(">H", i) + wire[2:] + bytes(i)  # trailing octets: distinct queries
        assert a.answer(wire, False) is not None
    assert not a.table.cache
    for _ in range(2):  # admitted on its second miss
        assert a.answer(query(b"\x03www" + ORIGIN), False) is not None
    assert len(a.table.cache) == 1
