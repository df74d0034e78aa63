"""Geo pools: what each answers the clients of each site order of its map, per address family.

Per family, as a pool's groups are judged (`signer.pool`), across the sites of the client's
order (sites the pool has no address of the family in are passed over; sites not in the order
are never used):

1. the first site that qualifies (a group of it has `min_healthy` up) serves what the pool's
   rules pick inside it;
2. when none qualifies but an address of the family is up in a site of the order, the first
   such site serves the ones up (degraded beats nothing);
3. when every address of the family is down in every site of the order, the pool's policy:
   serve-all answers with the first site's first group in full, empty with no address
   (NODATA), backup with the backup addresses.

With one address per site and `min_healthy = 1` this is gdnsd's geoip choice. A generation
renders one answer per distinct outcome, not per client: `outcomes` gives each order id of
the map the index of its outcome.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import msgspec

from healthdns.shared.config import Config, PoolSpec
from healthdns.shared.messages import GeoChoice, SiteState
from healthdns.signer import pool as pools
from healthdns.signer.pool import AAAA, Member, Variants

FAMILY = {pools.A: "A", AAAA: "AAAA"}


@dataclass(frozen=True)
class GeoPlan:
    """A geo pool prepared once: per site its groups as a pool of their own."""

    map: str
    default: tuple[str, ...]  # the map's order for a client it knows nothing about
    sites: dict[str, pools.Plan]
    backup: dict[int, tuple[Member, ...]]
    policy: str
    max_answers: int

    def families(self) -> list[int]:
        """The address types some site has addresses of, A first."""
        return [t for t in (pools.A, AAAA) if any(t in p.groups for p in self.sites.values())]


class Outcome(NamedTuple):
    """What one order serves in one family: the site ("" none), the rule that chose it, the
    addresses, and the sites of the order passed over before it, each with why."""

    site: str
    rule: str
    members: tuple[Member, ...]
    skipped: tuple[tuple[str, str], ...]


class Outcomes(NamedTuple):
    """A geo pool's distinct outcomes in one family, and which one each order id gets."""

    outcomes: list[Outcome]
    by_order: list[int]


def plan(pool: PoolSpec, cfg: Config) -> GeoPlan:
    """The plan of a normalised geo pool of `cfg`."""
    spec = cfg.maps[pool.map]
    sites = {name: pools.plan(msgspec.structs.replace(pool, groups=site.groups, sites={},
                                                      map="", backup=()))
             for name, site in pool.sites.items()}
    whole = pools.plan(pool)
    return GeoPlan(map=pool.map, default=spec.default or tuple(cfg.sites), sites=sites,
                   backup=whole.backup, policy=pool.policy, max_answers=pool.max_answers)


def choose(geo: GeoPlan, order: Sequence[str], rdtype: int,
           health: Mapping[str, bool]) -> Outcome:
    """What a client whose site order is `order` is served in family `rdtype`."""
    skipped: list[tuple[str, str]] = []
    candidates: list[str] = []
    degraded: Outcome | None = None
    for site in order:
        site_plan = geo.sites.get(site)
        groups = site_plan.groups.get(rdtype) if site_plan is not None else None
        if site_plan is None or groups is None:
            skipped.append((site, f"no {FAMILY[rdtype]} addresses"))
            continue
        candidates.append(site)
        members, _, rule = pools.pick(site_plan, rdtype, groups, health)
        if rule == "healthy":
            return Outcome(site, rule, members, tuple(skipped))
        if rule == "degraded" and degraded is None:
            degraded = Outcome(site, rule, members, tuple(skipped))
        up = sum(health.get(m.target, False) for g in groups for m in g)
        total = sum(len(g) for g in groups)
        needed = min(site_plan.min_healthy, total)
        skipped.append((site, f"{up} of {total} up, {needed} needed in a group"))
    if degraded is not None:
        return degraded
    if not candidates:
        return Outcome("", "no site", (), tuple(skipped))
    if geo.policy == "serve-all":
        first = candidates[0]
        return Outcome(first, "policy serve-all", geo.sites[first].groups[rdtype][0],
                       tuple(skipped))
    if geo.policy == "backup":
        return Outcome("", "policy backup", geo.backup.get(rdtype, ()), tuple(skipped))
    return Outcome("", "policy empty", (), tuple(skipped))


def outcomes(geo: GeoPlan, orders: Sequence[Sequence[str]], rdtype: int,
             health: Mapping[str, bool]) -> Outcomes:
    """Every order id's outcome, equal outcomes (same site, same addresses) once."""
    found: list[Outcome] = []
    index: dict[tuple[str, tuple[bytes, ...]], int] = {}
    by_order: list[int] = []
    for order in orders:
        outcome = choose(geo, order, rdtype, health)
        key = (outcome.site, tuple(m.rdata for m in outcome.members))
        known = index.get(key)
        if known is None:
            known = index[key] = len(found)
            found.append(outcome)
        by_order.append(known)
    return Outcomes(found, by_order)


def rotations(geo: GeoPlan, outcome: Outcome) -> Variants:
    """The rdata sets an outcome serves in turn (none: NODATA)."""
    if not outcome.members:
        return []
    return pools.rotations(outcome.members, geo.max_answers)


def default_choice(geo: GeoPlan, health: Mapping[str, bool]) -> dict[int, Variants]:
    """What the map's default order is served, as `pools.choose` gives it: the answer kept
    in the zone (transfers, and a responder without the map)."""
    out: dict[int, Variants] = {}
    for rdtype in geo.families():
        variants = rotations(geo, choose(geo, geo.default, rdtype, health))
        if variants:
            out[rdtype] = variants
    return out


def site_states(geo: GeoPlan, health: Mapping[str, bool]
                ) -> list[tuple[str, int, int, int, bool]]:
    """(site, rdtype, up, total, qualifies) of every site and family it has addresses of."""
    rows = []
    for site, site_plan in geo.sites.items():
        for rdtype, groups in site_plan.groups.items():
            up = sum(health.get(m.target, False) for g in groups for m in g)
            total = sum(len(g) for g in groups)
            rule = pools.pick(site_plan, rdtype, groups, health)[2]
            rows.append((site, rdtype, up, total, rule == "healthy"))
    return rows


def addresses(members: tuple[Member, ...]) -> list[str]:
    return [str(ipaddress.ip_address(m.rdata)) for m in members]


def choices(name: str, geo: GeoPlan, orders: Sequence[Sequence[str]],
            health: Mapping[str, bool]) -> tuple[list[SiteState], list[GeoChoice]]:
    """A geo pool's sites, and what each order of its map is served, for the operator."""
    sites = [SiteState(name, site, rdtype, up, total, qualifies)
             for site, rdtype, up, total, qualifies in site_states(geo, health)]
    rows = []
    for rdtype in geo.families():
        for oid, order in enumerate(orders):
            made = choose(geo, order, rdtype, health)
            rows.append(GeoChoice(name, rdtype, geo.map, oid, made.site, made.rule,
                                  list(made.skipped), addresses(made.members)))
    return sites, rows
