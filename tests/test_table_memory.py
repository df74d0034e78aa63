"""A responder's table is compact (issue #12, memory at 10,000 signed names): one object per
distinct body, one tuple per distinct entry of a name, and a snapshot decoded answer by
answer builds the same table as one decoded whole.

The generations come from the signer of test_deltas (pools that rotate, fail over and go
dark, a CNAME, an alias zone), unsigned and signed, under random health (hypothesis).
"""

from __future__ import annotations

import functools
import gc
import tracemalloc
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_deltas import V4, configs, targets, view

from healthdns.responder.table import Entry, Table
from healthdns.shared import canonical, config, messages, tables
from healthdns.signer import keys
from healthdns.signer.main import Signer

healths = st.lists(st.lists(st.booleans(), min_size=len(V4) + 1, max_size=len(V4) + 1),
                   min_size=1, max_size=4)


@pytest.fixture(scope="module")
def tmp_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("keys"))


def entries(table: Table) -> list[Entry]:
    found = [*table.answers.values(), *table.names.values()]
    found += [e for nxdomain in table.zones.values() for e in nxdomain.made()]
    return found + [e for variants in table.variants.values() for e in variants]


def bodies(table: Table) -> list[bytes]:
    return [body for e in entries(table) for body in (e[1], e[2])]


def assert_one_object_per_body(table: Table) -> None:
    found = bodies(table)
    assert len({id(b) for b in found}) == len(set(found)), \
        f"{len({id(b) for b in found})} body objects for {len(set(found))} distinct bodies"
    # Equal entries of one name (ANY answers as the lowest type) are one tuple too.
    by_name: dict[bytes, list[Entry]] = {}
    for key, made in table.answers.items():
        if key not in table.variants:  # a rotating key holds whichever variant is in turn
            by_name.setdefault(key[:-4], []).append(made)
    for name, made in by_name.items():
        distinct: list[Entry] = []
        for e in made:
            if not any(e == d for d in distinct):
                distinct.append(e)
        assert len({id(e) for e in made}) == len(distinct), f"{name!r}: equal entries copied"


@pytest.mark.parametrize("kind", ["unsigned", "signed"])
@settings(max_examples=15)
@given(schedule=healths)
def test_one_body_object_per_distinct_body(tmp_dir: str, kind: str,
                                           schedule: list[list[bool]]) -> None:
    cfg = configs(tmp_dir)[kind]
    ids = targets(cfg)
    signer = Signer(cfg)
    published = signer.update(dict.fromkeys(ids, True), full=True)
    assert published is not None
    table = Table(messages.decode_to_responder(published.snapshot))  # type: ignore[arg-type]
    assert_one_object_per_body(table)
    for health in schedule:
        published = signer.update(dict(zip(ids, health, strict=True)), full=True)
        if published is None:
            continue
        whole = messages.decode_to_child(published.snapshot)
        assert isinstance(whole, messages.Snapshot)
        encoded = messages.decode_to_responder(published.snapshot)
        assert isinstance(encoded, messages.EncodedSnapshot)
        fresh = Table(encoded)
        assert_one_object_per_body(fresh)
        assert_one_object_per_body(Table(whole))
        # Decoded answer by answer or whole: the same table, byte for byte.
        assert view(fresh) == view(Table(whole))
        delta = messages.decode_to_child(published.delta)
        assert isinstance(delta, messages.Delta)
        encoded_delta = messages.decode_to_responder(published.delta)
        assert isinstance(encoded_delta, messages.EncodedDelta)
        assert view(table.apply(delta)) == view(fresh)
        table = table.apply(encoded_delta)  # as a responder does
        assert view(table) == view(fresh)


def test_the_table_shares_repeated_bodies(tmp_dir: str) -> None:
    """The property above is not vacuous: the signed zone repeats bodies (ANY answers as
    its lowest type), so sharing them makes fewer objects than entries refer to."""
    cfg = configs(tmp_dir)["signed"]
    published = Signer(cfg).update(dict.fromkeys(targets(cfg), True), full=True)
    assert published is not None
    table = Table(messages.decode_to_responder(published.snapshot))  # type: ignore[arg-type]
    found = bodies(table)
    assert len({id(b) for b in found}) < len(found)


def _fields(kind: type[Any]) -> list[tuple[str, Any]]:
    return [(f.name, f.default) for f in msgspec.structs.fields(kind)]


