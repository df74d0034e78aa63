"""Memory (issue #12): the signer keeps one copy of what does not change between generations.

What a name without a pool serves is compared, generation after generation, as the zone's own
object (never a copy per name and generation); the sort keys of the NSEC chain share the
zone's labels; a one-record RRset's signature is cached under the zone's own record tuple.
Owners with equal RRsets share them, the config's record text is not kept, a render cache
entry is one tuple, equal bodies of a generation are one object, and a signature cache entry
is one bytes object.
"""

from __future__ import annotations

from typing import Any

import dns.name
import dns.rdtypes.ANY.NSEC
import dns.rdtypes.util
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_deltas import configs, targets

from healthdns.shared import compression, config, nsec3
from healthdns.signer import dnssec, filled, render, zone
from healthdns.signer.main import Signer

STATIC = b"\x06static\x07example\x04test\x00"  # the record without a pool in test_deltas


@pytest.fixture(scope="module")
def tmp_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("keys"))


def published(signer: Signer, ids: list[str], up: bool) -> None:
    assert signer.update(dict.fromkeys(ids, up), full=True) is not None


@pytest.mark.parametrize("kind", ["unsigned", "signed"])
def test_a_static_name_is_kept_as_the_zone_s_own_data(tmp_dir: str, kind: str) -> None:
    cfg = configs(tmp_dir)[kind]
    ids = targets(cfg)
    signer = Signer(cfg)
    owner = signer.zones[0].owners[STATIC]
    for up in (True, False, True):  # generations where pools change and this name does not
        published(signer, ids, up)
        entry = signer.caches[0].names[STATIC]
        assert entry.items is owner.static
        # What it was made from is fields of the entry: no tuple of its own per name.
        assert [id(x) for x in entry if isinstance(x, tuple) and x is not entry.answers] \
            == [id(owner.static)]


def test_chain_keys_share_labels_and_signatures_share_records(tmp_dir: str) -> None:
    cfg = configs(tmp_dir)["signed"]
    signer = Signer(cfg)
    published(signer, targets(cfg), True)
    keys = signer.caches[0].keys
    assert len(keys) > 2
    assert len({id(key[0]) for key in keys}) == 1  # b"test", one object for every owner
    zone_signer = signer.signers[0]
    assert zone_signer is not None
    owner = signer.zones[0].owners[STATIC]
    for rdtype, (ttl, rdatas) in owner.static:
        if len(rdatas) == 1:
            assert any(key[3] is rdatas for key in zone_signer.cache
                       if key[:3] == (STATIC, rdtype, ttl))


def with_denial(cfg: config.Config, denial: str) -> config.Config:
    spec = cfg.zones[0]
    assert spec.dnssec is not None
    return msgspec.structs.replace(cfg, zones=[msgspec.structs.replace(
        spec, dnssec=msgspec.structs.replace(spec.dnssec, denial=denial))])


def dnspython_nsec(following: bytes, types: list[int]) -> bytes:
    """An NSEC rdata as dnspython makes it: what the signer's own must equal."""
    windows = dns.rdtypes.util.Bitmap.from_rdtypes(types).windows  # type: ignore[arg-type]
    next_name = dns.name.from_wire(following, 0)[0]
    made = dns.rdtypes.ANY.NSEC.NSEC(1, 47, next_name, windows)  # type: ignore[no-untyped-call]
    return made.to_wire()  # type: ignore[no-any-return]


@pytest.mark.parametrize("denial", ["nsec", "nsec3"])
def test_nsec_rdata_is_cached_per_owner(tmp_dir: str, denial: str) -> None:
    """The NSEC (NSEC3) rdata is cached by owner, with no (next name, types) key tuple: the
    chain's every owner has one, equal to the record the next name and the owner's types make
    now, and the same object in every generation where those did not change."""
    cfg = with_denial(configs(tmp_dir)["signed"], denial)
    ids = targets(cfg)
    signer = Signer(cfg)
    before: dict[bytes, bytes] = {}
    for up in (True, False, True, False):
        published(signer, ids, up)
        serials = [s for s in signer.serials if s is not None]
        view = filled.fill_zones(signer.zones, signer.health, serials, signer.signers,
                                 signer.caches)[0]
        cached = signer.caches[0].nsecs
        assert set(cached) == set(view.chain)
        for i, owner in enumerate(view.chain):
            following = (view.keys if view.nsec3 else view.chain)[(i + 1) % len(view.chain)]
            types = set(view.names[owner])
            if types or not view.nsec3:
                types.add(dnssec.RRSIG)
            if not view.nsec3:
                types.add(dnssec.NSEC)
            if owner == view.apex:
                types.add(zone.SOA)
            expected = nsec3.rdata(following, sorted(types)) if view.nsec3 \
                else dnspython_nsec(following, sorted(types))
            assert cached[owner] == expected
            if before.get(owner) == expected:
                assert cached[owner] is before[owner]
        before = dict(cached)


