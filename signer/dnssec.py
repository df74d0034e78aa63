"""Signing RRsets, with a cache so that a health change re-signs only what changed.

Signatures are made here, in advance, for every RRset a health state can serve; responders only
ever hold the RRSIG records, never a key. Inception lies `inception_offset` in the past (clock
skew between us and validators); a signature is renewed once less than `refresh` is left of its
validity, at a moment spread by jitter so that a large zone does not re-sign all at once.
"""

from __future__ import annotations

import functools
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import dns.name

from healthdns.shared import canonical
from healthdns.shared.config import DnssecSpec
from healthdns.signer import keys
from healthdns.signer.keys import Key
from healthdns.signer.zone import octets, wire

DNSKEY, RRSIG, NSEC, CDS, CDNSKEY = 48, 46, 47, 59, 60
RRsetKey = tuple[bytes, int, int, tuple[bytes, ...]]
RENEW = struct.Struct(">d")
LENGTH = struct.Struct(">H")


@dataclass
class ZoneSigner:
    """Signs the RRsets of one zone (or alias zone) with its keys."""

    origin: dns.name.Name
    keys: list[Key]
    spec: DnssecSpec
    now: Callable[[], float]
    rng: random.Random = field(default_factory=random.Random)
    # RRset -> when to renew and its RRSIG rdata, packed (see `_pack`)
    cache: dict[RRsetKey, bytes] = field(default_factory=dict)
    used: set[RRsetKey] = field(default_factory=set)  # signed or reused since the last prune
    # Owners whose answers were served from the render cache since the last prune: their
    # RRsets are the ones they were signed for, so their signatures are still served.
    kept: set[bytes] = field(default_factory=set)
    signed: int = 0  # signatures made, for tests and logs
    # While renewing, every signature due before this time is renewed too: renewals come in
    # batches rather than one generation per signature.
    horizon: float = 0.0
    # The earliest renewal in the cache, or earlier: kept as signatures are made, found
    # again by `prune`, so that asking for it does not unpack the whole cache.
    soonest: float | None = None
    # Under a policy: the keys whose CDS and CDNSKEY the apex carries, published or not
    # (RFC 7344: every KSK or CSK whose DS the parent should hold). None: `spec.cds` decides.
    cds_keys: list[Key] | None = None

    def rrsigs(self, owner: bytes, rdtype: int, ttl: int,
               rdatas: tuple[bytes, ...]) -> tuple[bytes, ...]:
        """RRSIG rdata (wire) over an RRset: by the zone keys, or the key keys for DNSKEY."""
        # One record (most RRsets) is its own order: the caller's tuple, not a copy per key.
        cache_key = (owner, rdtype, ttl, rdatas if len(rdatas) == 1 else tuple(sorted(rdatas)))
        self.used.add(cache_key)
        now = self.now()
        found = self.cache.get(cache_key)
        if found is not None and max(now, self.horizon) < _renewal(found):
            return _unpack(found)
        sigs = self._sign(owner, rdtype, ttl, rdatas, now)
        life = self.spec.validity - self.spec.refresh
        renew = now + life - self.rng.uniform(0, life * 0.1)
        self.cache[cache_key] = _pack(renew, sigs)
        self.soonest = renew if self.soonest is None else min(self.soonest, renew)
        return sigs

    def keep(self, owner: bytes) -> None:
        """`owner`'s answers were served as rendered before: its signatures stay (see `prune`)."""
        self.kept.add(owner)

    def next_renewal(self) -> float | None:
        return self.soonest

    def prune(self) -> None:
        """Drop signatures of RRsets no longer served, so the cache does not grow forever.

        An owner served from the render cache signed nothing this generation, yet its answers
        carry the signatures in the cache: they stay, and fall due for renewal in their turn
        (dropped, they would be served until they expired).
        """
        kept = self.kept
        for stale in self.cache.keys() - self.used:
            if stale[0] not in kept:
                del self.cache[stale]
        self.used, self.kept = set(), set()
        self.soonest = min(map(_renewal, self.cache.values()), default=None)

    def zone_keys(self) -> list[Key]:
        """The keys that sign everything but the key RRsets."""
        return [k for k in self.keys if k.signs_zone]

    def dnskeys(self) -> tuple[bytes, ...]:
        """The DNSKEY RRset: every key but those that sign unpublished (an algorithm roll)."""
        return tuple(octets(k.dnskey) for k in self.keys if not k.hidden)

    def cds_records(self) -> dict[int, tuple[int, tuple[bytes, ...]]]:
        """CDS and CDNSKEY for the key-signing keys, when asked for (RFC 7344, 8078)."""
        if self.cds_keys is not None:
            sep = self.cds_keys
        elif self.spec.cds:
            sep = [k for k in self.keys if k.signs_keys]
        else:
            return {}
        ttl = self.spec.dnskey_ttl
        return {CDNSKEY: (ttl, tuple(octets(k.dnskey) for k in sep)),
                CDS: (ttl, tuple(octets(keys.ds(self.origin, k.dnskey)) for k in sep))}

    def _sign(self, owner: bytes, rdtype: int, ttl: int, rdatas: tuple[bytes, ...],
              now: float) -> tuple[bytes, ...]:
        """RRSIG rdata per RFC 4034 3.1.8.1: the RRSIG fields, then the RRset in canonical
        form and order, signed. Our rdata is already canonical (see `signer.zone`)."""
        key_set = rdtype in (DNSKEY, CDS, CDNSKEY)
        signers = [k for k in self.keys if (k.signs_keys if key_set else k.signs_zone)]
        inception = (int(now) - self.spec.inception_offset) % 2**32
        expiration = (int(now) + self.spec.validity) % 2**32
        rrset = b"".join(owner + struct.pack(">HHIH", rdtype, 1, ttl, len(r)) + r
                         for r in sorted(set(rdatas)))
        labels = len(canonical.labels(owner))
        sigs = []
        for key in signers:
            fields = struct.pack(">HBBIIIH", rdtype, key.dnskey.algorithm, labels, ttl,
                                 expiration, inception, key.tag) + self.signer_name
            sigs.append(fields + key.sign(fields + rrset))
        self.signed += len(signers)
        return tuple(sigs)

    @functools.cached_property
    def signer_name(self) -> bytes:
        return wire(self.origin)


def _pack(renew: float, sigs: tuple[bytes, ...]) -> bytes:
    """When to renew, then each RRSIG rdata after its length: one bytes object per RRset,
    70 bytes less than a tuple holding a float and the rdata (20,000 RRsets at 10,000 names)."""
    return RENEW.pack(renew) + b"".join(LENGTH.pack(len(s)) + s for s in sigs)


def _renewal(packed: bytes) -> float:
    return float(RENEW.unpack_from(packed)[0])


def _unpack(packed: bytes) -> tuple[bytes, ...]:
    sigs = []
    i = RENEW.size
    while i < len(packed):
        (length,) = LENGTH.unpack_from(packed, i)
        i += LENGTH.size
        sigs.append(packed[i:i + length])
        i += length
    return tuple(sigs)
