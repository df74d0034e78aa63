"""NSEC3 (RFC 5155) with the parameters RFC 9276 asks for: SHA-1, no extra iterations, no salt,
no opt-out. Shared with the responder: the hashing and the NXDOMAIN proof positions."""

from __future__ import annotations

import base64
import hashlib
import struct
from bisect import bisect_right
from collections.abc import Container, Sequence
from typing import TYPE_CHECKING, cast

from healthdns.shared import canonical, lazy

if TYPE_CHECKING:
    import dns.rdatatype
    import dns.rdtypes.util
else:  # only the signer renders NSEC3 records; a responder only hashes (shared/lazy.py)
    lazy.module("dns.rdtypes.util")
    dns = lazy.module("dns")

NSEC3, NSEC3PARAM = 50, 51
SHA1 = 1
PARAM = struct.pack(">BBHB", SHA1, 0, 0, 0)  # algorithm, flags, iterations, salt length


def digest(name: bytes) -> bytes:
    """The hash of a lower-case wire name (RFC 5155 5, zero iterations, empty salt)."""
    return hashlib.sha1(name).digest()


def owner(hashed: bytes, apex: bytes) -> bytes:
    label = base64.b32hexencode(hashed).lower()
    return bytes([len(label)]) + label + apex


def rdata(following: bytes, types: list[int]) -> bytes:
    return struct.pack(">BBHB", SHA1, 0, 0, 0) + bytes([len(following)]) + following \
        + type_bitmaps(types)


def type_bitmaps(types: list[int]) -> bytes:
    """The Type Bit Maps field of NSEC and NSEC3 records (RFC 4034 4.1.2, RFC 5155 3.2.1)."""
    # dnspython takes the types as ints (its RdataType is an IntEnum) but annotates enums.
    rdtypes = cast("list[dns.rdatatype.RdataType]", types)
    windows = dns.rdtypes.util.Bitmap.from_rdtypes(rdtypes).windows
    return b"".join(struct.pack(">BB", w, len(b)) + b for w, b in windows)


def nxdomain_positions(hashes: Sequence[bytes], names: Container[bytes],
                       name: bytes) -> list[int]:
    """Chain positions of the NSEC3 records proving `name` does not exist (RFC 5155 7.2.2):
    the one matching the closest encloser, the one covering the next closer name, and the one
    covering the wildcard at the closest encloser."""
    encloser = canonical.closest_encloser(names, name)
    match, wild = encloser_positions(hashes, encloser)
    return list(dict.fromkeys((match, next_closer_position(hashes, name, encloser), wild)))


def encloser_positions(hashes: Sequence[bytes], encloser: bytes) -> tuple[int, int]:
    """The positions that depend only on the closest encloser: the record matching it and the
    one covering its wildcard. The responder keeps them per encloser: one hash per query left."""
    return (bisect_right(hashes, digest(encloser)) - 1,
            _covering(hashes, digest(canonical.wildcard(encloser))))


def next_closer_position(hashes: Sequence[bytes], name: bytes, encloser: bytes) -> int:
    """The position of the record covering the next closer name: the ancestor of `name` (or
    `name` itself) one label below its closest encloser `encloser`."""
    next_closer = name
    while True:
        parent = next_closer[next_closer[0] + 1:]
        if parent == encloser:
            return _covering(hashes, digest(next_closer))
        next_closer = parent


def _covering(hashes: Sequence[bytes], hashed: bytes) -> int:
    """The record whose hash comes last before `hashed` (the last one covers the wrap)."""
    return (bisect_right(hashes, hashed) - 1) % len(hashes)
