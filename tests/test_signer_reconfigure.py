"""The signer told that the configuration changed (`Signer.reconfigure`).

What must hold, whatever the sequence of configurations and health states: the reconfigured
signer serves exactly what a fresh signer of the new configuration would; a zone whose answers
did not change keeps its serial and every other one gets a greater serial; nothing changed
means no publication at all; a delta is published only when the responders' tables can follow
it (same zones, same NSEC chains), and a table that follows it equals the fresh snapshot.
"""

from __future__ import annotations

import functools
import itertools
import logging
import multiprocessing
import os
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import dns.name
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_deltas import view as deltas_view
from test_signer_watch import next_word

from healthdns.responder.table import Table
from healthdns.shared import child, config, messages, tables
from healthdns.signer import keys
from healthdns.signer.main import Signer
from healthdns.signer.serial import serial_gt

ORIGINS = ["a.test", "b.test", "c.test"]
POOL = ["127.0.1.1", "127.0.1.2", "127.0.1.3"]


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def zone_doc(origin: str, variant: int, key: str | None = None) -> dict[str, Any]:
    """Variant 0 and 1 differ in one TXT record; variant 2 has one more name (so another
    NSEC chain when signed)."""
    records: dict[str, Any] = {
        "www": {"pool": {"addresses": POOL, "check": {"port": 80}, "max_answers": 2}},
        "txt": {"txt": [f'"variant {min(variant, 1)}"']},
    }
    if variant == 2:
        records["extra"] = {"a": ["127.0.8.1"]}
    doc: dict[str, Any] = {"origin": origin, "nameservers": ["ns1.example.net"],
                           "records": records}
    if key is not None:
        doc["dnssec"] = {"csk": key, "algorithm": "ED25519"}
    return doc


def make(zones: list[tuple[str, int]], key: str | None = None) -> config.Config:
    cfg = config.from_mapping({"zones": [zone_doc(o, v, key) for o, v in zones]})
    return config.decode(config.encode(cfg))  # as a child gets it, over the pipe


def target(address: str) -> str:
    return config.CheckSpec(port=80).target(address)


def health(ups: list[bool]) -> dict[str, bool]:
    return {target(a): up for a, up in zip(POOL, ups, strict=True)}


def decode(data: bytes) -> Any:
    return messages.decode_to_child(data)


def content(table: tables.ZoneTable) -> tuple[object, ...]:
    """What a zone serves, but its serial (and the SOA records that carry it)."""
    answers = {k: v for k, v in table.answers.items() if k != table.origin + b"\x00\x06"}
    return (answers, table.names, table.variants, table.proofs, table.chain,
            table.nxdomain, table.nsec3)


def view(table: Table) -> dict[str, Any]:
    """Everything a responder's table serves (as tests/test_deltas.py compares them)."""
    return deltas_view(table)


@functools.cache
def key_file(tmp: str, name: str = "csk.pem") -> str:
    path = Path(tmp) / name
    keys.write(keys.generate(keys.Algorithm.ED25519), str(path))
    return str(path)


@pytest.fixture(scope="module")
def tmp_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("reconfigure"))


# --- the model ----------------------------------------------------------------------------------

zone_sets = st.lists(st.tuples(st.sampled_from(ORIGINS), st.integers(0, 2)), min_size=1,
                     max_size=3, unique_by=lambda z: z[0])
healths = st.lists(st.booleans(), min_size=len(POOL), max_size=len(POOL))


@pytest.mark.parametrize("signed", [False, True])
@settings(max_examples=25, deadline=None)
@given(first=zone_sets, first_health=healths,
       steps=st.lists(st.tuples(zone_sets, healths), min_size=1, max_size=5))
