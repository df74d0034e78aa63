"""NSEC3 (RFC 5155) with the parameters RFC 9276 asks for: SHA-1, no extra iterations, no salt,
no opt-out. Shared with the responder: the hashing and the NXDOMAIN proof positions."""

from __future__ import annotations

import base64
import hashlib
import struct
from bisect import bisect_right
from collections.abc import Container, Sequence
from typing import TYPE_CHECKING

from healthdns.shared import canonical, lazy

if TYPE_CHECKING:
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
    windows = dns.rdtypes.util.Bitmap.from_rdtypes(types).windows
    bitmap = b"".join(struct.pack(">BB", w, len(b)) + b for w, b in windows)
    return struct.pack(">BBHB", SHA1, 0, 0, 0) + bytes([len(following)]) + following + bitmap


def nxdomain_positions(hashes: Sequence[bytes], names: Container[bytes],
                       name: bytes) -> list[int]:
    """Chain positions of the NSEC3 records proving `name` does not exist (RFC 5155 7.2.2):
    the one matching the closest encloser, the one covering the next closer name, and the one
    covering the wildcard at the closest encloser."""
    encloser = canonical.closest_encloser(names, name)
    next_closer = name
    while True:  # the ancestor of `name` one label below the closest encloser
        parent = next_closer[next_closer[0] + 1:]
        if parent == encloser:
            break
        next_closer = parent
    positions = [bisect_right(hashes, digest(encloser)) - 1,
                 _covering(hashes, digest(next_closer)),
                 _covering(hashes, digest(canonical.wildcard(encloser)))]
    return list(dict.fromkeys(positions))


def _covering(hashes: Sequence[bytes], hashed: bytes) -> int:
    """The record whose hash comes last before `hashed` (the last one covers the wrap)."""
    return (bisect_right(hashes, hashed) - 1) % len(hashes)
