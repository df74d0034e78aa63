"""Zones: their SOA, nameservers, aliases and the records of each owner name."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from healthdns.shared import lazy
from healthdns.shared.config import decodeerrors
from healthdns.shared.config.checks import CheckSpec
from healthdns.shared.config.dnssec import DnssecSpec, check_roll_times, normalise_dnssec
from healthdns.shared.config.names import absolute_name, parse_name
from healthdns.shared.config.pools import (
    PoolSpec,
    TtlRange,
    TtlValue,
    normalise_pool,
    ttl_value,
)
from healthdns.shared.config.rdata import STATIC_TYPES, checked_rdata
from healthdns.shared.config.values import (
    Frozen,
    check_ttl,
    convert,
    refuse_normalised_fields,
    shown_key,
)
from healthdns.shared.errors import ConfigError

if TYPE_CHECKING:
    import dns.name
else:  # only validation needs it, and a responder only decodes (see shared/lazy.py)
    lazy.module("dns.name")
    dns = lazy.module("dns")


class RecordSpec(Frozen, frozen=True):
    """Everything one owner name holds: a checked pool, static records, or both."""

    # A number, "MAX/MIN" or {max, min} (`pools.ttl_value`); normalised, the TTL its records
    # are signed and transferred with: the fixed TTL, or a range's max; the zone's when not
    # given.
    ttl: TtlValue | None = None
    # Set by normalisation, never in the file: the range a pool's TTL follows health within
    # (none for a fixed TTL, or a name without a pool: nothing of it can change).
    health_ttl: TtlRange | None = None
    pool: PoolSpec | None = None
    a: tuple[str, ...] = ()
    aaaa: tuple[str, ...] = ()
    cname: str | None = None
    mx: tuple[str, ...] = ()
    txt: tuple[str, ...] = ()
    srv: tuple[str, ...] = ()
    caa: tuple[str, ...] = ()
    ptr: tuple[str, ...] = ()

    def static(self) -> dict[str, tuple[str, ...]]:
        """Static rdata by lower-case type name, in zone-file syntax."""
        out = {t: getattr(self, t) for t in STATIC_TYPES if t != "cname" and getattr(self, t)}
        if self.cname is not None:
            out["cname"] = (self.cname,)
        return out

    @property
    def max_ttl(self) -> int:
        """The normalised `ttl`: what the records are signed and transferred with."""
        assert isinstance(self.ttl, int)
        return self.ttl


class SoaSpec(Frozen, frozen=True):
    """SOA fields (RFC 1035 3.3.13); the serial is the signer's business."""

    rname: str | None = None
    ttl: int = 3600
    refresh: int = 7200
    retry: int = 3600
    expire: int = 1209600
    minimum: int = 60


class ZoneSpec(Frozen, frozen=True):
    """One zone and the alias zones that serve the same data under other names."""

    origin: str
    nameservers: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    ttl: int = 300  # a range's max when the file gives one (`health_ttl`)
    ns_ttl: int = 3600
    soa: SoaSpec = SoaSpec()
    records: dict[str, RecordSpec] = {}
    dnssec: DnssecSpec | None = None
    health_ttl: TtlRange | None = None  # the default range of the zone's pools

    def max_ttl(self) -> int:
        """The longest TTL of a signed RRset (RFC 7583 TTLsig): records, NS, SOA and the
        negative answers (their NSEC and SOA at the SOA minimum), DNSKEY aside."""
        ttls = [self.ttl, self.ns_ttl, self.soa.ttl, self.soa.minimum]
        # normalised, a record's ttl is a number (a range's max: `health_ttl` holds the range)
        ttls += [r.ttl for r in self.records.values() if isinstance(r.ttl, int)]
        return max(ttls)


class RawZone(Frozen, frozen=True):
    origin: str
    nameservers: list[str]
    aliases: list[str] = []
    ttl: TtlValue = 300
    ns_ttl: int = 3600
    soa: SoaSpec = SoaSpec()
    records: dict[str, dict[str, Any]] = {}
    dnssec: DnssecSpec | None = None
    health_ttl: TtlRange | None = None  # set by normalisation (`ZoneSpec`): refused here


