"""Each zone's records for transfers (#11): what the responders serve, valid, complete, and
carried by deltas exactly.

Random health states (hypothesis) drive a zone with an alias, pools that rotate, fail over and
go dark, a CNAME into a pool, a deep name (empty non-terminals) and CDS, unsigned, signed with
NSEC and signed with NSEC3. Every RRset of the records is compared with what a responder table
answers for its name and type (a rotating name with the union of every variant it serves);
signed records are validated with the zone's DNSKEY, and the NSEC or NSEC3 chain is walked.
"""

from __future__ import annotations

import base64
import functools
import multiprocessing
import struct
from pathlib import Path
from typing import Any

import dns.dnssec
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthdns.responder.query import Answerer
from healthdns.responder.table import Table
from healthdns.shared import child, config, messages, tables
from healthdns.shared.messages import Records, RecordsDelta, Snapshot
from healthdns.shared.tables import ZoneRecords
from healthdns.signer import keys, transferred
from healthdns.signer.main import Signer
from healthdns.signer.serial import serial_gt
from healthdns.supervisor import views

V4 = [f"127.0.1.{i}" for i in range(1, 7)]
LISTEN = ["127.0.0.1:5399"]
RRSIG, NSEC, NSEC3, SOA, CNAME, ANY = 46, 47, 50, 6, 5, 255


def document(denial: str | None, key: str = "") -> dict[str, Any]:
    check = {"port": 80}
    names: dict[str, Any] = {
        "rot": {"pool": {"addresses": V4[:4], "max_answers": 2, "check": check}},
        "weighted": {"pool": {"addresses": [*V4[:3], "::1"], "weights": [3, 2, 1, 1],
                              "max_answers": 2, "check": check, "policy": "empty"}},
        "groups": {"pool": {"groups": [{"addresses": V4[:3]}, {"addresses": V4[3:]}],
                            "min_healthy": 2, "max_answers": 1, "check": check,
                            "policy": "backup", "backup": ["127.0.9.1"]}},
        "plain": {"pool": {"addresses": V4[2:5], "check": check, "policy": "empty"}},
        "alias": {"cname": "rot"},
        "away": {"cname": "www.example.net."},
        "a.b.deep": {"txt": ['"deep"']},
        "@": {"mx": ["10 mail"], "txt": ['"apex"']},
        "mail": {"a": ["127.0.8.1"], "aaaa": ["::2"]},
    }
    zone: dict[str, Any] = {"origin": "example.test", "aliases": ["example.org"],
                            "nameservers": ["ns1.example.net"], "records": names}
    if denial is not None:
        zone["dnssec"] = {"csk": key, "algorithm": "ED25519", "denial": denial, "cds": True}
    return {"transfer": {"listen": LISTEN, "require_tsig": False}, "zones": [zone]}


@functools.cache
def configs(tmp: str) -> dict[str, config.Config]:
    key = Path(tmp) / "csk.pem"
    if not key.exists():
        keys.write(keys.generate(keys.Algorithm.ED25519), str(key))
    return {kind: config.from_mapping(document(denial, str(key)))
            for kind, denial in (("unsigned", None), ("nsec", "nsec"), ("nsec3", "nsec3"))}


@pytest.fixture(scope="module")
def tmp_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("keys"))


def targets(cfg: config.Config) -> list[str]:
    found: set[str] = set()
    for record in cfg.zones[0].records.values():
        for group in record.pool.groups if record.pool is not None else ():
            assert group.check is not None
            found.update(group.check.target(a) for a in group.addresses)
    return sorted(found)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


# --- reading records --------------------------------------------------------------------------

RRsetKey = tuple[dns.name.Name, int, int]  # owner, type, type covered (RRSIG) or 0


def parse(wire: bytes) -> tuple[dns.name.Name, int, int, dns.rdata.Rdata]:
    name, used = dns.name.from_wire(wire, 0)
    rdtype, rdclass, ttl, size = struct.unpack(">HHIH", wire[used:used + 10])
    assert rdclass == 1 and used + 10 + size == len(wire), "one whole IN record per bytes"
    rdata = dns.rdata.from_wire(dns.rdataclass.IN, rdtype, wire, used + 10, size)
    return name, rdtype, ttl, rdata


