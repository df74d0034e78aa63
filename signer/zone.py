"""Zones as the signer holds them: built once from the config, then filled per health state.

An alias zone is built from the same `ZoneSpec` under its own origin, as a zone file loaded
under another `$ORIGIN` would be: relative names (owners and rdata) follow the alias.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import msgspec

from healthdns.shared.config import Config, PoolSpec, TtlRange, ZoneSpec
from healthdns.signer import geo, healthttl
from healthdns.signer import pool as pools
from healthdns.signer.geo import GeoPlan

A, NS, CNAME, SOA, AAAA = 1, 2, 5, 6, 28

# rdtype -> (ttl, rdata in wire form, uncompressed)
RRsets = dict[int, tuple[int, tuple[bytes, ...]]]
# The same as (rdtype, (ttl, rdatas)) items: a third of a small dict's size, for data kept.
RRsetItems = tuple[tuple[int, tuple[int, tuple[bytes, ...]]], ...]


def wire(name: dns.name.Name) -> bytes:
    """The lower-case uncompressed wire form: the key responders look names up by."""
    return octets(name.canonicalize())


def octets(thing: dns.name.Name | dns.rdata.Rdata) -> bytes:
    """`thing.to_wire()`: dnspython annotates it optional, for the form that writes to a file;
    without one it returns the octets."""
    made = thing.to_wire()
    assert made is not None
    return made


@dataclass(frozen=True, slots=True)  # slots: no dict per owner (10,000 names, 10,000 owners)
class Owner:
    """One owner name of one zone, with the data that does not depend on health."""

    # The lower-case wire form (the config writes names in lower case): the very key the
    # zone holds the owner by. Bytes, not a dns.name.Name (a third of the size, and the
    # render path never needs a Name).
    name: bytes
    ttl: int
    # Kept as items, not a dict: `fill` makes the dict. The render cache keeps this very
    # object as what a name without a pool serves, so a name is compared by identity. Equal
    # data of several owners is one object (see `_Shared`).
    static: RRsetItems
    pool: PoolSpec | None
    cname: bytes | None  # lower-case wire of the CNAME target, for following chains
    plan: pools.Plan | None = None  # the pool, prepared for filling per health state
    health_ttl: TtlRange | None = None  # the range its pool's TTL follows health within
    # A geo pool: its sites as pools of their own (`plan` then holds every site's groups, so
    # that overrides, checks and the TTL that follows health cover them all).
    geo: GeoPlan | None = None


@dataclass(frozen=True)
class Zone:
    """One zone (an origin or an alias) ready to be rendered with a health state."""

    index: int  # which `Config.zones` entry it comes from
    origin: dns.name.Name
    # The zone's spec without its records (they live on in `owners`, in wire form): the
    # config's text of 10,000 names is not kept for the process's lifetime. `records` is
    # their digest, what tells a reload whether they changed.
    spec: ZoneSpec
    records: bytes
    owners: dict[bytes, Owner]  # by lower-case wire name, the apex included
    ns: tuple[bytes, ...]
    mname: bytes
    rname: bytes

    @functools.cached_property
    def key(self) -> bytes:
        """The origin's lower-case wire form (asked for per name while rendering)."""
        return wire(self.origin)


def build(config: Config) -> list[Zone]:
    """Every zone and alias zone of the configuration."""
    zones: list[Zone] = []
    shared = _Shared()
    for index, spec in enumerate(config.zones):
        # In name order: records listed in another order are the same zone.
        ordered = sorted(spec.records.items(), key=lambda item: item[0])
        digest = hashlib.sha256(msgspec.msgpack.encode(ordered)).digest()
        for origin_text in (spec.origin, *spec.aliases):
            zones.append(_zone(index, spec, dns.name.from_text(origin_text), digest, shared,
                               config))
    return zones


class _Shared:
    """One object for equal data: many owners serve the same addresses (a farm behind one
    balancer, the names of one host), and the signer keeps each owner's data for its life."""

    def __init__(self) -> None:
        self.rrsets: dict[tuple[int, tuple[bytes, ...]], tuple[int, tuple[bytes, ...]]] = {}
        self.items: dict[RRsetItems, RRsetItems] = {}

    def rrset(self, ttl: int, rdatas: tuple[bytes, ...]) -> tuple[int, tuple[bytes, ...]]:
        value = (ttl, rdatas)
        return self.rrsets.setdefault(value, value)

    def static(self, rrsets: RRsets) -> RRsetItems:
        items = tuple(rrsets.items())
        return self.items.setdefault(items, items)


