"""The TTL that follows health: the time until an answer could next change, clamped to the
name's range and rounded down to a rung of a small ladder.

Pure functions: no I/O, and time only as the `now` passed in. An answer can change only when
one of the checks that decide it flips its target (or an override ends, or the answer rotates),
so a resolver may keep it that long and miss nothing. For one target that is the checks left
before its state flips, times its interval, less one interval: the first of those checks may run
at once. A hold-down keeps a state until it ends, whatever the checks say. The least of these
over every target of the pool is `T_next`; the served TTL is `clamp(T_next, min, max)` rounded
down to a rung, so that an answer is rendered at a few TTLs only (the ladder), each of which
validates under the one signature made at `max` (RFC 4035 5.3.3).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from healthdns.shared.config import TtlRange


@dataclass(frozen=True, slots=True)
class Decider:
    """One check that decides an answer: its target's state and what is left before it flips."""

    address: str  # what the operator knows it by
    up: bool
    interval: float
    left: int  # checks in a row that flip the state (fall when up, rise when down, less a streak)
    held_until: float = 0.0  # a hold-down keeps the state until then (wall-clock seconds)


def ladder(bounds: TtlRange) -> tuple[int, ...]:
    """The rungs, highest first: `max`, the powers of two between, `min`."""
    low, high = bounds.min, bounds.max
    powers = [1 << k for k in range(high.bit_length()) if low < 1 << k < high]
    return tuple(sorted({high, low, *powers}, reverse=True))


def rung(seconds: float, bounds: TtlRange) -> int:
    """`seconds` clamped to the range, rounded down to a rung of its ladder."""
    clamped = min(max(seconds, bounds.min), bounds.max)
    return next(r for r in ladder(bounds) if r <= clamped)


def until_flip(decider: Decider, now: float) -> float:
    """The earliest the target's state could flip, in seconds from `now`."""
    checks = max(decider.left - 1, 0) * decider.interval
    return max(checks, decider.held_until - now)


def next_change(deciders: Iterable[Decider], now: float, expires: float | None = None,
                rotating: bool = False) -> tuple[float, str]:
    """`T_next` in seconds (inf: nothing can change the answer), and why, in words."""
    if rotating:
        return 0.0, "the answer rotates: each query may get another"
    best, why = math.inf, "nothing checked decides the answer"
    if expires is not None:
        best, why = max(expires - now, 0.0), "an override of the name ends then"
    for decider in deciders:
        seconds = until_flip(decider, now)
        if seconds < best:
            best, why = seconds, _reason(decider, now)
    return best, why


def served(bounds: TtlRange, deciders: Iterable[Decider], now: float,
           expires: float | None = None, rotating: bool = False) -> tuple[int, str]:
    """The TTL to serve, and why: "TTL 32: 192.0.2.10 is 2 failed checks from down"."""
    seconds, why = next_change(deciders, now, expires, rotating)
    ttl = rung(seconds, bounds)
    return ttl, f"TTL {ttl}: {why}"


def _reason(decider: Decider, now: float) -> str:
    if decider.held_until > now and decider.held_until - now >= (decider.left - 1) * \
            decider.interval:
        return (f"{decider.address} is held {'up' if decider.up else 'down'} for "
                f"{decider.held_until - now:.0f} s more")
    plural = "" if decider.left == 1 else "s"
    if decider.up:
        return f"{decider.address} is {decider.left} failed check{plural} from down"
    return f"{decider.address} is {decider.left} passed check{plural} from up"
