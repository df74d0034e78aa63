"""The transfer process's zone store and IXFR journal (RFC 1995), against a model secondary.

The journal treats RRs as opaque bytes, so the model's RRs are short tokens and its SOAs are
recognisable ones; a model secondary applies each reply the way RFC 1995 4 says a client does.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from healthdns.shared import messages, tables
from healthdns.transfer.journal import Store, ZoneState

ORIGINS = (b"\x07example\x00", b"\x05alias\x00")
Zone = dict[bytes, frozenset[bytes]]  # owner -> its RRs (no SOA)


def soa(origin: bytes, serial: int) -> bytes:
    return b"SOA " + origin + serial.to_bytes(4, "big")


def is_soa(rr: bytes) -> bool:
    return rr.startswith(b"SOA ")


def apply_reply(held: set[bytes], reply: list[bytes]) -> set[bytes]:
    """What a secondary holding `held` (SOA included) holds after `reply` (RFC 1995 4)."""
    assert is_soa(reply[0]) and reply[-1] == reply[0]
    if len(reply) == 1:
        return held  # up to date
    if len(reply) == 2 or not is_soa(reply[1]):  # AXFR style: the zone between two SOAs
        assert not any(is_soa(rr) for rr in reply[1:-1])
        return set(reply[:-1])
    current = set(held)
    pos = 1
    while pos < len(reply) - 1:
        assert reply[pos] in current, "a diff must start from the serial the client holds"
        current.discard(reply[pos])
        pos += 1
        while not is_soa(reply[pos]):
            current.discard(reply[pos])
            pos += 1
        current.add(reply[pos])  # the diff's new SOA
        pos += 1
        while not is_soa(reply[pos]):
            current.add(reply[pos])
            pos += 1
    return current


def held(state: ZoneState) -> set[bytes]:
    return {state.soa, *state.records()}


def contents(origin: bytes, serial: int, zone: Zone) -> set[bytes]:
    return {soa(origin, serial), *(rr for rrs in zone.values() for rr in rrs)}


owners = st.sampled_from([b"\x01a", b"\x01b", b"\x01c", b"\x01d"])
rrs = st.frozensets(st.sampled_from([b"1", b"2", b"3", b"4"]), max_size=3)
zones = st.dictionaries(owners, rrs.filter(bool), max_size=4)
# Per generation and zone: its new contents, or None when it did not change.
steps = st.lists(st.tuples(st.one_of(st.none(), zones), st.one_of(st.none(), zones),
                           st.booleans()), min_size=1, max_size=12)


def as_records(zone: Zone, origin: bytes) -> dict[bytes, list[bytes]]:
    # An RR's bytes carry its owner, as on the wire: the same rdata at two owners differs.
    return {o: sorted(o + rr for rr in r) for o, r in zone.items()}


@settings(max_examples=150, deadline=None)
@given(steps=steps, limit=st.integers(0, 5), bump=st.integers(1, 3))
def test_any_journalled_serial_reaches_the_current_records(
        steps: list[tuple[Zone | None, Zone | None, bool]], limit: int, bump: int) -> None:
    store = Store(limit)
    now: dict[bytes, tuple[int, Zone]] = {o: (1, {}) for o in ORIGINS}
    history: dict[bytes, dict[int, set[bytes]]] = {o: {} for o in ORIGINS}
    serials_in_order: dict[bytes, list[int]] = {o: [] for o in ORIGINS}
    for generation, (first, second, full) in enumerate([(None, None, True), *steps], start=1):
        changed: list[tables.ZoneRecordsDelta] = []
        for origin, new in zip(ORIGINS, (first, second), strict=True):
            serial, zone = now[origin]
            if generation == 1 or (new is not None and new != zone):
                serial, zone = serial + bump, zone if new is None else new
                now[origin] = (serial, zone)
                before = store.zones[origin].owners if origin in store.zones else {}
                after = as_records(zone, origin)
                changed.append(tables.ZoneRecordsDelta(
                    origin, serial, soa(origin, serial),
                    {o: r for o, r in after.items() if before.get(o) != r},
                    [o for o in before if o not in after]))
            history[origin][serial] = contents(origin, serial, {
                o: frozenset(o + rr for rr in r) for o, r in zone.items()})
            if not serials_in_order[origin] or serials_in_order[origin][-1] != serial:
                serials_in_order[origin].append(serial)
        if full or generation == 1:
            store.load(messages.Records(generation, [
                tables.ZoneRecords(o, now[o][0], soa(o, now[o][0]), as_records(now[o][1], o))
                for o in ORIGINS]))
        else:
            assert store.apply(messages.RecordsDelta(generation, generation - 1, changed)) \
                is not None
    for origin in ORIGINS:
        state = store.zones[origin]
        assert held(state) == history[origin][state.serial]
        journalled = {d.old for d in state.journal}
        assert len(state.journal) <= limit
        # Every serial of the last `limit` changes is in the journal, and only those.
        assert journalled == set(serials_in_order[origin][:-1][-limit:] if limit else [])
        for serial, records in history[origin].items():
            reply = state.ixfr(serial)
            if serial in journalled or serial == state.serial:
                assert reply is not None
                assert apply_reply(records, reply) == held(state)
            else:
                assert reply is None
        assert apply_reply(set(), state.axfr()) == held(state)


def test_a_delta_that_does_not_follow_the_held_generation_is_ignored() -> None:
    origin = ORIGINS[0]
    store = Store(10)
    delta = messages.RecordsDelta(2, 1, [tables.ZoneRecordsDelta(
        origin, 2, soa(origin, 2), {b"\x01a": [b"x"]}, [])])
    assert store.apply(delta) is None  # nothing held yet
    store.load(messages.Records(1, [tables.ZoneRecords(origin, 1, soa(origin, 1), {})]))
    assert store.apply(messages.RecordsDelta(3, 2, delta.zones)) is None
    assert store.zones[origin].serial == 1 and store.generation == 1
    changed = store.apply(delta)
    assert changed is not None and [z.serial for z in changed] == [2]


def test_a_client_newer_than_the_zone_gets_the_soa_alone() -> None:
    origin = ORIGINS[0]
    store = Store(10)
    store.load(messages.Records(1, [tables.ZoneRecords(origin, 7, soa(origin, 7),
                                                         {b"\x01a": [b"x"]})]))
    state = store.zones[origin]
    assert state.ixfr(8) == [soa(origin, 7)]
    assert state.ixfr(7) == [soa(origin, 7)]
    assert state.ixfr(6) is None  # never published here: the whole zone


def test_an_axfr_in_progress_keeps_its_serial() -> None:
    origin = ORIGINS[0]
    store = Store(10)
    store.load(messages.Records(1, [tables.ZoneRecords(origin, 1, soa(origin, 1),
                                                         {b"\x01a": [b"x"]})]))
    before = store.zones[origin]
    store.apply(messages.RecordsDelta(2, 1, [tables.ZoneRecordsDelta(
        origin, 2, soa(origin, 2), {b"\x01a": [b"y"]}, [])]))
    assert before.axfr() == [soa(origin, 1), b"x", soa(origin, 1)]
    assert store.zones[origin].axfr() == [soa(origin, 2), b"y", soa(origin, 2)]
