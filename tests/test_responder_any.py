"""qtype ANY without an entry per name (issue #12): the table derives a name's ANY answer from
its lowest type's entry and holds one only where that would differ, yet answers every question
with the entry the snapshot and deltas give it, as a table holding every key did.

The model is that plain table: the message keys as given, a delta's keys patched in, a
rotating key's variant by the answers sent for it; a question it has no key for gets the
name's NODATA entry or the zone's NXDOMAIN entry.
"""

from __future__ import annotations

import dns.message
from hypothesis import given, settings
from hypothesis import strategies as st

from healthdns.responder.query import Answerer
from healthdns.responder.table import ANY_IN, CLASS_IN, Entry, Table, entry, zone_id
from healthdns.shared import messages, tables
from healthdns.shared.tables import Answer
from healthdns.signer.main import Signer
from tests.test_responder_paths import CFG, NAMES

ORIGIN = b"\x07example\x04test\x00"
OWNERS = [ORIGIN] + [bytes([1, c]) + ORIGIN for c in b"abcd"]
ANY = 255
TYPES = [1, 5, 16, 28, 47, 257]  # A CNAME TXT AAAA NSEC CAA: ANY (255) sorts among them
POOL = [Answer(0x8400, 1, 0, 0, bytes([0xC0, 0x0C, n])) for n in range(4)]
NXDOMAIN = Answer(0x8403, 0, 0, 0, b"")
Keys = dict[bytes, Answer]


def _key(name: bytes, rdtype: int) -> bytes:
    return name + rdtype.to_bytes(2, "big")


@st.composite
def states(draw: st.DrawFn) -> tuple[Keys, Keys, dict[bytes, list[Answer]]]:
    """A zone's answers, names and rotating keys: ANY absent, its lowest type's, or another."""
    answers: Keys = {}
    names: Keys = {}
    variants: dict[bytes, list[Answer]] = {}
    for owner in OWNERS:
        types = draw(st.lists(st.sampled_from(TYPES), unique=True, max_size=3))
        for rdtype in types:
            answers[_key(owner, rdtype)] = draw(st.sampled_from(POOL))
        choice = draw(st.sampled_from(["none", "lowest", "other"]))
        if choice == "lowest" and types:
            answers[_key(owner, ANY)] = answers[_key(owner, min(types))]
        elif choice == "other":
            answers[_key(owner, ANY)] = draw(st.sampled_from(POOL))
        if types and draw(st.booleans()):
            key = _key(owner, draw(st.sampled_from(types)))
            variants[key] = [answers[key], draw(st.sampled_from(POOL))]
        if owner == ORIGIN or draw(st.booleans()):  # the apex always exists
            names[owner] = draw(st.sampled_from(POOL))
    return answers, names, variants


def _zone(answers: Keys, names: Keys, variants: dict[bytes, list[Answer]]
          ) -> tables.ZoneTable:
    return tables.ZoneTable(ORIGIN, dict(answers), dict(names), NXDOMAIN, 1,
                              variants=dict(variants))


def _delta(old: tuple[Keys, Keys, dict[bytes, list[Answer]]],
           new: tuple[Keys, Keys, dict[bytes, list[Answer]]]) -> messages.Delta:
    """What the signer sends: keys added or changed, keys gone, the whole rotation set."""
    (answers, names, _), (new_answers, new_names, variants) = old, new
    return messages.Delta(2, 1, [tables.ZoneDelta(
        ORIGIN, 2, b"", b"",
        {k: v for k, v in new_answers.items() if answers.get(k) != v},
        {k: v for k, v in new_names.items() if names.get(k) != v},
        [k for k in answers if k not in new_answers], [k for k in names if k not in new_names],
        dict(variants), {})])


def _expected(answers: Keys, names: Keys, key: bytes) -> Entry:
    """The entry a table holding every key serves for `key` (name + type + class)."""
    answer = answers.get(key[:-2]) or names.get(key[:-4]) or NXDOMAIN
    return entry(answer, 1, zone_id(ORIGIN))


def _check(table: Table, state: tuple[Keys, Keys, dict[bytes, list[Answer]]],
           turn: int) -> None:
    answers, names, variants = state
    for key in variants:  # `turn` answers sent for each rotating key: each stepped it
        for _ in range(turn):
            table.find(key + CLASS_IN)
    served = dict(answers)
    for key, rotation in variants.items():  # the model rotates too
        served[key] = rotation[turn % len(rotation)]
    for owner in OWNERS + [b"\x01z" + ORIGIN]:
        for rdtype in [*TYPES, ANY]:
            key = _key(owner, rdtype) + CLASS_IN
            assert table.find(key) == _expected(served, names, key), (owner, rdtype)


@settings(max_examples=300, deadline=None)
@given(states(), states(), st.integers(0, 3))
def test_any_answers_as_a_table_holding_every_key_does(
        first: tuple[Keys, Keys, dict[bytes, list[Answer]]],
        second: tuple[Keys, Keys, dict[bytes, list[Answer]]], turn: int) -> None:
    table = Table(messages.Snapshot(1, [_zone(*first)]))
    _check(table, first, turn)
    patched = table.apply(_delta(first, second))
    # A delta gives the table a full snapshot of the same state gives, held keys included.
    full = Table(messages.Snapshot(2, [_zone(*second)]))
    assert patched.answers == full.answers and patched.any_blocked == full.any_blocked
    _check(patched, second, turn)


@settings(max_examples=100, deadline=None)
@given(states(), st.integers(0, 3))
def test_encoded_snapshots_derive_as_decoded_ones(
        state: tuple[Keys, Keys, dict[bytes, list[Answer]]], turn: int) -> None:
    """The responder's own messages arrive encoded: their ANY keys are dropped as read."""
    snapshot = messages.Snapshot(1, [_zone(*state)])
    encoded = messages.decode_to_responder(messages.encode(snapshot))
    assert isinstance(encoded, messages.EncodedSnapshot)
    _check(Table(encoded), state, turn)


def test_a_signed_zone_holds_no_any_entry_per_name() -> None:
    """The memory claim: a plain name's ANY answer is derived, not held (1.4 MiB per
    responder at 10,000 signed names); the pool's, the CNAME's and the empty name's answer
    as before (the fast path, against the slow path and the snapshot's own keys)."""
    published = Signer(CFG).update({}, full=True)
    assert published is not None
    snapshot = messages.decode_to_child(published.snapshot)
    assert isinstance(snapshot, messages.Snapshot)
    table = Table(snapshot)
    held = [key for key in table.answers if key.endswith(ANY_IN)]
    given_keys = [key for zone in snapshot.zones for key in zone.answers if key.endswith(b"\x00\xff")]
    # Held: only the CNAME owners', which have no ANY answer of their own (they answer the
    # chain, as any missing type does), and would derive their CNAME answer.
    assert given_keys and held and set(held) == table.any_blocked
    assert all(key.startswith(b"\x05alias") for key in held)
    answerer = Answerer(1232)
    answerer.table = table
    for name in NAMES:
        for do in (False, True):
            query = dns.message.make_query(name, "ANY", want_dnssec=do).to_wire()
            assert answerer.answer(query, True) == answerer.slow(query, True)
    for zone in snapshot.zones:
        for key, answer in zone.answers.items():
            if key.endswith(b"\x00\xff"):
                found = table.find(key + CLASS_IN)
                assert found is not None and found[1:] == (answer.body, (answer.signed or
                                                                         answer).body)
