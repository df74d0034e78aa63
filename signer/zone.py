"""Zones as the signer holds them: built once from the config, then filled per health state.

An alias zone is built from the same `ZoneSpec` under its own origin, as a zone file loaded
under another `$ORIGIN` would be: relative names (owners and rdata) follow the alias.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from healthdns.shared.config import Config, PoolSpec, ZoneSpec

A, NS, CNAME, SOA, AAAA = 1, 2, 5, 6, 28

# rdtype -> (ttl, rdata in wire form, uncompressed)
RRsets = dict[int, tuple[int, tuple[bytes, ...]]]


def wire(name: dns.name.Name) -> bytes:
    """The lower-case uncompressed wire form: the key responders look names up by."""
    return name.canonicalize().to_wire()


@dataclass(frozen=True)
class Owner:
    """One owner name of one zone, with the data that does not depend on health."""

    name: dns.name.Name
    ttl: int
    static: RRsets
    pool: PoolSpec | None
    cname: bytes | None  # lower-case wire of the CNAME target, for following chains


@dataclass(frozen=True)
class Zone:
    """One zone (an origin or an alias) ready to be rendered with a health state."""

    index: int  # which `Config.zones` entry it comes from
    origin: dns.name.Name
    spec: ZoneSpec
    owners: dict[bytes, Owner]  # by lower-case wire name, the apex included
    ns: tuple[bytes, ...]
    mname: bytes
    rname: bytes

    @property
    def key(self) -> bytes:
        return wire(self.origin)


def build(config: Config) -> list[Zone]:
    """Every zone and alias zone of the configuration."""
    zones: list[Zone] = []
    for index, spec in enumerate(config.zones):
        for origin_text in (spec.origin, *spec.aliases):
            zones.append(_zone(index, spec, dns.name.from_text(origin_text)))
    return zones


def _zone(index: int, spec: ZoneSpec, origin: dns.name.Name) -> Zone:
    owners: dict[bytes, Owner] = {}
    for relative, record in spec.records.items():
        name = origin if relative == "@" else dns.name.from_text(relative, origin=origin)
        static: RRsets = {}
        cname: bytes | None = None
        ttl = record.ttl if record.ttl is not None else spec.ttl
        for type_text, texts in record.static().items():
            rdtype = dns.rdatatype.from_text(type_text)
            rdatas = [dns.rdata.from_text(dns.rdataclass.IN, rdtype, t, origin=origin,
                                          relativize=False)
                      for t in texts]
            static[rdtype] = (ttl, tuple(r.to_wire() for r in rdatas))
            if rdtype == CNAME:
                cname = wire(rdatas[0].target)  # type: ignore[attr-defined]
        owners[wire(name)] = Owner(name, ttl, static, record.pool, cname)
    apex = wire(origin)
    if apex not in owners:
        owners[apex] = Owner(origin, spec.ttl, {}, None, None)
    return Zone(
        index=index,
        origin=origin,
        spec=spec,
        owners=owners,
        ns=tuple(dns.name.from_text(n).to_wire() for n in spec.nameservers),
        mname=dns.name.from_text(spec.nameservers[0]).to_wire(),
        rname=dns.name.from_text(spec.soa.rname or "hostmaster", origin=origin).to_wire(),
    )


def served(owner: Owner, health: Mapping[str, bool]) -> RRsets:
    """The RRsets an owner serves in this health state (SOA and NS excluded).

    Each address family of a pool is judged on its own: an A query is answered from the IPv4
    addresses that are up; when none is, the pool's policy decides (all of them, or none).
    """
    rrsets = dict(owner.static)
    if owner.pool is None:
        return rrsets
    pool = owner.pool
    for rdtype, version in ((A, 4), (AAAA, 6)):
        family = [a for a in pool.addresses if ipaddress.ip_address(a).version == version]
        if not family:
            continue
        up = [a for a in family if health.get(pool.check.target(a), False)]
        chosen = up or (family if pool.policy == "serve-all" else [])
        if chosen:
            rrsets[rdtype] = (owner.ttl, tuple(ipaddress.ip_address(a).packed for a in chosen))
    return rrsets


def fingerprint(zone: Zone, health: Mapping[str, bool]) -> tuple[object, ...]:
    """What a zone serves that depends on health: equal fingerprints need no new serial."""
    return tuple(
        (key, served(owner, health).get(A), served(owner, health).get(AAAA))
        for key, owner in zone.owners.items()
        if owner.pool is not None
    )