def rrsets(zone: ZoneRecords) -> dict[RRsetKey, dns.rrset.RRset]:
    """The records of a zone (its SOA too) as RRsets, each owner's under that owner only."""
    out: dict[RRsetKey, dns.rrset.RRset] = {}
    for owner, rrs in [(zone.origin, [zone.soa]), *zone.owners.items()]:
        for wire in rrs:
            name, rdtype, ttl, rdata = parse(wire)
            assert name.to_wire() == owner, "an owner's records are under that owner"
            assert owner == name.canonicalize().to_wire(), "owners in lower case"
            covered = rdata.type_covered if rdtype == RRSIG else 0  # type: ignore[attr-defined]
            found = out.setdefault((name, rdtype, covered), dns.rrset.RRset(
                name, dns.rdataclass.IN, _type(rdtype), _type(covered)))
            assert found.ttl in (0, ttl) or not found, "one TTL per RRset"
            found.add(rdata, ttl)
    return out


def _type(value: int) -> dns.rdatatype.RdataType:
    return dns.rdatatype.RdataType.make(value)


def decode(data: bytes, kind: type[Any]) -> Any:
    message = messages.decode_to_child(data)
    assert isinstance(message, kind)
    return message


# --- what a responder answers -----------------------------------------------------------------

def ask(answerer: Answerer, name: dns.name.Name, rdtype: int, dnssec: bool) -> dns.message.Message:
    query = dns.message.make_query(name, _type(rdtype), want_dnssec=dnssec, payload=4096)
    response = answerer.answer(query.to_wire(), 1)  # TCP: never truncated
    assert response is not None
    return dns.message.from_wire(response)


def served(answerer: Answerer, name: dns.name.Name, rdtype: int, dnssec: bool,
           turns: int) -> tuple[int, set[dns.rdata.Rdata], set[dns.rdata.Rdata]]:
    """TTL, rdatas and RRSIGs the responder answers for the name's own RRset, `turns` answers
    (each the next of a rotation) taken together (RRSIGs only when nothing rotates: each
    variant has its own)."""
    ttls: set[int] = set()
    rdatas: set[dns.rdata.Rdata] = set()
    sigs: set[dns.rdata.Rdata] = set()
    for _ in range(turns):
        response = ask(answerer, name, rdtype, dnssec)
        rrset = response.get_rrset(response.answer, name, dns.rdataclass.IN, _type(rdtype))
        assert rrset is not None, f"{name} {rdtype} is served"
        ttls.add(rrset.ttl)
        rdatas.update(rrset)
        found = response.get_rrset(response.answer, name, dns.rdataclass.IN,
                                   _type(RRSIG), _type(rdtype))
        sigs.update(found or ())
    assert len(ttls) == 1
    return ttls.pop(), rdatas, sigs if turns == 1 else set()


def answerable(zone: tables.ZoneTable) -> set[tuple[dns.name.Name, int]]:
    """Every name and type a responder has an RRset of its own for: not ANY, and at a CNAME
    owner only CNAME and NSEC (its other types are answered with the chain)."""
    pairs = {(k[:-2], struct.unpack(">H", k[-2:])[0]) for k in zone.answers}
    cnames = {name for name, rdtype in pairs if rdtype == CNAME}
    return {(dns.name.from_wire(name, 0)[0], rdtype) for name, rdtype in pairs
            if rdtype != ANY and (name not in cnames or rdtype in (CNAME, NSEC))} \
        | {(dns.name.from_wire(zone.origin, 0)[0], SOA)}