def normalise_zone(raw: RawZone, path: str) -> ZoneSpec:
    refuse_normalised_fields(raw, ("health_ttl",), path)
    origin = absolute_name(raw.origin, f"{path}.origin")
    if origin == dns.name.root:
        raise ConfigError(f"{path}.origin", "the root zone is not supported")
    aliases = tuple(absolute_name(a, f"{path}.aliases[{i}]") for i, a in enumerate(raw.aliases))
    if not raw.nameservers:
        raise ConfigError(f"{path}.nameservers", "at least one nameserver is required")
    nameservers = tuple(_nameserver(n, f"{path}.nameservers[{i}]")
                        for i, n in enumerate(raw.nameservers))
    zone_ttl = ttl_value(raw.ttl, f"{path}.ttl")
    check_ttl(raw.ns_ttl, f"{path}.ns_ttl")
    soa = _soa(raw.soa, origin, f"{path}.soa")
    dnssec = normalise_dnssec(raw.dnssec, f"{path}.dnssec") if raw.dnssec is not None else None
    _check_range(zone_ttl, soa, dnssec, f"{path}.ttl")
    records: dict[str, RecordSpec] = {}
    for key, value in raw.records.items():
        rpath = f"{path}.records.{shown_key(key)}"
        owner = _owner(key, origin, rpath)
        nested = [k for k, v in value.items() if isinstance(v, dict)
                  and k not in RecordSpec.__struct_fields__] \
            if isinstance(value, dict) else []
        meant = decodeerrors.unknown_key(nested[0], list(RecordSpec.__struct_fields__)) \
            if nested else ""
        if "did you mean" in meant:  # a misspelt field ("pol"), not a name with a dot
            raise ConfigError(f"{rpath}.{nested[0]}", meant)
        if nested:
            raise ConfigError(rpath, f"{nested[0]!r} is not a record field; a name with dots "
                              f"must be quoted in TOML: [zones.records.\"{key}.{nested[0]}\"]")
        if isinstance(value, dict) and "ns" in value:
            raise ConfigError(f"{rpath}.ns", "delegating a subdomain (NS below the apex) is not "
                              "supported; the apex NS records come from `nameservers`")
        if owner in records:
            raise ConfigError(rpath, f"the name {owner!r} is given twice")
        records[owner] = _record(convert(value, RecordSpec, rpath), owner, origin, zone_ttl,
                                 rpath)
        _check_range(records[owner].health_ttl, soa, dnssec, _ttl_path(value, rpath))
        _check_not_self(records[owner].cname, owner, (origin, *aliases), f"{rpath}.cname")
    spec = ZoneSpec(origin=origin.to_text(), nameservers=nameservers,
                    aliases=tuple(a.to_text() for a in aliases), ttl=_max(zone_ttl),
                    ns_ttl=raw.ns_ttl, soa=soa, records=records, dnssec=dnssec,
                    health_ttl=zone_ttl if isinstance(zone_ttl, TtlRange) else None)
    if dnssec is not None:
        check_roll_times(dnssec, spec.max_ttl(), f"{path}.dnssec")
    return spec


def _max(ttl: int | TtlRange) -> int:
    return ttl.max if isinstance(ttl, TtlRange) else ttl


def _ttl_path(value: object, path: str) -> str:
    """Where a record's range was given: its own `ttl`, its pool's, or the zone's."""
    if isinstance(value, dict) and "ttl" in value:
        return f"{path}.ttl"
    pool = value.get("pool") if isinstance(value, dict) else None
    return f"{path}.pool.ttl" if isinstance(pool, dict) and "ttl" in pool else path


def _check_range(ttl: int | TtlRange | None, soa: SoaSpec, dnssec: DnssecSpec | None,
                 path: str) -> None:
    """A range's max within what the zone allows: a secondary keeps the zone `soa.expire`
    seconds at most, and a signed answer's TTL stays below what its signature has left
    (re-signed when `refresh` is left: RFC 4035 5.3.3)."""
    if not isinstance(ttl, TtlRange):
        return
    if ttl.max > soa.expire:
        raise ConfigError(path, f"max {ttl.max} is above the SOA's expire ({soa.expire})")
    if dnssec is not None and ttl.max > dnssec.refresh:
        raise ConfigError(path, f"max {ttl.max} is above dnssec.refresh ({dnssec.refresh}): "
                          "a signature may have no more than that left when it is served")


def _check_not_self(cname: str | None, owner: str, apexes: tuple[dns.name.Name, ...],
                    path: str) -> None:
    if cname is not None and in_zone(cname, apexes) == owner:
        raise ConfigError(path, f"{cname!r} is the name itself: a CNAME cannot point to its "
                          "own owner (resolvers would fail on the loop)")


def in_zone(target: str, apexes: tuple[dns.name.Name, ...]) -> str | None:
    """A CNAME target as an owner of the zone (relative text), if it is inside the zone or one
    of its aliases, which serve the same owners; `apexes` starts with the origin."""
    # The text is zone-file rdata, checked already: ". " is the root, as its rdata says.
    name = dns.name.from_text(target.strip(), origin=apexes[0]).canonicalize()
    for apex in apexes:
        if name.is_subdomain(apex):
            relative = name.relativize(apex)
            return relative.to_text() if relative != dns.name.empty else "@"
    return None


def _soa(raw: SoaSpec, origin: dns.name.Name, path: str) -> SoaSpec:
    for field in ("ttl", "refresh", "retry", "expire", "minimum"):
        check_ttl(getattr(raw, field), f"{path}.{field}")
    rname = raw.rname if raw.rname is not None else "hostmaster"
    name = parse_name(rname, f"{path}.rname", origin)
    return msgspec.structs.replace(raw, rname=name.to_text())


