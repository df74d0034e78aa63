"""Health-checked address pools: failover groups of addresses, their weights and checks,
and the TTL that follows their health."""

from __future__ import annotations

import re

import msgspec

from healthdns.shared.config.checks import CheckSpec, normalise_check
from healthdns.shared.config.values import (
    MAX_TTL,
    Frozen,
    canonical_address,
    check_one_of,
    check_ttl,
    shown_key,
)
from healthdns.shared.errors import ConfigError

POLICIES = ("serve-all", "empty", "backup")
MAX_WEIGHT = 100
MAX_ANSWERS = 64


class TtlRange(Frozen, frozen=True):
    """A TTL that follows health: the time until the answer could next change, kept between
    `min` and `max` (seconds). `max` is the TTL the records are signed and transferred with."""

    max: int
    min: int


# How a `ttl` may be written: a number (fixed), "MAX/MIN", or a table {max, min}.
TtlValue = int | str | TtlRange


def ttl_value(raw: TtlValue, path: str) -> int | TtlRange:
    """A `ttl` as written, checked: a fixed TTL, or the range a health TTL keeps within."""
    if isinstance(raw, int):
        check_ttl(raw, path)
        return raw
    if isinstance(raw, str) and raw.strip().isdigit():
        raise ConfigError(path, f"{raw!r} must be a whole number of seconds (write "
                          f"{int(raw)}, without quotes)")
    if isinstance(raw, str):
        found = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", raw)
        if found is None:
            raise ConfigError(path, f"{raw!r} is not a TTL: write a number of seconds, "
                              '"MAX/MIN" (like "300/30"), or { max = 300, min = 30 }')
        raw = TtlRange(max=int(found[1]), min=int(found[2]))
    for field in ("max", "min"):
        value = getattr(raw, field)
        if not 1 <= value <= MAX_TTL:
            raise ConfigError(f"{path}", f"{field} {value} is not between 1 and {MAX_TTL} "
                              "(a TTL that follows health is never 0)")
    if raw.min > raw.max:
        raise ConfigError(path, f"min {raw.min} is above max {raw.max}")
    return raw


class GroupSpec(Frozen, frozen=True):
    """One failover group of a pool: addresses, their weights, and how they are checked."""

    addresses: tuple[str, ...]
    weights: tuple[int, ...] = ()  # normalised: one per address (1 when not given)
    check: CheckSpec | None = None  # normalised: always set (the pool's check when not given)


class SitePoolSpec(Frozen, frozen=True):
    """The addresses a geo pool serves from one site: a pool's short form (`addresses`,
    `weights`, `check`) or its `groups`. Normalised, `groups` only."""

    addresses: tuple[str, ...] = ()
    weights: tuple[int, ...] = ()
    check: CheckSpec | None = None
    groups: tuple[GroupSpec, ...] = ()


class PoolSpec(Frozen, frozen=True):
    """A health-checked address pool (A and AAAA): failover groups in order of preference.

    The short form, `addresses` (with `weights`), is one group; normalised, every pool holds its
    addresses in `groups` only.
    """

    addresses: tuple[str, ...] = ()
    weights: tuple[int, ...] = ()
    check: CheckSpec | None = None  # the check of every group that has none of its own
    groups: tuple[GroupSpec, ...] = ()
    min_healthy: int = 1  # a group serves once this many of its addresses are up
    max_answers: int = 0  # addresses per answer, rotated by weight; 0: every chosen address
    policy: str = "serve-all"  # when every address is down: one of POLICIES
    backup: tuple[str, ...] = ()  # policy "backup": served, unchecked, when all are down
    # The TTL of its addresses: a number, "MAX/MIN" or {max, min}; normalised, it moves to
    # the record (`RecordSpec.ttl`, `RecordSpec.health_ttl`) and is None here.
    ttl: TtlValue | None = None
    # A geo pool: the map (`[maps.NAME]`) that orders the sites for a client, and the
    # addresses of each site (`shared.config.geo`). Normalised, `groups` holds every site's
    # groups too, in site order: what is checked and listed.
    map: str = ""
    sites: dict[str, SitePoolSpec] = {}

    def site_groups(self) -> dict[str, tuple[GroupSpec, ...]]:
        """Each site's groups (normalised geo pools), in the pool's site order."""
        return {name: site.groups for name, site in self.sites.items()}


def normalise_pool(raw: PoolSpec, path: str) -> PoolSpec:
    check = normalise_check(raw.check, f"{path}.check") if raw.check is not None else None
    if raw.sites or raw.map:
        return _geo_pool(raw, check, path)
    if raw.groups:
        for field in ("addresses", "weights"):
            if getattr(raw, field):
                raise ConfigError(f"{path}.{field}",
                                  "give either addresses (one group) or groups, not both")
        listed = [(g, f"{path}.groups[{i}]") for i, g in enumerate(raw.groups)]
    else:  # the short form: one group, whose errors are reported at the pool's own fields
        listed = [(GroupSpec(addresses=raw.addresses, weights=raw.weights), path)]
    seen: list[str] = []
    groups = tuple(_group(g, check, seen, where) for g, where in listed)
    return _pool_keys(raw, check, groups, seen, path)


