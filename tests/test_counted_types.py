"""A responder's query counters stay bounded whatever types clients ask: a type without a
metric label of its own is counted as "other" (`querycounts.OTHER_QTYPE`) where it is counted,
on every path, not only where the supervisor exports it."""

from __future__ import annotations

import struct

import dns.name
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthdns.responder.query import TCP, UDP, Answerer
from healthdns.responder.table import Table
from healthdns.shared import config, messages, querycounts
from healthdns.signer.main import Signer
from healthdns.supervisor import names

CFG = config.from_mapping({
    "zones": [{
        "origin": "example.test",
        "nameservers": ["ns1.example.net"],
        "records": {"www": {"a": ["192.0.2.1"], "aaaa": ["2001:db8::1"]}},
    }],
})
NSID = b"\x00\x03\x00\x00"  # an EDNS option: the slow path answers the query
META = frozenset({0, 41, 249, 250, 251, 252, 253, 254})
# Types a client may ask that no label names: everything but the counted and meta types.
ODD = sorted(set(range(1, 700)) - set(querycounts.COUNTED_QTYPES) - META)


def answerer(cache: int) -> Answerer:
    published = Signer(CFG).update({}, full=True)
    assert published is not None
    a = Answerer(1232, b"nsid")
    a.table = Table(messages.decode_to_child(published.snapshot), cache)  # type: ignore[arg-type]
    return a


def query(name: str, qtype: int, edns: bytes | None = None) -> bytes:
    question = dns.name.from_text(name).to_wire() + struct.pack(">HH", qtype, 1)
    if edns is None:
        return struct.pack(">HHHHHH", 7, 0, 1, 0, 0, 0) + question
    opt = b"\x00\x00\x29" + struct.pack(">HIH", 1232, 0, len(edns)) + edns
    return struct.pack(">HHHHHH", 7, 0, 1, 0, 0, 1) + question + opt


def keys(a: Answerer) -> int:
    return len(a.fast_counts) + len(a.cache_counts) + len(a.slow_counts)


@pytest.mark.parametrize("cache", [0, 100])
def test_thousands_of_odd_types_make_no_new_counters(cache: int) -> None:
    """Each odd type asked on every path (fast, the cache's second miss and hit, TCP, slow:
    NODATA, NXDOMAIN and REFUSED): the counters hold as many keys as for one odd type."""
    a = answerer(cache)
    names_asked = ("www.example.test", "none.example.test", "www.example.com")
    for qtype in ODD[:1]:
        for name in names_asked:
            for edns in (None, b"", NSID):
                for transport in (UDP, UDP, UDP, TCP):
                    a.answer(query(name, qtype, edns), transport)
    one = keys(a)
    for qtype in ODD[1:]:
        for name in names_asked:
            for edns in (None, b"", NSID):
                for transport in (UDP, UDP, UDP, TCP):
                    a.answer(query(name, qtype, edns), transport)
    assert keys(a) == one
    total = len(ODD) * len(names_asked) * 3 * 4
    counted = a.counts_by_label()
    assert {key[4] for key in counted} == {querycounts.OTHER_QTYPE}
    assert sum(counted.values()) == total


@settings(max_examples=200, deadline=None)
@given(qtype=st.integers(0, 65535), edns=st.sampled_from([None, b"", NSID]),
       transport=st.sampled_from([UDP, TCP]), name=st.sampled_from(
           ["www.example.test", "none.example.test", "www.example.com"]))
def test_a_type_is_counted_as_itself_or_as_other(qtype: int, edns: bytes | None,
                                                 transport: int, name: str) -> None:
    a = answerer(100)
    for _ in range(3):  # a miss, the second miss that admits, a cache hit
        a.answer(query(name, qtype, edns), transport)
    want = qtype if qtype in querycounts.COUNTED_QTYPES else querycounts.OTHER_QTYPE
    counted = a.counts_by_label()
    assert {key[4] for key in counted} == {want}
    assert sum(counted.values()) == 3


def test_the_counted_types_are_the_ones_the_metrics_name() -> None:
    """The supervisor labels exactly these types; the responder folds every other one."""
    assert set(querycounts.COUNTED_QTYPES) - {querycounts.OTHER_QTYPE} \
        == set(names.QTYPE_NUMBERS.values())