def check_served(published: messages.Published, signed: bool) -> None:
    """Every RRset of the records is what the responder table answers for it, and the other
    way round; NSEC3 records (no name to ask) are the ones the NXDOMAIN proofs hold."""
    snapshot = decode(published.snapshot, messages.Snapshot)
    listed = decode(published.records, Records)
    answerer = Answerer(4096)
    answerer.table = Table(snapshot)
    assert listed.generation == snapshot.generation
    for table, zone in zip(snapshot.zones, listed.zones, strict=True):
        assert (zone.origin, zone.serial) == (table.origin, table.serial)
        sets = rrsets(zone)
        hashed = {owner for owner, rdtype, _ in sets if rdtype == NSEC3}
        assert {(o, t) for o, t, c in sets if not c and o not in hashed} == answerable(table)
        for (owner, rdtype, _covered), rrset in sets.items():
            if owner in hashed or rdtype == RRSIG:
                continue
            key = owner.to_digestable() + struct.pack(">H", rdtype)
            turns = len(table.variants.get(key, [None]))
            ttl, rdatas, sigs = served(answerer, owner, rdtype, signed, turns)
            assert (rrset.ttl, set(rrset)) == (ttl, rdatas), f"{owner} {rdtype}"
            listed_sigs = sets.get((owner, RRSIG, rdtype))
            assert bool(listed_sigs) == signed
            if turns == 1 and listed_sigs is not None:
                assert set(listed_sigs) == sigs and listed_sigs.ttl == ttl
        proofs = {}
        for proof in table.proofs if table.nsec3 else ():
            for wire in _split(proof, table.origin):
                name, rdtype, ttl, rdata = parse(wire)
                if rdtype == NSEC3:
                    proofs[name] = (ttl, rdata)
        assert {o: (s.ttl, s[0]) for (o, t, _), s in sets.items() if t == NSEC3} == proofs


def _split(proof: bytes, origin: bytes) -> list[bytes]:
    """The records of a proof template one by one, owners uncompressed: it is written as the
    records after a question for the apex (their rdata hold no pointers)."""
    message = bytes(12) + origin + b"\x00\x01\x00\x01" + proof
    out = []
    at = len(message) - len(proof)
    while at < len(message):
        name, used = dns.name.from_wire(message, at)
        size = struct.unpack(">H", message[at + used + 8:at + used + 10])[0]
        out.append(name.to_wire() + message[at + used:at + used + 10 + size])
        at += used + 10 + size
    return out


# --- validity and chains ----------------------------------------------------------------------

def check_signed(zone: ZoneRecords, nsec3: bool, names: list[str]) -> None:
    """Every RRset validates with the zone's DNSKEY (the union RRset of a rotating pool too),
    and the NSEC or NSEC3 chain covers every name with the types it has: every name of the
    zone's records, a pool with nothing to serve included (NODATA, never NXDOMAIN)."""
    sets = rrsets(zone)
    origin = dns.name.from_wire(zone.origin, 0)[0]
    dnskeys = sets[(origin, dns.rdatatype.DNSKEY, 0)]
    for (owner, rdtype, _), rrset in sets.items():
        if rdtype == RRSIG:
            continue
        dns.dnssec.validate(rrset, sets[(owner, RRSIG, rdtype)], {origin: dnskeys})
    types: dict[dns.name.Name, set[int]] = {}
    for owner, rdtype, _ in sets:
        if rdtype not in (NSEC3, RRSIG):
            types.setdefault(owner, set()).add(rdtype)
    for name in names:
        types.setdefault(dns.name.from_text(name, origin), set())
    if nsec3:
        _check_nsec3(sets, types, origin)
    else:
        _check_nsec(sets, types, origin)


def _check_nsec(sets: dict[RRsetKey, dns.rrset.RRset], types: dict[dns.name.Name, set[int]],
                origin: dns.name.Name) -> None:
    seen, name = [], origin
    while True:
        nsec = sets[(name, NSEC, 0)][0]
        bitmap = {t for window, bits in nsec.windows for t in _bits(window, bits)}
        assert bitmap == types[name] | {RRSIG}, f"{name}: NSEC types"
        seen.append(name)
        name = nsec.next.canonicalize()
        if name == origin:
            break
        assert name not in seen and len(seen) <= len(types)
    assert sorted(seen) == seen and set(seen) == set(types), "one NSEC per name, in order"


def _check_nsec3(sets: dict[RRsetKey, dns.rrset.RRset], types: dict[dns.name.Name, set[int]],
                 origin: dns.name.Name) -> None:
    names = set(types)
    for name in list(names):  # the empty non-terminals have their NSEC3 too
        while name != origin:
            name = name.parent()
            names.add(name)
    hashes = {dns.dnssec.nsec3_hash(n, None, 0, 1).lower(): n for n in names}
    chain = {o.labels[0].decode(): s[0] for (o, t, _), s in sets.items() if t == NSEC3}
    assert set(chain) == set(hashes), "one NSEC3 per name, empty non-terminals included"
    order = sorted(chain)
    for i, digest in enumerate(order):
        record = chain[digest]
        following = base64.b32hexencode(record.next).decode().lower()
        assert following == order[(i + 1) % len(order)]
        bitmap = {t for window, bits in record.windows for t in _bits(window, bits)}
        own = types.get(hashes[digest], set())
        assert bitmap == (own | {RRSIG} if own else set()), f"{hashes[digest]}: NSEC3 types"


