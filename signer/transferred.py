"""Each zone's records as a secondary transfers them (AXFR, IXFR), per generation.

Built from the zones `signer.filled` filled for the generation, so that a secondary serves what
the responders serve for that serial: the same RRsets at the same TTLs (the SOA, NSEC and NSEC3
at the TTL they are signed with), and the very RRSIGs the responders hold (the signer's
signature cache hands them back). Two exceptions: a rotating pool is one RRset holding every
address its variants serve, signed as one RRset, since a secondary holds one answer per name and
type; and a pool whose TTL follows health is transferred at its max (the TTL it is signed with)
or, with `transfer.ttl = "min"`, its min, since a secondary cannot follow health between
transfers.

Built only when transfers are configured, and incrementally: a name whose content is what it
was last generation keeps its records (the same list objects), so a health flip costs what it
changes, and the delta from the previous generation is found by an identity test first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from healthdns.shared import messages
from healthdns.shared.messages import Records, RecordsDelta
from healthdns.shared.nsec3 import NSEC3
from healthdns.shared.tables import ZoneRecords, ZoneRecordsDelta
from healthdns.signer.dnssec import NSEC, RRSIG
from healthdns.signer.filled import FilledZone, rr
from healthdns.signer.rendercache import RenderCache
from healthdns.signer.zone import AAAA, SOA, A, RRsets

Built = dict[bytes, list[bytes]]  # owner (lower-case wire) -> its RRs, RRSIGs included


@dataclass
class _ZoneCache:
    """What one zone's names were built into last generation, and from what content."""

    # The zone's render cache: a reload keeps it (the same object) only for a zone whose spec
    # and keys are unchanged, so it tells whether these records may be reused.
    render: RenderCache
    names: dict[bytes, tuple[object, Built]] = field(default_factory=dict)


class Builder:
    """Every zone's records per generation, and the delta from the generation before."""

    def __init__(self, lowest: bool = False) -> None:
        self.lowest = lowest  # pools whose TTL follows health go at their min, not max
        self.zones: dict[bytes, _ZoneCache] = {}
        self.previous: Records | None = None

    def clear(self) -> None:
        """Signatures are renewed this generation: every name is built anew."""
        for cache in self.zones.values():
            cache.names.clear()

    def publish(self, generation: int, filled_zones: list[FilledZone]) -> tuple[bytes, bytes]:
        """The encoded `Records` of `generation`, and the encoded `RecordsDelta` from the
        previous one (b"" for the first, or when the zones are not the same as its zones).

        Call it after rendering and before `ZoneSigner.prune`: the signatures the responders
        were just given are then still in the signature cache.
        """
        records = Records(generation, self.build(filled_zones))
        delta = b""
        old = self.previous
        if old is not None and [z.origin for z in old.zones] == [z.origin for z in records.zones]:
            zones = [_zone_delta(o, n) for o, n in zip(old.zones, records.zones, strict=True)]
            delta = messages.encode(RecordsDelta(generation, old.generation, zones))
        self.previous = records
        return messages.encode(records), delta

    def build(self, filled_zones: list[FilledZone]) -> list[ZoneRecords]:
        caches: dict[bytes, _ZoneCache] = {}
        out = []
        for filled in filled_zones:
            cache = self.zones.get(filled.apex)
            if cache is None or cache.render is not filled.cache:
                cache = _ZoneCache(filled.cache)  # a new or changed zone: nothing to reuse
            caches[filled.apex] = cache
            out.append(_zone(filled, cache, self.lowest))
        self.zones = caches  # a zone gone from the configuration is forgotten
        return out