def test_reconfigure_model(tmp_dir: str, signed: bool, first: list[tuple[str, int]],
                           first_health: list[bool],
                           steps: list[tuple[list[tuple[str, int]], list[bool]]]) -> None:
    key = key_file(tmp_dir) if signed else None
    clock = Clock()
    signer = Signer(make(first, key), now=clock)
    published = signer.update(health(first_health), full=True)
    assert published is not None
    for zones, ups in steps:
        # Signed, the clock stands still: a fresh signer then makes the very same signatures
        # (Ed25519 is deterministic), so its answers can be compared byte for byte.
        clock.now += 0 if signed else 1
        cfg = make(zones, key)
        fresh = decode(_fresh(cfg, health(ups), clock).snapshot)
        before = decode(published.snapshot)
        signer.reconfigure(cfg)
        assert signer.publish() is None  # nothing is shown before the health that follows
        new = signer.update(health(ups), full=True)
        old_zones = {z.origin: z for z in before.zones}
        same_origins = [z.origin for z in before.zones] == [z.origin for z in fresh.zones]
        if same_origins and all(content(old_zones[z.origin]) == content(z)
                                for z in fresh.zones):
            assert new is None  # nothing served changed: no generation, no serial
            continue
        assert new is not None and new.generation == published.generation + 1
        after = decode(new.snapshot)
        assert [content(z) for z in after.zones] == [content(z) for z in fresh.zones]
        for table in after.zones:
            old = old_zones.get(table.origin)
            if old is not None and content(old) == content(table):
                assert table.serial == old.serial, dns.name.from_wire(table.origin, 0)
            elif old is not None:
                assert serial_gt(table.serial, old.serial)
        fits = same_origins and all(old_zones[z.origin].chain == z.chain for z in after.zones)
        if fits:
            assert new.delta
            following = Table(before).apply(decode(new.delta))
            assert view(following) == view(Table(after))
        else:
            assert new.delta == b""  # responders load the snapshot
        published = new


def _fresh(cfg: config.Config, states: dict[str, bool], clock: Clock) -> messages.Published:
    published = Signer(cfg, now=clock).update(states, full=True)
    assert published is not None
    return published


# --- examples -----------------------------------------------------------------------------------


def test_a_changed_zone_alone_gets_a_new_serial() -> None:
    clock = Clock()
    signer = Signer(make([("a.test", 0), ("b.test", 0)]), now=clock)
    first = signer.update(health([True] * 3), full=True)
    assert first is not None
    clock.now += 10
    signer.reconfigure(make([("a.test", 0), ("b.test", 1)]))
    # A flip relayed before the full report that follows the new config: no generation yet.
    assert signer.update(health([True] * 3), full=False) is None
    second = signer.update(health([True] * 3), full=True)
    assert second is not None and second.generation == first.generation + 1
    assert second.serials == [first.serials[0], first.serials[1] + 10]
    delta = decode(second.delta)
    assert isinstance(delta, messages.Delta) and delta.base == first.generation
    assert not delta.zones[0].answers and delta.zones[1].answers


def test_the_same_config_again_publishes_nothing() -> None:
    cfg = make([("a.test", 0), ("b.test", 2)])
    signer = Signer(cfg)
    assert signer.update(health([True, False, True]), full=True) is not None
    signer.reconfigure(make([("a.test", 0), ("b.test", 2)]))
    assert signer.update(health([True, False, True]), full=True) is None


@pytest.mark.parametrize(("before", "after"), [
    ([("a.test", 0)], [("a.test", 0), ("b.test", 0)]),  # added
    ([("a.test", 0), ("b.test", 0)], [("a.test", 0)]),  # removed, the rest unchanged
    ([("a.test", 0), ("b.test", 0)], [("b.test", 0), ("a.test", 0)]),  # reordered
])
def test_other_zones_mean_a_full_snapshot_only(before: list[tuple[str, int]],
                                               after: list[tuple[str, int]]) -> None:
    signer = Signer(make(before))
    first = signer.update(health([True] * 3), full=True)
    assert first is not None
    signer.reconfigure(make(after))
    second = signer.update(health([True] * 3), full=True)
    assert second is not None and second.delta == b""
    snapshot = decode(second.snapshot)
    origins = [dns.name.from_wire(z.origin, 0)[0].to_text() for z in snapshot.zones]
    assert origins == [f"{o}." for o, _ in after]
    kept = dict(zip([o for o, _ in before], first.serials, strict=True))
    assert [kept.get(o, s) for (o, _), s in zip(after, second.serials, strict=True)] \
        == second.serials  # the zones that stayed keep their serials


def test_a_new_key_file_is_a_zone_change(tmp_path: Path) -> None:
    key = key_file(str(tmp_path))
    cfg = make([("a.test", 0)], key)
    clock = Clock()
    signer = Signer(cfg, now=clock)
    first = signer.update(health([True] * 3), full=True)
    assert first is not None
    clock.now += 5
    os.unlink(key)
    key_file.cache_clear()
    assert key_file(str(tmp_path)) == key  # another key, same file name
    signer.reconfigure(cfg)
    second = signer.update(health([True] * 3), full=True)
    assert second is not None and second.serials[0] == first.serials[0] + 5
    assert _dnskey(first) != _dnskey(second)


