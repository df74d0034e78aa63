"""SOA serial numbers in RFC 1982 arithmetic (SERIAL_BITS = 32)."""

from __future__ import annotations

_HALF = 2**31
_MOD = 2**32


def serial_gt(a: int, b: int) -> bool:
    """True when serial `a` is greater than `b` (RFC 1982 section 3.2)."""
    return (a < b and b - a > _HALF) or (a > b and a - b < _HALF)


def next_serial(previous: int | None, now: float) -> int:
    """The serial after `previous`: the Unix time when that is greater, else previous + 1.

    Using the clock keeps serials increasing across restarts; the +1 fallback keeps them
    increasing when changes come faster than once a second or the clock steps back.
    """
    candidate = int(now) % _MOD
    if previous is None or serial_gt(candidate, previous):
        return candidate
    return (previous + 1) % _MOD