def _bits(window: int, bits: bytes) -> list[int]:
    return [window * 256 + i * 8 + j for i, byte in enumerate(bits) for j in range(8)
            if byte & (0x80 >> j)]


# --- the tests --------------------------------------------------------------------------------

healths = st.lists(st.booleans(), min_size=len(V4) + 1, max_size=len(V4) + 1)


@pytest.mark.parametrize("kind", ["unsigned", "nsec", "nsec3"])
@settings(max_examples=15, deadline=None)
@given(health=healths)
def test_records_are_what_responders_serve(tmp_dir: str, kind: str, health: list[bool]) -> None:
    cfg = configs(tmp_dir)[kind]
    published = Signer(cfg).update(dict(zip(targets(cfg), health, strict=True)), full=True)
    assert published is not None
    check_served(published, kind != "unsigned")
    if kind != "unsigned":
        for zone in decode(published.records, Records).zones:
            check_signed(zone, kind == "nsec3", list(cfg.zones[0].records))


schedules = st.lists(healths, min_size=1, max_size=8)


@pytest.mark.parametrize("kind", ["unsigned", "nsec", "nsec3"])
@settings(max_examples=15, deadline=None)
@given(schedule=schedules)
def test_deltas_lead_to_the_records_of_the_last_generation(
        tmp_dir: str, kind: str, schedule: list[list[bool]]) -> None:
    """Applying every delta to the first records gives the last records, and those are what a
    fresh signer lists for the last health (its serial and the SOA's RRSIG aside); each
    generation's records stay what the responders serve."""
    cfg = configs(tmp_dir)[kind]
    ids = targets(cfg)
    clock = Clock()  # one instant: ED25519 signatures made twice are the same bytes
    signer = Signer(cfg, now=clock)
    first = signer.update(dict.fromkeys(ids, True), full=True)
    assert first is not None and first.records_delta == b""
    held = decode(first.records, Records)
    for health in schedule:
        published = signer.update(dict(zip(ids, health, strict=True)), full=True)
        if published is None:
            continue
        delta = decode(published.records_delta, RecordsDelta)
        assert (delta.generation, delta.base) == (published.generation, held.generation)
        held = Records(delta.generation, [transferred.apply(z, d)
                                          for z, d in zip(held.zones, delta.zones, strict=True)])
        assert held == decode(published.records, Records)
        check_served(published, kind != "unsigned")
    fresh = Signer(cfg, now=clock).update(dict(zip(ids, schedule[-1], strict=True)), full=True)
    assert fresh is not None
    assert [_serial_aside(z) for z in decode(fresh.records, Records).zones] \
        == [_serial_aside(z) for z in held.zones]


def _serial_aside(zone: ZoneRecords) -> dict[bytes, list[bytes]]:
    apex = [r for r in zone.owners.get(zone.origin, []) if parse(r)[1:2] != (RRSIG,)
            or parse(r)[3].type_covered != SOA]  # type: ignore[attr-defined]
    return {**zone.owners, zone.origin: apex}


def test_a_delta_carries_only_the_names_that_changed(tmp_dir: str) -> None:
    cfg = configs(tmp_dir)["nsec3"]
    ids = targets(cfg)
    signer = Signer(cfg)
    signer.update(dict.fromkeys(ids, True), full=True)
    plain = cfg.zones[0].records["plain"].pool
    assert plain is not None and plain.groups[0].check is not None
    down = {plain.groups[0].check.target(a) for a in V4[4:5]}  # only "plain" serves .5
    published = signer.update({t: t not in down for t in ids}, full=True)
    assert published is not None
    delta = decode(published.records_delta, RecordsDelta)
    for zone in delta.zones:
        owners = {dns.name.from_wire(o, 0)[0].relativize(dns.name.from_wire(zone.origin, 0)[0])
                  .to_text() for o in zone.owners}
        assert owners == {"plain", "@"}, "the pool's name, and the apex (its SOA's RRSIG)"
        assert zone.removed == []