ADDRESSES = ["192.0.2.1", "192.0.2.2", "2001:db8::1"]
records_of = st.dictionaries(
    st.from_regex(r"[a-z]{1,3}", fullmatch=True),
    st.tuples(st.lists(st.sampled_from(ADDRESSES), min_size=1, max_size=2, unique=True),
              st.sampled_from([None, 60])),
    min_size=1, max_size=12)


@settings(max_examples=30, deadline=None)
@given(records=records_of)
def test_equal_static_data_is_one_object(records: dict[str, tuple[list[str], int | None]]
                                         ) -> None:
    """Owners that serve the same RRsets (many names of one farm) share one object; an alias
    zone shares them too (its rdata here has no relative names)."""
    document: dict[str, Any] = {name: {"a": [a for a in addresses if ":" not in a],
                                       "aaaa": [a for a in addresses if ":" in a],
                                       **({"ttl": ttl} if ttl is not None else {})}
                                for name, (addresses, ttl) in records.items()}
    for record in document.values():
        for rtype in ("a", "aaaa"):
            if not record[rtype]:
                del record[rtype]
    cfg = config.from_mapping({"zones": [{"origin": "example.test", "aliases": ["example.org"],
                                          "nameservers": ["ns1.example.net"],
                                          "records": document}]})
    owners = [o for z in zone.build(cfg) for o in z.owners.values() if o.static]
    for a in owners:
        for b in owners:
            assert (a.static is b.static) == (a.static == b.static)
            for (_, rrset_a), (_, rrset_b) in zip(a.static, b.static, strict=False):
                assert (rrset_a is rrset_b) == (rrset_a == rrset_b)


def test_zones_keep_owner_names_as_wire_and_no_record_text(tmp_dir: str) -> None:
    """The config's records (text, per name) are not kept: the owners hold them in wire form,
    and a lower-case owner's name is the very key it is found by."""
    cfg = configs(tmp_dir)["signed"]
    signer = Signer(cfg)
    for z in signer.zones:
        assert z.spec.records == {} and len(z.records) == 32
        for key, owner in z.owners.items():
            assert owner.name is key



def test_a_reload_compares_the_records_digest(tmp_dir: str) -> None:
    """Zones keep a digest of their records, not the records: listed in another order they
    are the same records (as when the text itself was compared), one more name is not."""
    spec = configs(tmp_dir)["signed"].zones[0]
    reordered = msgspec.structs.replace(spec, records=dict(reversed(spec.records.items())))
    grown = msgspec.structs.replace(spec, records={**spec.records,
                                                   "new": spec.records["static"]})

    def digests(z: config.ZoneSpec) -> list[bytes]:
        return [built.records for built in zone.build(config.Config(zones=[z]))]

    assert digests(reordered) == digests(spec) != digests(grown)


@pytest.mark.parametrize("kind", ["unsigned", "signed"])
def test_the_render_cache_holds_no_dict_per_name(tmp_dir: str, kind: str) -> None:
    """A cached name is a tuple whose answers are one flat tuple; only a name that rotates has
    a dict, of its variants. Served from the cache, the answers are the very same objects."""
    cfg = configs(tmp_dir)[kind]
    ids = targets(cfg)
    signer = Signer(cfg)
    published(signer, ids, True)
    entries = dict(signer.caches[0].names)
    rotating = signer.caches[0].names[b"\x03rot\x07example\x04test\x00"]
    assert rotating.variants
    for entry in entries.values():
        assert isinstance(entry, tuple) and not any(isinstance(x, dict) for x in entry
                                                    if x is not entry.variants)
        assert entry.variants is None or entry.variants
    before = {name: list(entry.pairs()) for name, entry in entries.items()}
    # One target down: most names are served from the cache.
    assert signer.update({ids[0]: False}, full=False) is not None
    table = signer.previous
    assert table is not None
    kept = [name for name in before if signer.caches[0].names[name] is entries[name]]
    assert STATIC in kept
    for name in kept:
        assert all(table[0].answers[key] is answer for key, answer in before[name])


@settings(max_examples=20, deadline=None)
@given(sigs=st.lists(st.binary(max_size=600), max_size=4), renew=st.floats(0, 2**33))
def test_a_signature_cache_entry_is_one_bytes_object(sigs: list[bytes], renew: float) -> None:
    """When to renew, then the RRSIG rdata of each signing key, packed in one bytes object
    that gives back exactly what was packed."""
    packed = dnssec._pack(renew, tuple(sigs))
    assert isinstance(packed, bytes)
    assert dnssec._renewal(packed) == renew and dnssec._unpack(packed) == tuple(sigs)


