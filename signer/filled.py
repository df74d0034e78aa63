"""A zone filled for a health state: every name with the RRsets it serves, and its NSEC (NSEC3)
chain, from which `signer.render` pre-renders the answers and `signer.transferred` lists the
records for transfers.

In a signed zone each RRset carries its RRSIG records, and the chain proves what does not exist
(RFC 4035 3.1, RFC 5155 7.1).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from healthdns.shared import canonical, compression, nsec3
from healthdns.shared.compression import Writer
from healthdns.shared.nsec3 import NSEC3, NSEC3PARAM
from healthdns.signer import geo
from healthdns.signer.dnssec import DNSKEY, NSEC, RRSIG, ZoneSigner
from healthdns.signer.pool import Variants
from healthdns.signer.rendercache import RenderCache
from healthdns.signer.zone import (
    AAAA,
    NS,
    SOA,
    A,
    RRsets,
    Zone,
    fill,
    owner_health,
    served_ttl,
)

IN = 1


@dataclass(frozen=True)
class RRs:
    """One RRset to write: its owner (lower-case wire), type, the TTL it is served with, its
    rdata, and its RRSIG rdata (none when unsigned)."""

    owner: bytes
    rdtype: int
    ttl: int
    rdatas: tuple[bytes, ...]
    sigs: tuple[bytes, ...] = ()

    def write(self, writer: Writer, signed: bool) -> None:
        """Its records, then with `signed` its RRSIGs."""
        for rdata in self.rdatas:
            writer.rr(self.owner, self.rdtype, self.ttl, rdata)
        if signed:
            for sig in self.sigs:
                writer.rr(self.owner, RRSIG, self.ttl, sig)


class SoaTemplate(NamedTuple):
    """A zone's SOA record as negative answers carry it, written for the apex as the question
    (`shared.compression`: the responder moves it to each question's apex)."""

    plain: bytes
    signed: bytes  # the same, then its RRSIGs
    names: dict[bytes, int]  # the names it writes, by their offset from its start


class GeoFilled(NamedTuple):
    """A geo name's outcomes in one family: the map, each outcome's site and rotation (none:
    NODATA), and which outcome each order id of the map gets."""

    map: str
    sites: list[str]
    variants: list[Variants]
    by_order: list[int]


Orders = Mapping[str, tuple[tuple[str, ...], ...]]  # map name -> its compiled site orders


@dataclass
class FilledZone:
    """One zone filled for a health state: what every name serves."""

    zone: Zone
    serial: int
    names: dict[bytes, RRsets]  # every existing name, empty non-terminals with {}
    signer: ZoneSigner | None
    cache: RenderCache = field(default_factory=RenderCache)
    # NSEC: the owners in canonical order. NSEC3: every name, in the order of their hashes.
    chain: list[bytes] = field(default_factory=list)
    keys: list[Any] = field(default_factory=list)  # NSEC: canonical sort keys; NSEC3: hashes
    hashed: dict[bytes, bytes] = field(default_factory=dict)  # NSEC3: name -> hashed owner
    nsecs: dict[bytes, bytes] = field(default_factory=dict)  # name -> NSEC or NSEC3 rdata
    # name -> type -> the rdata sets of a pool's rotating answers (variant 0 is in `names`)
    rotating: dict[bytes, dict[int, Variants]] = field(default_factory=dict)
    # Bodies rendered in this generation, each once: a NODATA answer proves with the very
    # NSEC records a NSEC query is answered with, names of one address answer alike.
    bodies: dict[bytes, bytes] = field(default_factory=dict)
    # name -> the TTL its pool's addresses are served with, where it follows health: below
    # the TTL they are signed with, which validates (RFC 4035 5.3.3)
    served: dict[bytes, int] = field(default_factory=dict)
    # name -> type -> a geo pool's outcomes per order id of its map (`signer.geo`)
    geo: dict[bytes, dict[int, GeoFilled]] = field(default_factory=dict)

    def body(self, body: bytes) -> bytes:
        """The one object of this generation equal to `body`."""
        return self.bodies.setdefault(body, body)

    @property
    def apex(self) -> bytes:
        return self.zone.key

    @property
    def negative_ttl(self) -> int:
        # RFC 2308 section 3 and RFC 9077: the lesser of the SOA TTL and MINIMUM.
        soa = self.zone.spec.soa
        return min(soa.ttl, soa.minimum)

    def soa_rdata(self) -> bytes:
        spec = self.zone.spec.soa
        return self.zone.mname + self.zone.rname + struct.pack(
            ">IIIII", self.serial, spec.refresh, spec.retry, spec.expire, spec.minimum)

    def rrs(self, owner: bytes, rdtype: int, ttl: int, rdatas: tuple[bytes, ...],
            served_ttl: int | None = None) -> RRs:
        """An RRset signed at `ttl`, served at `served_ttl` (a pool's addresses: at the TTL
        that follows health, when theirs does)."""
        if served_ttl is None and rdtype in (A, AAAA):
            served_ttl = self.served.get(owner)
        shown = ttl if served_ttl is None else served_ttl
        if self.signer is None:
            return RRs(owner, rdtype, shown, rdatas)
        return RRs(owner, rdtype, shown, rdatas,
                   tuple(self.signer.rrsigs(owner, rdtype, ttl, rdatas)))

    def soa(self) -> RRs:
        """The SOA for the authority section of a negative answer."""
        return self.rrs(self.apex, SOA, self.zone.spec.soa.ttl, (self.soa_rdata(),),
                        self.negative_ttl)

    @functools.cached_property
    def soa_template(self) -> SoaTemplate:
        """The SOA records the responder puts first in negative answers, as a template."""
        soa, start = self.soa(), compression.after_question(self.apex)
        writer = Writer(self.apex, start)
        soa.write(writer, False)
        plain = writer.written()
        names = {n: at - start for n, at in writer.names.items() if at >= start}
        for sig in soa.sigs:
            writer.rr(self.apex, RRSIG, soa.ttl, sig)
        return SoaTemplate(plain, writer.written(), names)

    def template(self, rrs: RRs) -> bytes:
        """An RRset and its RRSIGs written for the apex as the question, right after it."""
        writer = Writer(self.apex, compression.after_question(self.apex))
        rrs.write(writer, True)
        return writer.written()

    @property
    def nsec3(self) -> bool:
        return self.zone.spec.dnssec is not None and self.zone.spec.dnssec.denial == "nsec3"

    def nsec(self, name: bytes) -> RRs:
        """The NSEC record of `name`, or the NSEC3 record of its hash."""
        if self.nsec3:
            return self.rrs(self.hashed[name], NSEC3, self.negative_ttl, (self.nsecs[name],))
        return self.rrs(name, NSEC, self.negative_ttl, (self.nsecs[name],))

    def nsec_lacking(self, name: bytes, rdtype: int) -> RRs:
        """The NSEC (NSEC3) record of `name` with `rdtype` left out of its type bitmap: what
        proves a NODATA of `rdtype` to a client whose outcome serves none while the zone's
        record (the default outcome's) lists it. Same owner and next name, so the chain stays
        one chain; its signature is cached as any RRset's, made once per distinct bitmap."""
        rdata = self.nsecs[name]
        types = chain_types(self, name)
        if rdtype not in types:
            return self.nsec(name)
        kept = [t for t in types if t != rdtype]
        if self.nsec3 and kept == [RRSIG]:  # no type left: an empty bitmap, as a name's
            kept = []
        prefix = rdata[:len(rdata) - len(nsec3.type_bitmaps(list(types)))]
        owner, rrtype = (self.hashed[name], NSEC3) if self.nsec3 else (name, NSEC)
        return self.rrs(owner, rrtype, self.negative_ttl,
                        (prefix + nsec3.type_bitmaps(kept),))

    def denial(self, name: bytes) -> list[RRs]:
        """NSEC records proving `name` does not exist: the one covering it, and the one
        covering the wildcard at its closest encloser (RFC 4035 3.1.3.2); with NSEC3 the
        closest encloser proof and the wildcard's (RFC 5155 7.2.2)."""
        if self.signer is None:
            return []
        if self.nsec3:
            positions = nsec3.nxdomain_positions(self.keys, self.names, name)
            return [self.nsec(self.chain[p]) for p in positions]
        first = self.chain[canonical.covering(self.keys, name)]
        encloser = canonical.closest_encloser(self.names, name)
        second = self.chain[canonical.covering(self.keys, canonical.wildcard(encloser))]
        owners = [first] if first == second else [first, second]
        return [self.nsec(owner) for owner in owners]



def fill_zones(zones: list[Zone], health: Mapping[str, bool], serials: list[int],
               signers: list[ZoneSigner | None] | None = None,
               caches: list[RenderCache] | None = None,
               orders: Orders | None = None) -> list[FilledZone]:
    """Every zone filled for a health state: what `render.tables_of` renders (and
    `signer.transferred` lists for transfers); `orders`: each map's compiled site orders
    (a geo name without its map's answers only its default)."""
    signers = signers or [None] * len(zones)
    caches = caches or [RenderCache() for _ in zones]
    return [_fill(z, health, s, g, c, orders or {})
            for z, s, g, c in zip(zones, serials, signers, caches, strict=True)]


def _geo(zone: Zone, health: Mapping[str, bool], orders: Orders
         ) -> dict[bytes, dict[int, GeoFilled]]:
    """Each geo name's outcomes per family (see `signer.geo`)."""
    out: dict[bytes, dict[int, GeoFilled]] = {}
    for key, owner in zone.owners.items():
        plan = owner.geo
        if plan is None or plan.map not in orders:
            continue
        judged = owner_health(owner, health)
        out[key] = {}
        for rdtype in plan.families():
            found = geo.outcomes(plan, orders[plan.map], rdtype, judged)
            out[key][rdtype] = GeoFilled(plan.map, [o.site for o in found.outcomes],
                                         [geo.rotations(plan, o) for o in found.outcomes],
                                         found.by_order)
    return out


def _fill(zone: Zone, health: Mapping[str, bool], serial: int,
          signer: ZoneSigner | None, cache: RenderCache, orders: Orders) -> FilledZone:
    names: dict[bytes, RRsets] = {}
    rotating: dict[bytes, dict[int, Variants]] = {}
    served: dict[bytes, int] = {}
    for key, owner in zone.owners.items():
        names[key], variants = fill(owner, health)
        if variants:
            rotating[key] = variants
        ttl = served_ttl(owner, health)
        if ttl is not None:
            served[key] = ttl[0]
        # Every ancestor up to the apex exists too (RFC 8020 empty non-terminals).
        for i in label_offsets(key)[1:]:
            if len(key) - i <= len(zone.key):
                break
            names.setdefault(key[i:], {})
    spec = zone.spec
    apex = {**names[zone.key], NS: (spec.ns_ttl, zone.ns)}
    if signer is not None:
        assert spec.dnssec is not None
        apex[DNSKEY] = (spec.dnssec.dnskey_ttl, signer.dnskeys())
        apex.update(signer.cds_records())
        if spec.dnssec.denial == "nsec3":
            soa = spec.soa
            apex[NSEC3PARAM] = (min(soa.ttl, soa.minimum), (nsec3.PARAM,))
    names[zone.key] = apex
    filled = FilledZone(zone, serial, names, signer, cache, rotating=rotating, served=served,
                        geo=_geo(zone, health, orders))
    if signer is not None:
        _chain(filled)
    return filled


def _chain(filled: FilledZone) -> None:
    """The NSEC chain: every owner (not the empty non-terminals), whatever its health."""
    if filled.nsec3:
        _chain3(filled)
        return
    cache = filled.cache
    if not cache.order:
        cache.order = sorted(filled.zone.owners, key=canonical.key)
        labels: dict[bytes, bytes] = {}  # the zone's own labels: one object for all keys
        cache.keys = [tuple([labels.setdefault(label, label) for label in canonical.key(o)])
                      for o in cache.order]
    owners = filled.chain = cache.order
    filled.keys = cache.keys
    bitmaps: dict[tuple[int, ...], bytes] = {}  # a few distinct type sets, as wire bitmaps
    for i, owner in enumerate(owners):
        following = owners[(i + 1) % len(owners)]
        ordered = chain_types(filled, owner)
        bitmap = bitmaps.get(ordered)
        if bitmap is None:
            bitmap = bitmaps[ordered] = nsec3.type_bitmaps(list(ordered))
        filled.nsecs[owner] = kept_rdata(cache.nsecs, owner, b"", following, bitmap)


def _chain3(filled: FilledZone) -> None:
    """The NSEC3 chain (RFC 5155 7.1): every name, empty non-terminals included, by hash."""
    cache = filled.cache
    if not cache.order:
        cache.order = sorted(filled.names, key=nsec3.digest)
        cache.keys = [nsec3.digest(n) for n in cache.order]
    filled.chain, filled.keys = cache.order, cache.keys
    bitmaps: dict[tuple[int, ...], bytes] = {}  # as in `_chain`
    # Hash algorithm, flags, iterations, salt (none), then the hash's length: the same for all.
    head = nsec3.rdata(filled.keys[0], [])[:6]
    for i, name in enumerate(filled.chain):
        filled.hashed[name] = nsec3.owner(filled.keys[i], filled.apex)
        following = filled.keys[(i + 1) % len(filled.keys)]
        ordered = chain_types(filled, name)
        bitmap = bitmaps.get(ordered)
        if bitmap is None:
            bitmap = bitmaps[ordered] = nsec3.type_bitmaps(list(ordered))
        filled.nsecs[name] = kept_rdata(cache.nsecs, name, head, following, bitmap)


def chain_types(filled: FilledZone, name: bytes) -> tuple[int, ...]:
    """The types in `name`'s NSEC (NSEC3) bitmap, sorted: what it serves, then NSEC and
    RRSIG (NSEC3: RRSIG when it serves something), and SOA at the apex."""
    types = set(filled.names[name])
    if not filled.nsec3:
        types |= {NSEC, RRSIG}
    elif types:
        types.add(RRSIG)
    if name == filled.apex:
        types.add(SOA)
    return tuple(sorted(types))


def kept_rdata(nsecs: dict[bytes, bytes], owner: bytes, head: bytes, following: bytes,
               bitmap: bytes) -> bytes:
    """`owner`'s NSEC (NSEC3) rdata, `head + following + bitmap`: the cached object when it
    is that, compared in place. Cached by owner, not by (next name, types): no key tuple per
    name (10,000 names: 0.7 MiB), and an owner's rdata stays one object across generations
    (signature cache keys and render cache entries hold it)."""
    rdata = nsecs.get(owner)
    if rdata is None or len(rdata) != len(head) + len(following) + len(bitmap) \
            or not (rdata.startswith(head) and rdata.startswith(following, len(head))
                    and rdata.endswith(bitmap)):
        rdata = nsecs[owner] = head + following + bitmap
    return rdata


def label_offsets(name: bytes) -> list[int]:
    offsets = []
    i = 0
    while name[i] != 0:
        offsets.append(i)
        i += name[i] + 1
    offsets.append(i)
    return offsets


def rr(owner: bytes, rdtype: int, ttl: int, rdata: bytes) -> bytes:
    return owner + struct.pack(">HHIH", rdtype, IN, ttl, len(rdata)) + rdata