def _zone(filled: FilledZone, cache: _ZoneCache, lowest: bool) -> ZoneRecords:
    owners: Built = {}
    names: dict[bytes, tuple[object, Built]] = {}
    rendered = filled.cache.names
    for name, rrsets in filled.names.items():
        hit = cache.names.get(name)
        # The render cache's entry for a name is a new object exactly when the name was
        # rendered (and signed) anew: then its records are built anew too, with the very
        # signatures the responders were just given. An identity test, nothing compared.
        token: object = rendered.get(name)
        if token is None:  # the apex and CNAME owners are rendered every time
            token = _content(filled, name, rrsets)
            stale = hit is None or hit[0] != token or name == filled.apex  # the SOA's RRSIG
        else:
            stale = hit is None or hit[0] is not token
        if hit is None or stale:
            hit = (token, _name(filled, name, rrsets, lowest))
        names[name] = hit
        owners.update(hit[1])
    cache.names = names
    soa = filled.zone.spec.soa
    return ZoneRecords(origin=filled.apex, serial=filled.serial,
                       soa=rr(filled.apex, SOA, soa.ttl, filled.soa_rdata()), owners=owners)


def _content(filled: FilledZone, name: bytes, rrsets: RRsets) -> object:
    """What a name's records are made of, for the names the render cache does not hold: the
    same as the render compares (`render._content`), so they are built anew in the same
    generations as they are rendered anew."""
    rotating = filled.rotating.get(name)
    return (tuple(rrsets.items()), tuple(rotating.items()) if rotating else None,
            filled.nsecs.get(name))


def _name(filled: FilledZone, name: bytes, rrsets: RRsets, lowest: bool) -> Built:
    """The records of a name: its RRsets under it; its NSEC too, or its NSEC3 under the
    hashed owner (an empty non-terminal has only that)."""
    own: list[bytes] = []
    rotating = filled.rotating.get(name, {})
    owner = filled.zone.owners.get(name)
    ranged = owner.health_ttl if owner is not None else None
    for rdtype in sorted(rrsets):
        ttl, rdatas = rrsets[rdtype]
        if rdtype in rotating:  # every address the rotation serves, as one RRset
            rdatas = tuple(sorted({r for variant in rotating[rdtype] for r in variant}))
        shown = ranged.min if lowest and ranged is not None and rdtype in (A, AAAA) else ttl
        own += _rrset(filled, name, rdtype, ttl, rdatas, shown)
    if name == filled.apex:  # the SOA itself is `ZoneRecords.soa`, its RRSIG is here
        own += _rrset(filled, name, SOA, filled.zone.spec.soa.ttl, (filled.soa_rdata(),))[1:]
    built: Built = {}
    proof = filled.nsecs.get(name)
    if proof is not None and filled.nsec3:
        hashed = filled.hashed[name]
        built[hashed] = _rrset(filled, hashed, NSEC3, filled.negative_ttl, (proof,))
    elif proof is not None:
        own += _rrset(filled, name, NSEC, filled.negative_ttl, (proof,))
    return {name: own, **built} if own else built


def _rrset(filled: FilledZone, owner: bytes, rdtype: int, ttl: int,
           rdatas: tuple[bytes, ...], shown: int | None = None) -> list[bytes]:
    """An RRset's records, then its RRSIGs (none in an unsigned zone): signed at `ttl`,
    written with `shown` (`ttl` when not given)."""
    written = ttl if shown is None else shown
    records = [rr(owner, rdtype, written, r) for r in rdatas]
    if filled.signer is not None:
        records += [rr(owner, RRSIG, written, s)
                    for s in filled.signer.rrsigs(owner, rdtype, ttl, rdatas)]
    return records


def _zone_delta(old: ZoneRecords, new: ZoneRecords) -> ZoneRecordsDelta:
    """Owners added or changed (with all their records) and owners gone. A name not built
    anew holds the same list object as before: an identity test, then `==` for the rest."""
    changed = {owner: rrs for owner, rrs in new.owners.items()
               if (before := old.owners.get(owner)) is not rrs and before != rrs}
    removed = [owner for owner in old.owners if owner not in new.owners]
    return ZoneRecordsDelta(origin=new.origin, serial=new.serial, soa=new.soa,
                            owners=changed, removed=removed)


def apply(records: ZoneRecords, delta: ZoneRecordsDelta) -> ZoneRecords:
    """The records `delta` leads to from `records` (what a transfer process holds next)."""
    removed = set(delta.removed)
    owners = {o: rrs for o, rrs in records.owners.items() if o not in removed}
    owners.update(delta.owners)
    return ZoneRecords(origin=delta.origin, serial=delta.serial, soa=delta.soa, owners=owners)
