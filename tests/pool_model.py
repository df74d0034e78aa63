"""An independent model of which addresses a pool serves, written from docs/configuration.md.

It reads the documented rules ("How an answer is chosen", "Rotation and weights") and
deliberately does not import `healthdns.signer.pool`: a test that compares the server with
this model checks the code against the documentation, not against itself.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math

MAX_VARIANTS = 1024  # "there are as many answers as the reduced weights add up to, at most 1024"


@dataclasses.dataclass(frozen=True)
class Group:
    addresses: tuple[str, ...]
    weights: tuple[int, ...] = ()  # empty: all 1

    def weight(self, address: str) -> int:
        return self.weights[self.addresses.index(address)] if self.weights else 1


@dataclasses.dataclass(frozen=True)
class Pool:
    groups: tuple[Group, ...]
    min_healthy: int = 1
    max_answers: int = 0
    policy: str = "serve-all"
    backup: tuple[str, ...] = ()

    def addresses(self) -> tuple[str, ...]:
        """Every checked address, in configuration order."""
        return tuple(a for group in self.groups for a in group.addresses)


def family(address: str) -> int:
    return ipaddress.ip_address(address).version


def chosen(pool: Pool, up: frozenset[str], version: int) -> tuple[tuple[str, int], ...]:
    """(address, weight) pairs an answer of this family picks from, in configuration order.

    Empty means NODATA.
    """
    return pick(pool, up, version)[1]


def rule(pool: Pool, up: frozenset[str], version: int) -> str:
    """Which documented step picks the answer: for failure messages, and to show that a
    schedule of health states reaches every step."""
    return pick(pool, up, version)[0]


def pick(pool: Pool, up: frozenset[str],
         version: int) -> tuple[str, tuple[tuple[str, int], ...]]:
    """Steps 1-3 of "How an answer is chosen", each family on its own."""
    groups = [[(a, g.weight(a)) for a in g.addresses if family(a) == version]
              for g in pool.groups]
    groups = [g for g in groups if g]  # a group with no address of the family is skipped
    if not groups:  # "A pool with IPv4 addresses only answers AAAA queries with NODATA",
        return "no address of the family", ()  # whatever its policy and backup hold
    for index, group in enumerate(groups, start=1):  # 1. min_healthy up, or all when smaller
        alive = tuple(p for p in group if p[0] in up)
        if alive and len(alive) >= min(pool.min_healthy, len(group)):
            return f"group {index}", alive
    for index, group in enumerate(groups, start=1):  # 2. degraded: the first with any up
        alive = tuple(p for p in group if p[0] in up)
        if alive:
            return f"degraded group {index}", alive
    return f"all down: {pool.policy}", all_down(pool, groups, version)


def all_down(pool: Pool, groups: list[list[tuple[str, int]]],
             version: int) -> tuple[tuple[str, int], ...]:
    """3. Every address of the family is down: the policy decides."""
    if pool.policy == "serve-all":  # as if every check passed: the first group in full
        return tuple(groups[0])
    if pool.policy == "backup":  # weights belong to groups: each backup address weighs 1
        return tuple((a, 1) for a in pool.backup if family(a) == version)
    return ()  # empty: NODATA


def weighted_order(weights: tuple[int, ...]) -> list[int]:
    """Smooth weighted round robin (as nginx) over weights reduced by their gcd."""
    divisor = math.gcd(*weights)
    reduced = [w // divisor for w in weights]
    total = sum(reduced)
    current = [0] * len(reduced)
    order = []
    for _ in range(min(total, MAX_VARIANTS)):
        current = [c + w for c, w in zip(current, reduced, strict=True)]
        best = max(range(len(current)), key=lambda i: (current[i], -i))  # first of the largest
        current[best] -= total
        order.append(best)
    return order


def variants(picked: tuple[tuple[str, int], ...], max_answers: int) -> list[tuple[str, ...]]:
    """The answers served in turn: one unless more are picked than `max_answers` allows.

    Answer i starts with the i-th address of the weighted order, followed by the next
    distinct addresses of that order (cyclically) until it holds `max_answers`.
    """
    addresses = tuple(a for a, _ in picked)
    if max_answers == 0 or len(addresses) <= max_answers:
        return [addresses]
    order = weighted_order(tuple(w for _, w in picked))
    answers = []
    for start in range(len(order)):
        answer: list[str] = []
        for step in range(len(order)):
            candidate = addresses[order[(start + step) % len(order)]]
            if candidate not in answer:
                answer.append(candidate)
            if len(answer) == max_answers:
                break
        answers.append(tuple(answer))
    return answers


def expected(pool: Pool, up: frozenset[str], version: int) -> list[tuple[str, ...]]:
    """Every answer the pool may serve for this family and health (an empty tuple: NODATA)."""
    return variants(chosen(pool, up, version), pool.max_answers)