def _geo_pool(raw: PoolSpec, check: CheckSpec | None, path: str) -> PoolSpec:
    """A geo pool: each site a pool's short form or groups (that the map and the sites
    exist is checked with the whole configuration, `geo.check_pool_names`)."""
    if not raw.map:
        raise ConfigError(f"{path}.map", "a pool with sites needs a map to order them")
    if not raw.sites:
        raise ConfigError(f"{path}.sites", f"a pool with a map ({raw.map!r}) needs its "
                          "addresses per site: [...pool.sites.NAME]")
    for field in ("addresses", "weights", "groups"):
        if getattr(raw, field):
            raise ConfigError(f"{path}.{field}", "a pool with sites holds its addresses per "
                              "site: give them under sites.NAME, not here")
    seen: list[str] = []
    sites: dict[str, SitePoolSpec] = {}
    for name, site in raw.sites.items():
        where = f"{path}.sites.{shown_key(name)}"
        if site.groups:
            for field in ("addresses", "weights"):
                if getattr(site, field):
                    raise ConfigError(f"{where}.{field}",
                                      "give either addresses (one group) or groups, not both")
            listed = [(g, f"{where}.groups[{i}]") for i, g in enumerate(site.groups)]
        else:
            listed = [(GroupSpec(addresses=site.addresses, weights=site.weights), where)]
        default = normalise_check(site.check, f"{where}.check") if site.check is not None \
            else check
        sites[name] = SitePoolSpec(groups=tuple(_group(g, default, seen, w) for g, w in listed))
    groups = tuple(g for site in sites.values() for g in site.groups)
    pool = _pool_keys(raw, check, groups, seen, path)
    return msgspec.structs.replace(pool, map=raw.map, sites=sites)


def _pool_keys(raw: PoolSpec, check: CheckSpec | None, groups: tuple[GroupSpec, ...],
               seen: list[str], path: str) -> PoolSpec:
    """The pool with its pool-wide keys checked."""
    largest = max(len(g.addresses) for g in groups)
    if not 1 <= raw.min_healthy <= largest:
        raise ConfigError(f"{path}.min_healthy", f"{raw.min_healthy} is not between 1 and the "
                          f"size of the largest group ({largest})")
    if not 0 <= raw.max_answers <= MAX_ANSWERS:
        raise ConfigError(f"{path}.max_answers",
                          f"{raw.max_answers} is not between 0 (all) and {MAX_ANSWERS}")
    check_one_of(raw.policy, POLICIES, f"{path}.policy")
    backup = _addresses(raw.backup, f"{path}.backup", seen)
    if raw.policy == "backup" and not backup:
        raise ConfigError(f"{path}.backup", 'policy "backup" needs at least one backup address')
    if backup and raw.policy != "backup":
        raise ConfigError(f"{path}.backup",
                          f'is served only with policy = "backup", not {raw.policy!r}')
    return PoolSpec(check=check, groups=groups, min_healthy=raw.min_healthy,
                    max_answers=raw.max_answers, policy=raw.policy, backup=backup)


def _group(raw: GroupSpec, default: CheckSpec | None, seen: list[str], path: str) -> GroupSpec:
    if not raw.addresses:
        raise ConfigError(f"{path}.addresses", "at least one address is required")
    addresses = _addresses(raw.addresses, f"{path}.addresses", seen)
    weights = raw.weights or (1,) * len(addresses)
    if len(weights) != len(addresses):
        raise ConfigError(f"{path}.weights", f"{len(weights)} given for {len(addresses)} "
                          "address(es): one weight per address")
    for i, weight in enumerate(weights):
        if not 1 <= weight <= MAX_WEIGHT:
            raise ConfigError(f"{path}.weights[{i}]",
                              f"{weight} is not between 1 and {MAX_WEIGHT}")
    check = normalise_check(raw.check, f"{path}.check") if raw.check is not None else default
    if check is None:
        raise ConfigError(f"{path}.check", "is required, for the group or the whole pool")
    return GroupSpec(addresses=addresses, weights=weights, check=check)


def _addresses(texts: tuple[str, ...], path: str, seen: list[str]) -> tuple[str, ...]:
    """Addresses in canonical form; `seen` holds those of the whole pool, which never repeat."""
    out: list[str] = []
    for i, text in enumerate(texts):
        address = canonical_address(text, f"{path}[{i}]")
        if address in seen:
            raise ConfigError(f"{path}[{i}]", f"{text} is given twice")
        seen.append(address)
        out.append(address)
    return tuple(out)
