"""DNSSEC canonical name order (RFC 4034 6.1) on lower-case wire names.

Shared by the signer, which builds the NSEC chain, and the responder, which finds the NSEC
records that deny a name at query time.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Container, Sequence
from typing import Any


def labels(wire: bytes) -> list[bytes]:
    """The labels of a well-formed uncompressed wire name, root excluded."""
    out = []
    i = 0
    while wire[i]:
        out.append(wire[i + 1:i + 1 + wire[i]])
        i += wire[i] + 1
    return out


def key(wire: bytes) -> tuple[bytes, ...]:
    """A sort key: tuples of labels from the root compare in canonical order.

    The responder makes one per signed NXDOMAIN: one loop, no helper calls (3x `labels`).
    """
    out = []
    i, length = 0, wire[0]
    while length:
        i += 1
        out.append(wire[i:i + length])
        i += length
        length = wire[i]
    out.reverse()
    return tuple(out)


def packed(wire: bytes) -> bytes:
    """`key` as one bytes object, in the same order: the labels from the root joined by
    0x00 0x00, each one's own 0x00 octets (rare, but allowed) escaped as 0x00 0x01, so that
    a label sorts before any longer one it begins. The responder holds one per NSEC owner:
    one object of 56 octets at 10,000 names, where a tuple and its own label took 112."""
    labels = key(wire)
    if wire.find(0) < len(wire) - 1:  # a 0x00 before the root's: inside a label
        labels = tuple(label.replace(b"\x00", b"\x00\x01") for label in labels)
    return b"\x00\x00".join(labels)


def packed_below(ancestor: bytes, wire: bytes, stop: int) -> bytes:
    """`packed(wire)`, given `ancestor`, the packed key of the name at `stop` in `wire` (a
    closest encloser): only the labels before it are read. A random-name flood's name is one
    label under its encloser: one slice, no walk over the labels the encloser already has."""
    if wire.find(0, 0, stop) >= 0:  # a 0x00 inside a label (lengths are never 0 there)
        return packed(wire)
    if wire[0] + 1 == stop:
        below = wire[1:stop]
    else:
        labels = []
        i = 0
        while i < stop:
            labels.append(wire[i + 1:i + 1 + wire[i]])
            i += wire[i] + 1
        labels.reverse()
        below = b"\x00\x00".join(labels)
    return ancestor + b"\x00\x00" + below if ancestor else below


def covering(keys: Sequence[Any], wire: bytes,
             sort_key: Callable[[bytes], Any] = key) -> int:
    """Index of the last owner at or before `wire` in canonical order: its NSEC covers it.

    `keys` is the sorted chain, made by `sort_key` (`key` or `packed`); the apex is first,
    so every name in the zone has one.
    """
    return max(0, bisect_right(keys, sort_key(wire)) - 1)


def closest_encloser(names: Container[bytes], wire: bytes) -> bytes:
    """The longest ancestor of `wire` that exists (RFC 5155 1.3); the apex at the latest."""
    i = 0
    while wire[i]:
        i += wire[i] + 1
        if wire[i:] in names:
            return wire[i:]
    return wire[i:]


def wildcard(wire: bytes) -> bytes:
    return b"\x01*" + wire
