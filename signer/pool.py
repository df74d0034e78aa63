"""Which addresses of a checked pool are served in a health state, and how answers rotate.

Each address family is judged on its own: an A query is answered from the IPv4 addresses of the
first failover group that has `min_healthy` of them up (a group with fewer IPv4 addresses
qualifies when all of them are up). When no group qualifies, the first group with any address
up serves those; only when every address of the family is down does the pool's policy decide:
"serve-all" answers as if every check passed (the first group, in full), "empty" answers with
no address (NODATA), "backup" with the unchecked backup addresses.

With `max_answers`, a choice larger than that is served in turns: the signer renders several
answers (variants), each with `max_answers` addresses, and the responder rotates through them.
Across the variants every address comes first as often as its weight says, in the interleaved
order of nginx's smooth weighted round robin, so no address is served in long runs.
"""

from __future__ import annotations

import functools
import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass

from healthdns.shared.config import PoolSpec

A, AAAA = 1, 28
MAX_VARIANTS = 1024  # rotating answers per name and type: bounds the snapshot's size

Variants = list[tuple[bytes, ...]]  # rotating rdata sets, the first one served by default


@dataclass(frozen=True)
class Member:
    """One checked address: its rdata, its weight, and the health target that judges it."""

    rdata: bytes
    weight: int
    target: str


@dataclass(frozen=True)
class Plan:
    """A pool prepared once, so that filling it per health state is a few dict lookups."""

    groups: dict[int, tuple[tuple[Member, ...], ...]]  # rdtype -> its non-empty groups, in order
    backup: dict[int, tuple[Member, ...]]
    min_healthy: int
    max_answers: int
    policy: str
    # target -> (the address it checks, interval, rise, fall): what the TTL that follows
    # health counts with (`signer.healthttl`)
    checks: dict[str, tuple[str, float, int, int]]


def plan(pool: PoolSpec) -> Plan:
    groups: dict[int, list[tuple[Member, ...]]] = {A: [], AAAA: []}
    for group in pool.groups:
        assert group.check is not None  # normalised
        members = [Member(ipaddress.ip_address(a).packed, w, group.check.target(a))
                   for a, w in zip(group.addresses, group.weights, strict=True)]
        for rdtype, size in ((A, 4), (AAAA, 16)):
            family = tuple(m for m in members if len(m.rdata) == size)
            if family:
                groups[rdtype].append(family)
    backup = [Member(ipaddress.ip_address(a).packed, 1, "") for a in pool.backup]
    checks = {g.check.target(a): (g.check.checked(a), g.check.interval, g.check.rise,
                                  g.check.fall)
              for g in pool.groups if g.check is not None for a in g.addresses}
    return Plan(groups={t: tuple(g) for t, g in groups.items() if g},
                backup={t: tuple(m for m in backup if len(m.rdata) == (4 if t == A else 16))
                        for t in (A, AAAA)},
                min_healthy=pool.min_healthy, max_answers=pool.max_answers, policy=pool.policy,
                checks=checks)


def choose(plan: Plan, health: Mapping[str, bool]) -> dict[int, Variants]:
    """rdtype -> the rdata sets served in turn (one set when nothing rotates); none: NODATA."""
    out: dict[int, Variants] = {}
    for rdtype, groups in plan.groups.items():
        chosen = pick(plan, rdtype, groups, health)[0]
        if chosen:
            out[rdtype] = rotations(chosen, plan.max_answers)
    return out


def explain(plan: Plan, health: Mapping[str, bool]) -> dict[int, tuple[int, str, list[str]]]:
    """rdtype -> (group index or -1, the rule that chose, the addresses chosen): what
    `choose` decided and why, for the operator (see `pick` for the rules' words)."""
    out: dict[int, tuple[int, str, list[str]]] = {}
    for rdtype, groups in plan.groups.items():
        members, group, rule = pick(plan, rdtype, groups, health)
        out[rdtype] = (group, rule, [str(ipaddress.ip_address(m.rdata)) for m in members])
    return out


def pick(plan: Plan, rdtype: int, groups: tuple[tuple[Member, ...], ...],
            health: Mapping[str, bool]) -> tuple[tuple[Member, ...], int, str]:
    """The members served, the index of the group they come from (-1: none), and the rule:
    "healthy" (the group has min_healthy up), "degraded" (no group has, the first with any up
    serves), or "policy <name>" (every address is down)."""
    fallback: tuple[Member, ...] = ()
    fallback_index = -1
    for index, group in enumerate(groups):
        up = tuple(m for m in group if health.get(m.target, False))
        if len(up) >= min(plan.min_healthy, len(group)):
            return up, index, "healthy"
        if up and not fallback:
            fallback, fallback_index = up, index
    if fallback:
        return fallback, fallback_index, "degraded"  # degraded beats dark
    if plan.policy == "serve-all":
        return groups[0], 0, "policy serve-all"
    if plan.policy == "backup":
        return plan.backup[rdtype], -1, "policy backup"
    return (), -1, "policy empty"


def rotations(members: tuple[Member, ...], limit: int) -> Variants:
    """The answers served in turn: variant i starts at position i of the weighted order and
    takes the next `limit` distinct addresses (all of them, once, when they fit)."""
    if not limit or len(members) <= limit:
        return [tuple(m.rdata for m in members)]
    order = weighted_order(tuple(m.weight for m in members))
    variants: Variants = []
    for start in range(len(order)):
        picked: list[int] = []
        for step in range(len(order)):
            index = order[(start + step) % len(order)]
            if index not in picked:
                picked.append(index)
                if len(picked) == limit:
                    break
        variants.append(tuple(members[i].rdata for i in picked))
    return variants


@functools.lru_cache(maxsize=4096)
def weighted_order(weights: tuple[int, ...]) -> tuple[int, ...]:
    """Smooth weighted round robin (as nginx does it): indexes, each as often as its weight
    (divided by their greatest common divisor), spread out; at most MAX_VARIANTS of them."""
    divisor = math.gcd(*weights)
    reduced = [w // divisor for w in weights]
    total = sum(reduced)
    current = [0] * len(reduced)
    order: list[int] = []
    for _ in range(min(total, MAX_VARIANTS)):
        for i, weight in enumerate(reduced):
            current[i] += weight
        best = max(range(len(current)), key=current.__getitem__)  # the first on ties
        current[best] -= total
        order.append(best)
    return tuple(order)
