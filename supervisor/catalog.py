"""What the configuration says, for the control endpoint: the check targets, the pools by name
and the zones (`Catalog`), worked out once per configuration."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

from healthdns.shared.config import Config, PeersSpec, ZoneSpec
from healthdns.shared.config.geo import MapSpec
from healthdns.shared.geomap import Site
from healthdns.supervisor.names import absolute, bare, from_wire

# The zone label of queries for names in none of our zones (answered REFUSED), and of those
# without a usable question (FORMERR): CoreDNS counts these under its own placeholder; "."
# cannot be a zone of ours (the configuration refuses the root zone).
NO_ZONE = "."
MAX_VARIANTS = 1024  # rotating answers per name and type, at most (as the signer renders)


@dataclass(frozen=True)
class Target:
    """One check target as configured: what it checks and what it decides."""

    id: str
    address: str  # the address the check connects to
    check: str  # "tcp 80", "https 443"
    served: tuple[str, ...]  # the addresses whose health it decides
    names: tuple[str, ...]
    zones: tuple[str, ...]



def catalog(cfg: Config) -> dict[str, Target]:
    """Every check target (the prober's ids), with the addresses, names and zones it decides."""
    checks = cfg.checks()
    found: dict[str, tuple[dict[str, None], dict[str, None], dict[str, None]]] = {}
    for zone in cfg.zones:
        for owner, record in zone.records.items():
            name = absolute(owner, zone.origin)
            for group in record.pool.groups if record.pool is not None else ():
                assert group.check is not None  # normalised
                for address in group.addresses:
                    served, names, zones = found.setdefault(group.check.target(address),
                                                            ({}, {}, {}))
                    served[address] = names[name] = zones[zone.origin.rstrip(".")] = None
    out = {}
    for target, (served, names, zones) in found.items():
        checked, spec = checks[target]
        out[target] = Target(target, checked, f"{spec.kind} {spec.port}", tuple(served),
                             tuple(names), tuple(zones))
    return out


@dataclass(frozen=True)
class Catalog:
    """What the configuration says, for the endpoint: targets, pools by name, zones, and the
    zones' specs (what `explain` reads static records and aliases from), the sites and the
    location maps (what `explain` compiles to place a client)."""

    targets: dict[str, Target]
    pools: dict[str, dict[str, Any]]  # name -> its pool's rules (see `pools`)
    zones: list[str]
    specs: tuple[ZoneSpec, ...] = ()
    sites: dict[str, Site] = field(default_factory=dict)
    maps: dict[str, MapSpec] = field(default_factory=dict)
    peers: PeersSpec | None = None  # with [peers]: the vantages and the quorum rule

    @functools.cached_property
    def names(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        """Each pooled name, in order -> its zone and the targets that judge its addresses
        (in the order of `targets`); worked out once, when /status first asks."""
        origins = [bare(z.origin) for z in self.specs]
        found: dict[str, tuple[str, list[str]]] = {}
        for target in self.targets.values():
            for name in target.names:
                if name not in found:
                    found[name] = (zone_of(name, origins) or target.zones[0], [])
                found[name][1].append(target.id)
        return {name: (zone, tuple(ids)) for name, (zone, ids) in sorted(found.items())}


def make_catalog(cfg: Config) -> Catalog:
    return Catalog(catalog(cfg), pools(cfg), zone_names(cfg), cfg.zones, dict(cfg.sites),
                   dict(cfg.maps), cfg.peers if cfg.peers.enabled() else None)


def pools(cfg: Config) -> dict[str, dict[str, Any]]:
    """Each pooled name (of the zones, not the aliases) -> its pool's rules: groups and their
    weights, min_healthy, max_answers, policy and backup."""
    out = {}
    for zone in cfg.zones:
        for owner, record in zone.records.items():
            if record.pool is not None:
                pool = record.pool
                out[absolute(owner, zone.origin)] = {
                    "groups": [list(g.addresses) for g in pool.groups],
                    "weights": [list(g.weights) for g in pool.groups],
                    "min_healthy": pool.min_healthy, "max_answers": pool.max_answers,
                    "policy": pool.policy, "backup": list(pool.backup)}
    return out


def rotation(pool: dict[str, Any], addresses: list[str]) -> dict[str, Any]:
    """What one answer holds of the `addresses` a pool chose: `per_answer` of them; when an
    answer holds fewer than were chosen (`max_answers`), the signer renders `variants`
    answers, each address first in as many as its weight says, and they rotate."""
    limit = pool["max_answers"]
    if not limit or len(addresses) <= limit:
        return {"per_answer": len(addresses), "rotates": False, "variants": 1}
    weights = {a: w for group, ws in zip(pool["groups"], pool["weights"], strict=True)
               for a, w in zip(group, ws, strict=True)}
    chosen = [weights.get(a, 1) for a in addresses]  # backup addresses weigh 1
    divisor = math.gcd(*chosen)
    return {"per_answer": limit, "rotates": True,
            "variants": min(sum(w // divisor for w in chosen), MAX_VARIANTS)}


def if_all_down(pool: dict[str, Any]) -> dict[str, Any]:
    """What a pool answers once every address of a family is down: its policy, and the
    addresses per type ("serve-all": the first group with addresses of the family)."""
    policy = pool["policy"]
    answers: dict[str, list[str]] = {}
    for rdtype, v6 in (("A", False), ("AAAA", True)):
        groups = [[a for a in g if (":" in a) == v6] for g in pool["groups"]]
        groups = [g for g in groups if g]
        if not groups:
            continue  # no address of the family: NODATA, whatever the policy
        answers[rdtype] = groups[0] if policy == "serve-all" else \
            [a for a in pool["backup"] if (":" in a) == v6] if policy == "backup" else []
    return {"policy": policy, "answers": answers}


def zone_label(origin: bytes, spelled: list[str]) -> str:
    """The `zone` label of an origin (wire, lower-case) as responders count it: the zone's
    name as `zone_names` spells it, so that the DNS counters join `healthdns_zone_serial`;
    NO_ZONE for b"" (none of ours)."""
    if not origin:
        return NO_ZONE
    name = from_wire(origin)
    if name is None:
        return f"invalid {origin[:64].hex()}"  # a responder's bug: shown, never fatal
    return next((z for z in spelled if z.lower() == name.lower()), name)


def zone_names(cfg: Config) -> list[str]:
    """The zones in the order the signer numbers them (each origin, then its aliases)."""
    return [o.rstrip(".") for z in cfg.zones for o in (z.origin, *z.aliases)]



def zone_of(name: str, zones: list[str]) -> str | None:
    """The most specific of `zones` (lower case, no final dot) that holds `name`."""
    holding = [z for z in zones if name == z or name.endswith("." + z)]
    return max(holding, key=len, default=None)