def test_the_encoded_forms_mirror_the_decoded_ones() -> None:
    """`EncodedZoneTable` must decode what the signer encodes as a `ZoneTable`: the same
    fields, in the same order, with the same defaults (array-like: position is identity)."""
    assert _fields(tables.EncodedZoneTable) == _fields(tables.ZoneTable)
    assert _fields(messages.EncodedSnapshot) == _fields(messages.Snapshot)
    assert _fields(tables.EncodedZoneDelta) == _fields(tables.ZoneDelta)
    assert _fields(messages.EncodedDelta) == _fields(messages.Delta)
    for encoded, decoded in ((messages.EncodedSnapshot, messages.Snapshot),
                             (messages.EncodedDelta, messages.Delta)):
        assert encoded.__struct_config__.tag == decoded.__struct_config__.tag


OVERHEAD = 720  # bytes per name; see `test_a_table_costs_little_beyond_the_octets_it_serves`
NAMES = 300  # static names of the budget zone: enough that per-name costs dominate


@functools.cache
def many_names(tmp: str, denial: str = "nsec") -> bytes:
    """The encoded snapshot of a signed zone of `NAMES` names (A records, 50 addresses)."""
    key = Path(tmp) / "budget.pem"
    if not key.exists():
        keys.write(keys.generate(keys.Algorithm.ED25519), str(key))
    records = {f"n{i:04d}": {"a": [f"192.0.2.{i % 50 + 1}"]} for i in range(NAMES)}
    cfg = config.from_mapping({"zones": [{
        "origin": "example.test", "nameservers": ["ns1.example.net"], "records": records,
        "dnssec": {"csk": str(key), "algorithm": "ED25519", "denial": denial}}]})
    published = Signer(cfg).update({}, full=True)
    assert published is not None
    return published.snapshot


def octets(table: Table) -> int:
    """What a table serves, as octets: its distinct bodies, keys and NSEC proofs."""
    found = {id(b): len(b) for b in bodies(table)}
    found.update((id(k), len(k)) for k in [*table.answers, *table.names])
    for chain in table.chains.values():
        found.update((id(p), len(p)) for p in chain[1])
    return sum(found.values())


def test_a_table_costs_little_beyond_the_octets_it_serves(tmp_dir: str) -> None:
    """Issue #12: the objects that hold a signed zone's answers (entries, dicts, sort keys,
    object headers) cost at most `OVERHEAD` bytes per name beyond the octets themselves.
    Entries of ten slots, each holding its own copy of the flags, cost 987; then NSEC sort
    keys as tuples of labels, 757."""
    data = many_names(tmp_dir)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        table = Table(messages.decode_to_responder(data))  # type: ignore[arg-type]
        gc.collect()  # the message is gone: only the table is left
        spent = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    overhead = (spent - octets(table)) / NAMES
    assert overhead <= OVERHEAD, f"{overhead:.0f} bytes per name beyond the octets served"


def test_the_responder_s_own_message_is_emptied_as_the_table_is_built(tmp_dir: str) -> None:
    """Each encoded answer, its key and each NSEC owner of a received snapshot are freed as
    soon as read, so that the table's objects take their place in memory instead of being
    laid out beside a whole message whose space, freed only at the end, the allocator kept
    (2.8 MiB of a responder at 10,000 signed names). A snapshot decoded whole is someone
    else's: it is left as it was."""
    data = many_names(tmp_dir)
    encoded = messages.decode_to_responder(data)
    assert isinstance(encoded, messages.EncodedSnapshot)
    zone = encoded.zones[0]
    assert zone.answers and zone.names and zone.chain
    table = Table(encoded)
    assert (len(zone.answers), len(zone.names), len(zone.chain)) == (0, 0, 0)
    whole = messages.decode_to_child(data)
    assert isinstance(whole, messages.Snapshot)
    assert view(table) == view(Table(whole))
    assert whole == messages.decode_to_child(data)


# Labels from a few octets, so that equal labels, prefixes and 0x00 octets come often.
wire_names = st.lists(st.binary(min_size=1, max_size=4).map(
    lambda b: bytes(b"\x00\x01a"[x % 3] for x in b)), max_size=4).map(
    lambda labels: b"".join(bytes([len(x)]) + x for x in labels) + b"\x00")


@settings(max_examples=500)
@given(st.lists(wire_names, min_size=2, max_size=8))
def test_packed_nsec_keys_sort_as_the_label_tuples(wires: list[bytes]) -> None:
    """A responder's NSEC chain keys are single bytes objects (`canonical.packed`): they must
    sort exactly as the canonical label tuples (RFC 4034 6.1), labels holding 0x00 and
    labels that begin others included, or a denial would cite the wrong NSEC record."""
    by_tuple = sorted(wires, key=canonical.key)
    by_packed = sorted(wires, key=canonical.packed)
    assert [canonical.key(w) for w in by_packed] == [canonical.key(w) for w in by_tuple]
    keys = sorted({canonical.packed(w) for w in wires})
    tuples = sorted({canonical.key(w) for w in wires})
    for wire in wires:
        assert canonical.covering(keys, wire, canonical.packed) == \
            canonical.covering(tuples, wire)