def test_a_key_that_cannot_be_read_keeps_the_old_zones(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    signer = Signer(make([("a.test", 0)], key_file(str(tmp_path))))
    first = signer.update(health([True] * 3), full=True)
    assert first is not None
    new = key_file(str(tmp_path), "new.pem")
    os.chmod(new, 0o644)  # readable by others: refused, as at start-up
    with caplog.at_level(logging.ERROR, "healthdns.signer"):
        signer.reconfigure(make([("a.test", 1), ("b.test", 0)], new))
    assert "new configuration not applied, serving the old zones and keys" in caplog.text
    assert "zones[0].dnssec.csk" in caplog.text
    # The new prober checks other targets: the old zone's are kept, not turned down.
    assert signer.update({target("127.0.1.9"): True}, full=True) is None
    assert signer.update(health([True, False, True]), full=False) is not None


def _dnskey(published: messages.Published) -> bytes:
    table = decode(published.snapshot).zones[0]
    return bytes(table.answers[table.origin + b"\x00\x30"].body)


# --- in a process, over a real pipe ---------------------------------------------------------------


def test_a_signer_process_publishes_the_new_config_with_its_health() -> None:
    """Reconfigure then Health, as the supervisor sends them: one generation, with the new
    zone and the old one's serial kept, and nothing before the health is in."""
    ctx = multiprocessing.get_context("spawn")
    parent, child_end = ctx.Pipe()
    old, new = make([("a.test", 0)]), make([("a.test", 0), ("b.test", 0)])
    messages.send(parent, messages.Start(0, config.encode(old)))
    messages.send(parent, messages.Health(health([True] * 3), full=True))
    process = ctx.Process(target=child.enter, args=("signer", child_end))
    process.start()
    child_end.close()
    try:
        first = _published(parent)
        messages.send(parent, messages.Reconfigure(config.encode(new)))
        assert next_word(parent, 0.3) is None  # waits for the health of the new config
        messages.send(parent, messages.Health(health([True] * 3), full=True))
        second = _published(parent)
        assert second.generation == first.generation + 1 and second.delta == b""
        assert second.serials[0] == first.serials[0] and len(second.serials) == 2
    finally:
        messages.send(parent, messages.Bye())
        process.join(5)
        if process.exitcode is None:
            process.kill()
    assert process.exitcode == 0


def test_reconfigure_is_a_message_to_children() -> None:
    encoded = messages.encode(messages.Reconfigure(b"config"))
    assert messages.decode_to_child(encoded) == messages.Reconfigure(b"config")
    with pytest.raises(msgspec.DecodeError):
        messages.decode_from("signer", encoded)  # never from a child


# --- rolling a key with `publish`, as docs/operations.md tells the operator -------------------------


def _rrsets(published: messages.Published, name: str, rdtype: int) -> tuple[Any, Any]:
    """The RRset of `name`/`rdtype` with DO=1, and its RRSIG RRset."""
    import struct

    import dns.message
    import dns.rdatatype

    table = decode(published.snapshot).zones[0]
    wire = dns.name.from_text(name).to_wire()
    answer = table.answers[wire + struct.pack(">H", rdtype)].signed
    assert answer is not None
    header = struct.pack(">HHHHHH", 1, answer.flags, 1, answer.ancount, answer.nscount,
                         answer.arcount)
    message = dns.message.from_wire(header + wire + struct.pack(">HH", rdtype, 1) + answer.body)
    rrset = next(r for r in message.answer if r.rdtype == rdtype)
    sigs = next(r for r in message.answer if r.rdtype == dns.rdatatype.RRSIG)
    return rrset, sigs


def _validates(published: messages.Published, cached_dnskeys: Any, clock: Clock) -> bool:
    """Whether the A answer validates with the DNSKEY set a resolver cached earlier."""
    import dns.dnssec

    rrset, sigs = _rrsets(published, "www.a.test", 1)
    try:
        dns.dnssec.validate(rrset, sigs, {dns.name.from_text("a.test"): cached_dnskeys},
                            now=clock.now)
    except dns.dnssec.ValidationFailure:
        return False
    return True


def test_a_zsk_rollover_by_publishing_first_never_breaks_validation(tmp_path: Path) -> None:
    """The documented steps: publish the new ZSK, reload; sign with it, keep the old published,
    reload; drop the old, reload. At each step an answer validates with the DNSKEY set a
    resolver cached at the step before; swapping the ZSK at once (the last assertion) would
    not."""
    ksk, old, new = (str(tmp_path / f"{n}.pem") for n in ("ksk", "zsk1", "zsk2"))
    for file, role in ((ksk, "ksk"), (old, "zsk"), (new, "zsk")):
        keys.write(keys.generate(keys.Algorithm.ED25519), file, role)

    def cfg(zsk: str, publish: list[str]) -> config.Config:
        doc = zone_doc("a.test", 0)
        doc["dnssec"] = {"ksk": ksk, "zsk": zsk, "algorithm": "ED25519", "publish": publish}
        return config.decode(config.encode(config.from_mapping({"zones": [doc]})))

    clock = Clock()
    signer = Signer(cfg(old, []), now=clock)
    steps = [signer.update(health([True] * 3), full=True)]
    for zsk, publish in ((old, [new]), (new, [old]), (new, [])):
        clock.now += 3600
        signer.reconfigure(cfg(zsk, publish))
        published = signer.update(health([True] * 3), full=True)
        assert published is not None
        steps.append(published)
    counts = [len(_rrsets(p, "a.test", 48)[0]) for p in steps]
    assert counts == [2, 3, 3, 2]  # KSK and ZSK, plus the one being rolled in or out
    for before, after in itertools.pairwise(steps):
        assert _validates(after, _rrsets(before, "a.test", 48)[0], clock)
    assert not _validates(steps[2], _rrsets(steps[0], "a.test", 48)[0], clock)


def test_a_published_key_must_say_its_role(tmp_path: Path) -> None:
    from healthdns.shared import keyfiles

    bare = tmp_path / "bare.pem"
    keys.write(keys.generate(keys.Algorithm.ED25519), str(bare))  # no role note
    csk = key_file(str(tmp_path), "csk.pem")
    doc = zone_doc("a.test", 0)
    doc["dnssec"] = {"csk": csk, "algorithm": "ED25519", "publish": [str(bare)]}
    with pytest.raises(keys.KeyFileError, match=r"zones\[0\]\.dnssec\.publish\[0\]: .*bare\.pem "
                       "does not say its role; add the line 'healthdns-key role: zsk'"):
        keyfiles.check_config(config.from_mapping({"zones": [doc]}))
    doc["dnssec"]["publish"] = [csk]
    with pytest.raises(config.ConfigError, match=r"publish\[0\].*named twice"):
        config.from_mapping({"zones": [doc]})


def test_ds_of_a_published_ksk_is_printed_and_marked(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    """Step 2 of a KSK rollover: the operator gets the new DS from the configuration."""
    from healthdns.signer import keytool

    files = {n: tmp_path / f"{n}.pem" for n in ("ksk1", "zsk", "ksk2")}
    for name, file in files.items():
        keys.write(keys.generate(keys.Algorithm.ED25519), str(file), name[:3])
    conf = tmp_path / "healthdns.toml"
    conf.write_text(f'''
[[zones]]
origin = "a.test"
nameservers = ["ns1.example.net"]
[zones.dnssec]
algorithm = "ED25519"
ksk = "{files['ksk1']}"
zsk = "{files['zsk']}"
publish = ["{files['ksk2']}"]
''')
    assert keytool.main(["ds", "--config", str(conf)]) == 0
    out = capsys.readouterr().out
    assert out.count(" IN DS ") == 2
    assert "; published only, not signing yet (or any more): a.test" in out


def test_keys_that_can_no_longer_be_read_are_kept_when_unchanged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """After the privilege drop, a key only root may read cannot be read again: a reload that
    leaves the zone's DNSSEC settings alone still applies, signing with the keys it has."""
    key = key_file(str(tmp_path))
    signer = Signer(make([("a.test", 0)], key))
    first = signer.update(health([True] * 3), full=True)
    assert first is not None
    os.chmod(key, 0o644)  # what the signer meets, as far as it can tell: a key it cannot load
    with caplog.at_level(logging.WARNING, "healthdns.signer"):
        signer.reconfigure(make([("a.test", 1)], key))  # another TXT record
    assert "signing on with the keys read at start" in caplog.text
    second = signer.update(health([True] * 3), full=True)
    assert second is not None and second.serials[0] != first.serials[0]
    assert _dnskey(second) == _dnskey(first)
    os.chmod(key, 0o600)


def _published(parent: Connection) -> messages.Published:
    """The next generation, with the explanation (`Choices`) that follows each one."""
    published = next_word(parent, 20)
    assert isinstance(published, messages.Published)
    assert isinstance(next_word(parent, 20), messages.Choices)
    return published