def test_transfers_off_cost_nothing() -> None:
    document = {"zones": [{"origin": "example.test", "nameservers": ["ns1.example.net"],
                           "records": {"www": {"a": ["192.0.2.1"]}}}]}
    signer = Signer(config.from_mapping(document))
    published = signer.update({}, full=True)
    assert published is not None and signer.transfer_records is None
    assert (published.records, published.records_delta) == (b"", b"")


def test_the_signer_view_says_only_where_transfers_are_served() -> None:
    document = {"transfer": {"listen": LISTEN, "secondaries": [
        {"address": "127.0.0.2", "key": "xfr"}]},
        "tsig": [{"name": "xfr", "secret": base64.b64encode(b"k" * 32).decode()}],
        "zones": [{"origin": "example.test", "nameservers": ["ns1.example.net"]}]}
    signer = config.decode(views.split(config.from_mapping(document)).signer)
    assert signer.transfer == config.TransferSpec(listen=tuple(LISTEN))
    assert signer.tsig == ()


POOL = {"pool": {"addresses": ["127.0.1.1"], "check": {"port": 80}, "policy": "empty"}}


def two_zones(extra: dict[str, Any] | None = None, transfer: bool = True,
              zones: int = 2) -> config.Config:
    second = {"www": {"a": ["192.0.2.2"]}, "pool": POOL, **(extra or {})}
    return config.from_mapping({
        **({"transfer": {"listen": LISTEN}} if transfer else {}),
        "zones": [{"origin": "one.test", "nameservers": ["ns1.example.net"],
                   "records": {"www": {"a": ["192.0.2.1"]}}},
                  {"origin": "two.test", "nameservers": ["ns1.example.net"],
                   "records": second}][:zones]})


def test_a_reload_gives_a_changed_zone_a_greater_serial_and_keeps_the_other() -> None:
    clock = Clock()
    signer = Signer(two_zones(), now=clock)
    before = signer.update({}, full=True)
    assert before is not None
    clock.now -= 3600  # the clock stepped back: serials must not
    signer.reconfigure(two_zones({"new": {"txt": ['"added"']}}))
    after = signer.update({}, full=True)
    assert after is not None
    assert after.serials[0] == before.serials[0]
    assert serial_gt(after.serials[1], before.serials[1])
    delta = decode(after.records_delta, RecordsDelta)
    assert [z.serial for z in delta.zones] == after.serials
    assert delta.zones[0].owners == {} and delta.zones[0].removed == []
    assert list(delta.zones[1].owners) == [b"\x03new\x03two\x04test\x00"]


def test_a_reload_that_drops_a_zone_sends_the_records_whole() -> None:
    signer = Signer(two_zones())
    assert signer.update({}, full=True) is not None
    signer.reconfigure(two_zones(zones=1))
    published = signer.update({}, full=True)
    assert published is not None and published.records_delta == b""
    assert [z.origin for z in decode(published.records, Records).zones] \
        == [b"\x03one\x04test\x00"]


def test_transfers_turned_on_by_a_reload() -> None:
    signer = Signer(two_zones(transfer=False))
    assert signer.update({}, full=True) is not None
    signer.reconfigure(two_zones({"new": {"txt": ['"added"']}}))
    published = signer.update({}, full=True)
    assert published is not None and published.records and not published.records_delta


def test_a_respawned_signer_sends_whole_records_and_keeps_its_serials() -> None:
    clock = Clock()
    cfg = two_zones()
    last = Signer(cfg, now=clock).update({}, full=True)
    assert last is not None
    clock.now -= 3600  # the clock stepped back: serials must not
    signer = Signer(cfg, now=clock)
    signer.resume(messages.Resume(last.generation, last.serials, last.prints, last.snapshot,
                                  last.renewal))
    published = signer.update(dict.fromkeys(targets_of(cfg), True), full=True)
    assert published is not None and published.records_delta == b""
    listed = decode(published.records, Records)
    assert [z.serial for z in listed.zones] == published.serials
    assert published.serials[0] == last.serials[0]
    assert serial_gt(published.serials[1], last.serials[1])


def targets_of(cfg: config.Config) -> list[str]:
    return [t for spec in cfg.zones for r in spec.records.values() if r.pool is not None
            for g in r.pool.groups if g.check is not None for t in map(g.check.target,
                                                                         g.addresses)]