def test_the_next_renewal_is_the_earliest_in_the_cache(tmp_dir: str) -> None:
    cfg = configs(tmp_dir)["signed"]
    ids = targets(cfg)
    signer = Signer(cfg)
    zone_signer = signer.signers[0]
    assert zone_signer is not None and zone_signer.next_renewal() is None
    for up in (True, False, True):
        published(signer, ids, up)
        assert zone_signer.cache
        assert all(isinstance(v, bytes) for v in zone_signer.cache.values())
        assert zone_signer.next_renewal() == min(dnssec._renewal(v)
                                                 for v in zone_signer.cache.values())


def test_equal_bodies_are_one_object(tmp_dir: str) -> None:
    """A NODATA answer proves with the very NSEC records a NSEC query is answered with: one
    body; answers of one address in a zone and its alias are one body too."""
    cfg = configs(tmp_dir)["signed"]
    signer = Signer(cfg)
    published(signer, targets(cfg), True)
    assert signer.previous is not None
    table = signer.previous[0]
    nsec = (47).to_bytes(2, "big")
    shared = 0
    for name, default in table.names.items():
        answer = table.answers.get(name + nsec)
        if answer is None or default.signed is None or name + b"\x00\x05" in table.answers:
            continue  # no NSEC record (an empty non-terminal), or a CNAME: its chain
        assert answer.signed is not None
        assert default.signed.body == answer.signed.body  # what makes sharing possible
        assert default.signed.body is answer.signed.body
        shared += 1
    assert shared > 3
    bodies: dict[bytes, bytes] = {}
    for answer in table.answers.values():
        assert bodies.setdefault(answer.body, answer.body) is answer.body


@pytest.mark.parametrize("kind", ["unsigned", "signed"])
def test_answers_share_their_flags(tmp_dir: str, kind: str) -> None:
    """Header flags above 256 are an int object of their own unless made once: one per rcode."""
    cfg = configs(tmp_dir)[kind]
    signer = Signer(cfg)
    published(signer, targets(cfg), True)
    assert signer.previous is not None
    answers = [a for table in signer.previous
               for a in (*table.answers.values(), *table.names.values(), table.nxdomain)]
    answers += [a.signed for a in answers if a.signed is not None]
    flags = {id(a.flags) for a in answers}
    assert len(flags) == len({a.flags for a in answers}) == 2  # NOERROR and NXDOMAIN


names_of = st.lists(st.binary(min_size=1, max_size=8), max_size=3).map(
    lambda labels: b"".join(bytes([len(label)]) + label for label in labels) + b"\x00")


@settings(max_examples=60, deadline=None)
@given(owner=names_of, ttl=st.integers(0, 2**31), old=st.binary(max_size=40),
       new=st.binary(max_size=40), sigs=st.binary(max_size=200), prefix=st.booleans())
def test_a_proof_is_checked_against_the_nsec_rdata_it_holds(
        owner: bytes, ttl: int, old: bytes, new: bytes, sigs: bytes, prefix: bool) -> None:
    """A cached proof holds for a name exactly when its record has the name's NSEC rdata,
    a bitmap that shrank to a prefix of the old one (a window fewer) included."""
    if prefix:
        new = old[:len(new) % (len(old) + 1)]
    proof = filled.rr(owner, dnssec.NSEC, ttl, old) + sigs
    assert render.proves(proof, len(owner), new) == (old == new)


@pytest.mark.parametrize("denial", ["nsec", "nsec3"])
def test_cached_proofs_are_one_bytes_object_and_follow_the_chain(tmp_dir: str,
                                                                 denial: str) -> None:
    """The render cache keeps each owner's NXDOMAIN proof as the very bytes the table serves,
    no (rdata, proof) tuple; as health changes the types of pooled names, their proofs hold
    the NSEC (NSEC3) records a signer rendering that health afresh would serve."""
    cfg = with_denial(configs(tmp_dir)["signed"], denial)
    ids = targets(cfg)
    signer = Signer(cfg)
    for up in (True, False, True, False):
        published(signer, ids, up)
        fresh = Signer(cfg)
        published(fresh, ids, up)
        assert signer.previous is not None and fresh.previous is not None
        table, expected = signer.previous[0], fresh.previous[0]
        cached = signer.caches[0].proofs
        assert all(type(p) is bytes for p in cached.values())
        assert {id(p) for p in table.proofs} == {id(p) for p in cached.values()}
        assert [records(p) for p in table.proofs] == [records(p) for p in expected.proofs]


def records(proof: bytes) -> bytes:
    """The NSEC (NSEC3) record at the start of a proof, without the signatures after it."""
    start = compression.name_end(proof, 0) + 10
    return proof[:start + render.RDLENGTH.unpack_from(proof, start - 2)[0]]
