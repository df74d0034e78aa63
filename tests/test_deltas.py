"""A responder that follows deltas serves exactly what a fresh snapshot of the same generation
would: every name, every type, every rotation variant, byte for byte.

The signer publishes both forms of every generation; random health schedules (hypothesis) drive
it through pools that rotate, stop rotating, fail over and go dark, in an unsigned and a signed
zone, while the responder's table rotates between deltas as a running responder does.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthdns.responder.table import Table
from healthdns.shared import config, messages
from healthdns.signer import keys
from healthdns.signer.main import Signer

V4 = [f"127.0.1.{i}" for i in range(1, 7)]
V6 = ["::1"]


def document() -> dict[str, Any]:
    check = {"port": 80}
    records: dict[str, Any] = {
        # rotating, equal weights: stops rotating when two or fewer are up
        "rot": {"pool": {"addresses": V4[:4], "max_answers": 2, "check": check}},
        # rotating with weights, and an IPv6 family that never rotates
        "weighted": {"pool": {"addresses": [*V4[:3], *V6], "weights": [3, 2, 1, 1],
                              "max_answers": 2, "check": check, "policy": "empty"}},
        # failover groups with min_healthy, each rotating, backup when all are down
        "groups": {"pool": {"groups": [{"addresses": V4[:3]}, {"addresses": V4[3:]}],
                            "min_healthy": 2, "max_answers": 1, "check": check,
                            "policy": "backup", "backup": ["127.0.9.1"]}},
        "plain": {"pool": {"addresses": V4[2:5], "check": check, "policy": "empty"}},
        "alias": {"cname": "rot"},  # a CNAME into a rotating pool
        "static": {"a": ["127.0.8.1"], "txt": ['"hello"']},
    }
    return {"zones": [{"origin": "example.test", "aliases": ["example.org"],
                       "nameservers": ["ns1.example.net"], "records": records}]}


@functools.cache
def configs(tmp: str) -> dict[str, config.Config]:
    key = Path(tmp) / "csk.pem"
    if not key.exists():
        keys.write(keys.generate(keys.Algorithm.ED25519), str(key))
    signed = document()
    signed["zones"][0]["dnssec"] = {"csk": str(key), "algorithm": "ED25519"}
    return {"unsigned": config.from_mapping(document()), "signed": config.from_mapping(signed)}


def targets(cfg: config.Config) -> list[str]:
    found = set()
    for record in cfg.zones[0].records.values():
        if record.pool is None:
            continue
        for group in record.pool.groups:
            assert group.check is not None
            found.update(group.check.target(a) for a in group.addresses)
    return sorted(found)


def view(table: Table) -> dict[str, Any]:
    """What a table serves, rotation aside: each rotating key by its list of variants; the
    SOA records each entry puts first (its slot made, whatever else the table made)."""
    answers = {k: table.variants.get(k, v)
               for k, v in table.answers.items()}
    entries = {**table.answers, **table.names}
    entries |= {k + bytes([i]): e for k, v in table.variants.items() for i, e in enumerate(v)}
    soas = {k: (table.soas[e[0].soa], table.soas_signed[e[0].soa]) for k, e in entries.items()}
    zones = {origin: (nx.answer, nx.ids, nx.proved) for origin, nx in table.zones.items()}
    return {"answers": answers, "names": table.names, "zones": zones, "soas": soas,
            "templates": table.templates, "chains": table.chains, "variants": table.variants}


def served(table: Table) -> dict[bytes, Any]:
    """What the next query for each key meets: a rotating key's next variant (which this
    answer steps past, as an answer sent does)."""
    return {**table.answers, **{key: table.find(key) for key in table.rotations}}


def step(table: Table, answers: int) -> None:
    """`answers` answers sent for every rotating key."""
    for key in table.rotations:
        for _ in range(answers):
            table.find(key)


schedules = st.lists(
    st.tuples(st.lists(st.booleans(), min_size=len(V4) + 1, max_size=len(V4) + 1),
              st.integers(min_value=0, max_value=7)),  # health of every target; answers per key
    min_size=1, max_size=12)


@pytest.fixture(scope="module")
def tmp_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("keys"))


@pytest.mark.parametrize("kind", ["unsigned", "signed"])
@settings(max_examples=40, deadline=None)
@given(schedule=schedules)
def test_deltas_equal_snapshots(tmp_dir: str, kind: str,
                                schedule: list[tuple[list[bool], int]]) -> None:
    cfg = configs(tmp_dir)[kind]
    ids = targets(cfg)
    signer = Signer(cfg)
    first = signer.update(dict.fromkeys(ids, True), full=True)
    assert first is not None
    following = Table(_decode(first.snapshot, messages.Snapshot))
    for health, turns in schedule:
        published = signer.update(dict(zip(ids, health, strict=True)), full=True)
        step(following, turns)  # the responder answers between generations
        if published is None:
            continue  # nothing served changed: no generation
        following = following.apply(_decode(published.delta, messages.Delta))
        fresh = Table(_decode(published.snapshot, messages.Snapshot))
        assert following.generation == fresh.generation
        assert view(following) == view(fresh)
        assert served(following) == served(fresh)  # rotation restarts at variant 0
        for _ in range(1, 4):  # and goes through the same variants
            assert served(following) == served(fresh)


def test_a_pool_that_stops_rotating_leaves_no_variant_behind(tmp_dir: str) -> None:
    """The reported case: four addresses, max_answers 2, two go down. No later rotation
    may bring a down address back."""
    cfg = configs(tmp_dir)["unsigned"]
    ids = targets(cfg)
    signer = Signer(cfg)
    first = signer.update(dict.fromkeys(ids, True), full=True)
    assert first is not None
    table = Table(_decode(first.snapshot, messages.Snapshot))
    step(table, 1)
    down = {cfg.zones[0].records["rot"].pool.groups[0].check.target(a)  # type: ignore[union-attr]
            for a in V4[2:4]}
    published = signer.update({t: t not in down for t in ids}, full=True)
    assert published is not None
    table = table.apply(_decode(published.delta, messages.Delta))
    key = b"\x03rot\x07example\x04test\x00\x00\x01\x00\x01"
    for _ in range(2, 10):
        found = table.find(key)
        assert found is not None
        body = found[1]
        assert bytes([127, 0, 1, 3]) not in body and bytes([127, 0, 1, 4]) not in body


def _decode(data: bytes, kind: type[Any]) -> Any:
    message = messages.decode_to_child(data)
    assert isinstance(message, kind)
    return message


def test_view_sees_a_difference() -> None:
    """The comparison itself can fail: two generations with different health differ."""
    cfg = config.from_mapping(document())
    ids = targets(cfg)
    a = Signer(cfg).update(dict.fromkeys(ids, True), full=True)
    b = Signer(cfg).update(dict.fromkeys(ids, False), full=True)
    assert a is not None and b is not None
    assert view(Table(_decode(a.snapshot, messages.Snapshot))) != \
        view(Table(_decode(b.snapshot, messages.Snapshot)))
