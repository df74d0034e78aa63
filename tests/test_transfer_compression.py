"""AXFR with compressed owner names: the same records, byte for byte in every rdata, fewer octets.

A model test: random zones (owners at several depths, RRsets large enough to cross the 16 KiB a
pointer reaches and the 64 KiB a message holds, RRSIG and NSEC whose names must stay as signed)
are transferred through `Transfers.answer` as a secondary asks, and each message is read twice:
by dnspython, which must find exactly `ZoneState.axfr()`, and by a walker that checks every
rdata is the stored one, untouched (RFC 3597, RFC 4034 6.2: no pointers in rdata).

The packed answer sections are kept on the zone state after its first AXFR: later AXFRs (any
query id, any case, IXFR fallback alike) must send exactly what packing afresh sends, without
packing again.
"""

from __future__ import annotations

from unittest import mock

import dns.message
import dns.name
import dns.rdatatype
import hypothesis.strategies as st
from hypothesis import example, given, settings
from zonedata import rr_wire, zone_records

from healthdns.shared import config, messages, tables
from healthdns.transfer import answer, packing
from healthdns.transfer.answer import Transfers
from healthdns.transfer.journal import PACKED_KEPT, ZoneState
from healthdns.transfer.packing import HEADER, MESSAGE_MAX

ORIGIN = "zone.example."

label = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20).filter(
    lambda s: not s.startswith("-") and not s.endswith("-"))
owner = st.lists(label, min_size=0, max_size=3).map(lambda ls: ".".join(ls) or "@")
rrset = st.tuples(owner, st.sampled_from(["A", "TXT", "RRSIG", "NSEC", "NS", "MX"]),
                  st.integers(1, 40))