def _zone(index: int, spec: ZoneSpec, origin: dns.name.Name, digest: bytes,
          shared: _Shared, config: Config) -> Zone:
    owners: dict[bytes, Owner] = {}
    for relative, record in spec.records.items():
        name = origin if relative == "@" else dns.name.from_text(relative, origin=origin)
        static: RRsets = {}
        cname: bytes | None = None
        ttl = record.max_ttl
        for type_text, texts in record.static().items():
            rdtype = dns.rdatatype.from_text(type_text)
            rdatas = [dns.rdata.from_text(dns.rdataclass.IN, rdtype, t, origin=origin,
                                          relativize=False)
                      for t in texts]
            # Canonical form (RFC 4034 6.2): what is signed is exactly what is served.
            static[rdtype] = shared.rrset(ttl, tuple(r.to_digestable() for r in rdatas))
            if rdtype == CNAME:
                cname = wire(rdatas[0].target)  # type: ignore[attr-defined]
        plan = pools.plan(record.pool) if record.pool is not None else None
        key = wire(name)
        geo_plan = geo.plan(record.pool, config) if record.pool is not None \
            and record.pool.map else None
        owners[key] = Owner(key, ttl, shared.static(static), record.pool, cname, plan,
                            record.health_ttl, geo_plan)
    apex = wire(origin)
    if apex not in owners:
        owners[apex] = Owner(apex, spec.ttl, (), None, None)
    return Zone(
        index=index,
        origin=origin,
        spec=msgspec.structs.replace(spec, records={}),
        records=digest,
        owners=owners,
        ns=tuple(wire(dns.name.from_text(n)) for n in spec.nameservers),
        mname=wire(dns.name.from_text(spec.nameservers[0])),
        rname=wire(dns.name.from_text(spec.soa.rname or "hostmaster", origin=origin)),
    )


class Health(dict[str, bool]):
    """Target health, and the admin overrides of whole names: `forced` maps an owner's wire
    name (in every zone that serves it, aliases too) to its whole pool up or down. `left`:
    the checks in a row that would flip a target, as the prober counts them (a target it has
    not told of is a whole `fall`, or `rise` when down, away)."""

    forced: dict[bytes, bool]
    left: dict[str, int]

    def __init__(self, states: Mapping[str, bool] | None = None,
                 forced: dict[bytes, bool] | None = None,
                 left: dict[str, int] | None = None) -> None:
        super().__init__(states or {})
        self.forced = forced or {}
        self.left = left or {}


def owner_health(owner: Owner, health: Mapping[str, bool]) -> Mapping[str, bool]:
    """The health an owner's pool is judged by: a forced name sees every target as forced."""
    forced = getattr(health, "forced", None)
    if not forced or owner.plan is None:
        return health
    state = forced.get(owner.name)
    if state is None:
        return health
    return {m.target: state for groups in owner.plan.groups.values() for group in groups
            for m in group}


def fill(owner: Owner, health: Mapping[str, bool]) -> tuple[RRsets, dict[int, pools.Variants]]:
    """What an owner serves in this health state, and the variants of the types that rotate.

    The pool's addresses are chosen per family (see `signer.pool`); a family with nothing to
    serve has no RRset, so its type gets NODATA, never NXDOMAIN.
    """
    if owner.plan is None:
        return dict(owner.static), {}
    chosen = chosen_by(owner, health)
    rrsets = dict(owner.static)
    for rdtype, variants in chosen.items():
        rrsets[rdtype] = (owner.ttl, variants[0])
    return rrsets, {t: v for t, v in chosen.items() if len(v) > 1}


def chosen_by(owner: Owner, health: Mapping[str, bool]) -> dict[int, pools.Variants]:
    """What a pooled owner serves (a geo pool: its map's default order; `signer.geo` gives
    what each other order serves)."""
    assert owner.plan is not None
    judged = owner_health(owner, health)
    if owner.geo is not None:
        return geo.default_choice(owner.geo, judged)
    return pools.choose(owner.plan, judged)


def served_ttl(owner: Owner, health: Mapping[str, bool]) -> tuple[int, str] | None:
    """The TTL a pool's addresses are served with and why, when it follows health."""
    if owner.plan is None or owner.health_ttl is None:
        return None
    forced = getattr(health, "forced", {})
    if owner.name in forced:  # an override decides: it may be removed at any moment
        return owner.health_ttl.min, f"TTL {owner.health_ttl.min}: an override decides the answer"
    left = getattr(health, "left", {})
    rotating = any(len(v) > 1 for v in chosen_by(owner, health).values())
    deciders = []
    for target, (address, interval, rise, fall) in owner.plan.checks.items():
        up = health.get(target, False)
        deciders.append(healthttl.Decider(address, up, interval,
                                          left.get(target, fall if up else rise)))
    return healthttl.served(owner.health_ttl, deciders, 0.0, rotating=rotating)


def _geo_health(owner: Owner, health: Mapping[str, bool]) -> list[bool]:
    """A geo pool's every target's health: what the answers of its other orders follow."""
    if owner.geo is None or owner.plan is None:
        return []
    judged = owner_health(owner, health)
    return [judged.get(target, False) for target in owner.plan.checks]


def fingerprint(zone: Zone, health: Mapping[str, bool]) -> bytes:
    """A digest of what a zone serves that depends on health, its TTLs that follow health
    included: equal fingerprints need no new serial. A digest, not the data, so that a
    respawned signer can be handed it."""
    chosen = [(key, sorted(chosen_by(owner, health).items()),
               (served_ttl(owner, health) or (0, ""))[0], _geo_health(owner, health))
              for key, owner in zone.owners.items() if owner.plan is not None]
    return hashlib.sha256(msgspec.msgpack.encode(chosen)).digest()