def test_renewed_signatures_are_in_the_records(tmp_dir: str) -> None:
    """When signatures fall due, every name is listed anew with the responders' new RRSIGs."""
    cfg = configs(tmp_dir)["nsec"]
    clock = Clock()
    signer = Signer(cfg, now=clock)
    first = signer.update(dict.fromkeys(targets(cfg), True), full=True)
    assert first is not None
    renewal = signer.next_renewal()
    assert renewal is not None
    clock.now = renewal
    renewed = signer.publish()
    assert renewed is not None
    check_served(renewed, signed=True)
    delta = decode(renewed.records_delta, RecordsDelta)
    assert all(len(z.owners) == len(decode(renewed.records, Records).zones[0].owners)
               for z in delta.zones), "every owner has new signatures"


def test_a_signer_process_given_its_view_publishes_records() -> None:
    """As the supervisor runs it: the signer's view of a config with `[transfer]` (secondaries
    and keys left out) is enough for the process to publish the records, and the decoding
    supervisor gets them in `Published`."""
    cfg = config.from_mapping({
        "transfer": {"listen": LISTEN, "secondaries": [{"address": "127.0.0.2", "key": "k"}]},
        "tsig": [{"name": "k", "secret": base64.b64encode(b"s" * 32).decode()}],
        "zones": [{"origin": "example.test", "nameservers": ["ns1.example.net"],
                   "records": {"www": {"a": ["192.0.2.1"]}}}]})
    ctx = multiprocessing.get_context("spawn")
    parent, child_end = ctx.Pipe()
    messages.send(parent, messages.Start(0, views.split(cfg).signer))
    messages.send(parent, messages.Health({}, full=True))
    process = ctx.Process(target=child.enter, args=("signer", child_end))
    process.start()
    child_end.close()
    try:
        assert parent.poll(20)
        published = messages.decode_from("signer", parent.recv_bytes())
        assert isinstance(published, messages.Published)
        listed = decode(published.records, Records)
        www = b"\x03www\x07example\x04test\x00"
        assert [parse(r)[3].to_text() for r in listed.zones[0].owners[www]] == ["192.0.2.1"]
    finally:
        messages.send(parent, messages.Bye())
        process.join(5)
        if process.exitcode is None:
            process.kill()
    assert process.exitcode == 0


@pytest.mark.parametrize("transferred", ["max", "min"])
def test_a_ttl_that_follows_health_is_transferred_at_max_or_min(tmp_dir: str,
                                                                transferred: str) -> None:
    """A secondary cannot follow health between transfers: a pool whose TTL does goes at the
    TTL it is signed with (max) or, configured so, its min; its signature validates either
    way, and the responders serve the rung meanwhile."""
    doc = document("nsec", str(Path(tmp_dir) / "csk.pem"))
    configs(tmp_dir)  # makes the key
    doc["zones"][0]["records"]["plain"]["pool"]["ttl"] = "600/20"
    doc["transfer"]["ttl"] = transferred
    cfg = config.from_mapping(doc)
    published = Signer(cfg).update(dict.fromkeys(targets(cfg), True), full=True)
    assert published is not None
    (zone,) = [z for z in decode(published.records, Records).zones
               if z.origin == dns.name.from_text("example.test").to_wire()]
    check_signed(zone, False, list(cfg.zones[0].records))
    sets = rrsets(zone)
    plain = dns.name.from_text("plain.example.test")
    expected = 600 if transferred == "max" else 20
    assert sets[(plain, dns.rdatatype.A, 0)].ttl == expected
    sig = sets[(plain, RRSIG, dns.rdatatype.A)]
    assert sig.ttl == expected and {s.original_ttl for s in sig} == {600}  # type: ignore[attr-defined]
    mail = dns.name.from_text("mail.example.test")
    assert sets[(mail, dns.rdatatype.A, 0)].ttl == 300  # a fixed TTL is what it is
    # The responders serve the rung: 2 failed checks from down, every 5 s: 5 s, min 20.
    answerer = Answerer(4096)
    answerer.table = Table(decode(published.snapshot, Snapshot))
    served = ask(answerer, plain, dns.rdatatype.A, True)
    assert {r.ttl for r in served.answer} == {20}


def test_transfer_ttl_is_max_or_min() -> None:
    doc = document(None)
    doc["transfer"]["ttl"] = "average"
    with pytest.raises(config.ConfigError, match=r"transfer.ttl: 'average' is not one of"):
        config.from_mapping(doc)