def rdata(rdtype: str, i: int, size: int) -> str:
    match rdtype:
        case "A":
            return f"192.0.2.{i % 250 + 1}"
        case "TXT":
            return '"' + "t" * (size * 6) + f'{i}"'
        case "RRSIG":  # the signer's name is the origin: it must stay in full
            return (f"A 13 2 300 20300101000000 20200101000000 {i} {ORIGIN} "
                    + "c2lnbmF0dXJl" * (size // 4 + 1))
        case "NSEC":
            return f"n{i}.{ORIGIN} A RRSIG NSEC"
        case "NS":
            return f"ns{i}.{ORIGIN}"
        case _:
            return f"{i} mx{i}.{ORIGIN}"


def zone(sets: list[tuple[str, str, int]]) -> tables.ZoneRecords:
    lines = [f"@ 300 IN SOA ns1.{ORIGIN} hostmaster.{ORIGIN} 7 3600 600 86400 60",
             f"@ 300 IN NS ns1.{ORIGIN}"]
    for n, (name, rdtype, count) in enumerate(sets):
        lines += (f"{name} 300 IN {rdtype} {rdata(rdtype, n * 50 + i, count)}"
                  for i in range(count))
    return zone_records("\n".join(lines) + "\n", ORIGIN)


def transfers(records: tables.ZoneRecords) -> Transfers:
    spec = config.from_mapping({
        "server": {"listen": ["127.0.0.1:0"]},
        "transfer": {"listen": ["127.0.0.1:0"], "require_tsig": False,
                     "allow": [{"networks": ["127.0.0.1/32"]}]},
        "zones": [{"origin": "example.org", "nameservers": ["ns1.example.org"]}]}).transfer
    served = Transfers(spec, [])
    served.store.load(messages.Records(1, [records]))
    return served


def rdatas(wire: bytes) -> list[bytes]:
    """Each answer RR's type, class, TTL and rdata as they are in the message, owner skipped."""
    pos = HEADER
    for _ in range(int.from_bytes(wire[4:6], "big")):  # the question
        pos = skip_name(wire, pos) + 4
    out = []
    for _ in range(int.from_bytes(wire[6:8], "big")):
        pos = skip_name(wire, pos)
        end = pos + 10 + int.from_bytes(wire[pos + 8:pos + 10], "big")
        out.append(wire[pos:end])
        pos = end
    assert pos == len(wire)
    return out


def skip_name(wire: bytes, pos: int) -> int:
    while wire[pos]:
        if wire[pos] & 0xC0 == 0xC0:
            return pos + 2
        pos += 1 + wire[pos]
    return pos + 1


@settings(max_examples=40, deadline=None)
@example([(f"h{i}.sub", "TXT", 40) for i in range(30)] + [("@", "RRSIG", 40)], "AXFR")
@given(st.lists(rrset, min_size=1, max_size=60), st.sampled_from(["AXFR", "IXFR"]))
def test_a_compressed_axfr_holds_exactly_the_zone(sets: list[tuple[str, str, int]],
                                                  kind: str) -> None:
    records = zone(sets)
    served = transfers(records)
    state = served.store.zones[records.origin]
    query = dns.message.make_query(ORIGIN.upper(), kind)  # an IXFR from an unknown serial
    if kind == "IXFR":  # falls back to the whole zone
        query.authority.append(dns.rrset.from_text(ORIGIN, 0, "IN", "SOA",
                                                   ". . 1 3600 600 86400 60"))
    messages_ = list(served.answer(query.to_wire(), "127.0.0.1"))
    assert all(len(m) <= MESSAGE_MAX for m in messages_)
    parsed = [rr_wire(rrset.name, rrset.ttl, rd)
              for m in messages_
              for rrset in dns.message.from_wire(m, one_rr_per_rrset=True).answer for rd in rrset]
    expected = state.axfr()
    assert parsed == expected
    # Every rdata (and type, class, TTL) exactly as stored: only owner names are compressed.
    owners = [len(dns.name.from_wire(rr, 0)[0].to_wire()) for rr in expected]
    assert [r for m in messages_ for r in rdatas(m)] == \
        [rr[n:] for rr, n in zip(expected, owners, strict=True)]
    # And it pays: every RR after the first of each message points at the origin or its owner.
    saved = sum(map(len, expected)) - sum(len(m) - HEADER for m in messages_)
    assert saved >= (len(expected) - 2 * len(messages_)) * (len(records.origin) - 2) \
        - len(query.question[0].name.to_wire()) - 4


def fresh(state: ZoneState) -> ZoneState:
    """The same zone state with nothing packed yet: what an uncached packer starts from."""
    return ZoneState(state.origin, state.serial, state.soa, state.owners, state.journal)


def xfr_query(name: str, kind: str, qid: int) -> bytes:
    query = dns.message.make_query(name, kind)
    query.id = qid
    if kind == "IXFR":  # from a serial never published: the whole zone
        query.authority.append(dns.rrset.from_text(name, 0, "IN", "SOA",
                                                   ". . 1 3600 600 86400 60"))
    return query.to_wire()


def unpacked(wire: bytes, state: ZoneState) -> list[bytes]:
    question = answer._question(wire)
    assert question is not None
    return list(packing.pack_axfr(wire, question, fresh(state)))


@settings(max_examples=30, deadline=None)
@example([(f"h{i}.sub", "TXT", 40) for i in range(30)] + [("@", "RRSIG", 40)],
         (1, 2), ("AXFR", "IXFR"), [i % 2 == 0 for i in range(len(ORIGIN))])
@given(st.lists(rrset, min_size=1, max_size=60),
       st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
       st.tuples(st.sampled_from(["AXFR", "IXFR"]), st.sampled_from(["AXFR", "IXFR"])),
       st.lists(st.booleans(), min_size=len(ORIGIN), max_size=len(ORIGIN)))
def test_later_axfrs_of_a_state_send_what_packing_afresh_sends(
        sets: list[tuple[str, str, int]], ids: tuple[int, int], kinds: tuple[str, str],
        upper: list[bool]) -> None:
    records = zone(sets)
    served = transfers(records)
    state = served.store.zones[records.origin]
    cased = "".join(c.upper() if u else c for c, u in zip(ORIGIN, upper, strict=True))
    first, second = xfr_query(ORIGIN, kinds[0], ids[0]), xfr_query(cased, kinds[1], ids[1])
    expected = unpacked(first, state), unpacked(second, state)
    assert list(served.answer(first, "127.0.0.1")) == expected[0]
    # The second AXFR of the state writes headers only: packing again would fail here.
    with mock.patch.object(packing, "_Made", side_effect=AssertionError("packed again")):
        assert list(served.answer(second, "127.0.0.1")) == expected[1]
        assert list(served.answer(first, "127.0.0.1")) == expected[0]


@settings(max_examples=15, deadline=None)
@given(st.lists(rrset, min_size=1, max_size=30),
       st.lists(st.integers(0, 3), min_size=1, max_size=8))
def test_sections_are_kept_per_question_length(sets: list[tuple[str, str, int]],
                                               extra: list[int]) -> None:
    """Pointers count from the end of the question: sections packed after a question of one
    length are never sent after one of another, and only PACKED_KEPT lengths are kept."""
    records = zone(sets)
    state = transfers(records).store.zones[records.origin]
    for n in extra:  # as a query for a longer name would be packed (pack_axfr never reads it)
        wire = xfr_query("x" * n + "a." * bool(n) + ORIGIN, "AXFR", n)
        question = answer._question(wire)
        assert question is not None
        assert list(packing.pack_axfr(wire, question, state)) == unpacked(wire, state)
        assert len(question) in state.packed and len(state.packed) <= PACKED_KEPT