def _record(raw: RecordSpec, owner: str, origin: dns.name.Name, zone_ttl: int | TtlRange,
            path: str) -> RecordSpec:
    if raw.health_ttl is not None:
        raise ConfigError(f"{path}.health_ttl", "unknown key (healthdns sets it, the file "
                          "may not: give ttl)")
    ttl = _record_ttl(raw, zone_ttl, path)
    pool = normalise_pool(raw.pool, f"{path}.pool") if raw.pool is not None else None
    static = raw.static()
    if pool is None and not static:
        raise ConfigError(path, "has no data: give a pool or static records (a, aaaa, cname, …)")
    if raw.cname is not None:
        others = sorted(set(static) - {"cname"}) + (["pool"] if pool else [])
        if owner == "@":
            raise ConfigError(f"{path}.cname", "a CNAME cannot be at the zone apex (RFC 1912)")
        if others:
            raise ConfigError(f"{path}.cname",
                              f"a CNAME cannot coexist with other data ({', '.join(others)})")
    if pool is not None and (raw.a or raw.aaaa):
        raise ConfigError(path, "a name with a pool cannot also have static a or aaaa records")
    fields: dict[str, Any] = {}
    for rtype, texts in static.items():
        fields[rtype] = checked_rdata(rtype, texts, origin, f"{path}.{rtype}")
    if raw.cname is not None:
        fields["cname"] = fields["cname"][0]
    health = ttl if isinstance(ttl, TtlRange) and pool is not None else None
    return msgspec.structs.replace(raw, ttl=_max(ttl), health_ttl=health, pool=pool, **fields)


def _record_ttl(raw: RecordSpec, zone_ttl: int | TtlRange, path: str) -> int | TtlRange:
    """The name's TTL: its pool's, its own, or the zone's (a range serves pools only)."""
    pool_ttl = raw.pool.ttl if raw.pool is not None else None
    if pool_ttl is not None and raw.ttl is not None:
        raise ConfigError(f"{path}.pool.ttl", "the name gives its ttl already: give it once")
    if pool_ttl is not None:
        return ttl_value(pool_ttl, f"{path}.pool.ttl")
    return zone_ttl if raw.ttl is None else ttl_value(raw.ttl, f"{path}.ttl")


def _owner(key: str, origin: dns.name.Name, path: str) -> str:
    """A record key ("www", "@", or an absolute name inside the zone) as a relative name."""
    if key == "@":
        return "@"
    name = parse_name(key, path, origin)
    if not name.is_subdomain(origin):
        raise ConfigError(path, f"{key!r} is not inside the zone {origin.to_text()}")
    relative = name.relativize(origin)
    return relative.to_text() if relative != dns.name.empty else "@"


def _nameserver(text: str, path: str) -> str:
    try:
        ipaddress.ip_address(text.rstrip(".") if isinstance(text, str) else "")
    except ValueError:
        pass
    else:
        raise ConfigError(path, f"{text!r} is an address: a nameserver is given by its host "
                          "name (like ns1.example.net)")
    name = absolute_name(text, path)
    if len(name.labels) < 3:
        raise ConfigError(path, f"{text!r} is not a fully qualified host name "
                          "(like ns1.example.net)")
    return name.to_text()


def check_unique_origins(zones: tuple[ZoneSpec, ...]) -> None:
    seen: dict[str, str] = {}
    for i, zone in enumerate(zones):
        names = [("origin", zone.origin),
                 *((f"aliases[{j}]", a) for j, a in enumerate(zone.aliases))]
        for field, name in names:
            path = f"zones[{i}].{field}"
            if name in seen:
                raise ConfigError(path, f"{name} is already served by {seen[name]}")
            seen[name] = path


def numbered_variants(zones: tuple[ZoneSpec, ...]) -> tuple[ZoneSpec, ...]:
    """The zones with each check's `variant` set: checks that differ only in header values
    are numbered in file order, so that their ids (which leave header values out) differ."""
    seen: dict[bytes, list[CheckSpec]] = {}

    def numbered(check: CheckSpec) -> CheckSpec:
        same = seen.setdefault(msgspec.msgpack.encode(check.without_secrets()), [])
        if check not in same:
            same.append(check)
        return msgspec.structs.replace(check, variant=same.index(check))

    return map_checks(zones, numbered)


def map_checks(zones: tuple[ZoneSpec, ...],
                change: Callable[[CheckSpec], CheckSpec]) -> tuple[ZoneSpec, ...]:
    """The zones with `change` applied to every check that sends headers, in file order."""
    def check(spec: CheckSpec | None) -> CheckSpec | None:
        return change(spec) if spec is not None and spec.headers else spec

    def pool(spec: PoolSpec) -> PoolSpec:
        if not any(c is not None and c.headers for c in (spec.check, *(g.check for g in
                                                                         spec.groups))):
            return spec
        groups = tuple(msgspec.structs.replace(g, check=check(g.check)) for g in spec.groups)
        sites = {name: msgspec.structs.replace(site, groups=tuple(
            msgspec.structs.replace(g, check=check(g.check)) for g in site.groups))
            for name, site in spec.sites.items()}
        return msgspec.structs.replace(spec, check=check(spec.check), groups=groups,
                                       sites=sites)

    return tuple(msgspec.structs.replace(zone, records={
        name: msgspec.structs.replace(record, pool=pool(record.pool))
        if record.pool is not None else record
        for name, record in zone.records.items()}) for zone in zones)
