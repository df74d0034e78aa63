"""The zones a secondary transfers, and a bounded journal of their recent changes (IXFR).

The transfer process holds every zone's records at the latest generation the signer
published (`Store`): a full `Records` replaces them, a `RecordsDelta` patches them when it
follows the generation held (otherwise it is ignored: the supervisor sends the full `Records`
to a transfer process that starts). Each change of a zone's serial leaves a `Diff` in that
zone's journal: the RRs deleted and added, compared RR by RR over the owners that changed.

Zone states are never changed in place: a new generation makes new `ZoneState`s, so an AXFR
that is still being written keeps the one serial it started with.

An IXFR for the client's serial S is answered (RFC 1995 4):
* S is the current serial, or newer: the current SOA alone (the client is up to date);
* S is the old serial of a journalled diff: each diff from S on, in order, as SOA old,
  deleted RRs, SOA new, added RRs, between two copies of the current SOA;
* otherwise (S is older than the journal, or was never published): the whole zone, as AXFR.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field

from healthdns.shared import messages

log = logging.getLogger("healthdns.transfer")

# The answer sections of an AXFR's messages (owner names compressed), each with its RR count.
Sections = list[tuple[bytes, int]]
PACKED_KEPT = 2  # question lengths whose packed sections a zone state keeps

# One owner's RRs, each cut after its owner name: the owner's labels above the origin (or the
# whole owner, root label included, when it is not under the origin: written in full), whether
# it is under it, the cut RRs, and their length.
Group = tuple[bytes, bool, list[bytes], int]


@dataclass(frozen=True)
class Diff:
    """One serial change: what a secondary at `old` deletes and adds to reach `new`."""

    old: int
    new: int
    old_soa: bytes
    new_soa: bytes
    deleted: tuple[bytes, ...]
    added: tuple[bytes, ...]


@dataclass(frozen=True)
class ZoneState:
    """One zone at one serial, never changed once made."""

    origin: bytes  # lower-case wire name
    serial: int
    soa: bytes
    owners: dict[bytes, list[bytes]]
    journal: tuple[Diff, ...] = ()  # oldest first, at most `Store.limit`
    # The AXFR's packed answer sections by question length (`transfer.pack_axfr`): they
    # depend on nothing else, and this state never changes, so every AXFR after the first
    # writes only headers. The question is the zone's name, so one length is the rule.
    packed: dict[int, Sections] = field(default_factory=dict, compare=False, repr=False)

    def records(self) -> list[bytes]:
        """Every RR but the SOA, owner by owner."""
        return [rr for rrs in self.owners.values() for rr in rrs]

    def ixfr(self, serial: int) -> list[bytes] | None:
        """The RRs of the IXFR reply to a client at `serial` (RFC 1995 4), or None when the
        journal cannot bring it up to date and the whole zone must be sent (AXFR style)."""
        if serial == self.serial or _newer(serial, self.serial):
            return [self.soa]
        start = next((i for i, d in enumerate(self.journal) if d.old == serial), None)
        if start is None:
            return None
        out = [self.soa]
        for diff in self.journal[start:]:
            out += (diff.old_soa, *diff.deleted, diff.new_soa, *diff.added)
        out.append(self.soa)
        return out

    def axfr(self) -> list[bytes]:
        """The RRs of an AXFR (RFC 5936 2.2): the SOA, every other RR, the SOA again."""
        return [self.soa, *self.records(), self.soa]

    @functools.cached_property
    def groups(self) -> list[Group]:
        """The AXFR's RRs between the two SOAs, owner by owner, cut for owner-name compression
        (`transfer.pack_axfr`); made at the first AXFR of this state, kept for the next."""
        origin, cut = self.origin, len(self.origin)
        out: list[Group] = []
        for owner, rrs in self.owners.items():
            if not rrs:
                continue
            n = len(owner)
            tails = [rr[n:] for rr in rrs]
            under = owner.endswith(origin)
            out.append((owner[:-cut] if under else owner, under, tails,
                        sum(map(len, rrs)) - n * len(rrs)))
        return out

    def keep(self, length: int, sections: Sections) -> None:
        """Keep the packed sections for questions of `length` octets, dropping the oldest
        length kept when there are more than PACKED_KEPT: each is a whole zone's size."""
        self.packed[length] = sections
        for old in list(self.packed)[:-PACKED_KEPT]:
            del self.packed[old]


@dataclass
class Store:
    """Every zone's current state, at `generation`; `limit` diffs kept per zone."""

    limit: int
    generation: int = 0  # 0: nothing held yet
    zones: dict[bytes, ZoneState] = field(default_factory=dict)

    def load(self, records: messages.Records) -> list[ZoneState]:
        """Take a full generation; returns the zones whose serial changed (to NOTIFY).

        A zone already held keeps its journal, with the diff to this generation added, so a
        full `Records` (after a signer restart, say) costs the secondaries no AXFR.
        """
        zones: dict[bytes, ZoneState] = {}
        changed: list[ZoneState] = []
        for zone in records.zones:
            old = self.zones.get(zone.origin)
            state = ZoneState(zone.origin, zone.serial, zone.soa, dict(zone.owners))
            if old is not None:
                state = self._follow(old, state, zone.owners, list(old.owners))
            zones[zone.origin] = state
            if old is None or old.serial != state.serial:
                changed.append(state)
        self.zones, self.generation = zones, records.generation
        return changed

    def apply(self, delta: messages.RecordsDelta) -> list[ZoneState] | None:
        """Patch the held generation; None (and nothing changed) when the delta does not
        follow it: the full `Records` is needed instead."""
        if self.generation == 0 or delta.base != self.generation:
            return None
        zones = dict(self.zones)
        changed: list[ZoneState] = []
        for zone in delta.zones:
            old = zones.get(zone.origin)
            if old is None:  # a delta never adds a zone: the full Records does
                log.error("a records delta names zone %r, which is not held; ignored",
                          zone.origin)
                return None
            owners = dict(old.owners)
            for owner in zone.removed:
                owners.pop(owner, None)
            owners.update(zone.owners)
            state = ZoneState(zone.origin, zone.serial, zone.soa, owners)
            state = self._follow(old, state, zone.owners, zone.removed)
            zones[zone.origin] = state
            if old.serial != state.serial:
                changed.append(state)
        self.zones, self.generation = zones, delta.generation
        return changed

    def _follow(self, old: ZoneState, new: ZoneState, touched: dict[bytes, list[bytes]],
                gone: list[bytes]) -> ZoneState:
        """`new` with `old`'s journal and, when the serial changed, the diff from `old`."""
        journal = old.journal
        if old.serial != new.serial:
            deleted, added = _compare(old.owners, touched, gone)
            journal = (*journal, Diff(old.serial, new.serial, old.soa, new.soa, deleted, added))
        elif old.owners != new.owners:
            # New records under the same serial: a secondary could never follow them. The
            # signer gives every change a new serial; if it ever did not, IXFR from any
            # journalled serial would be wrong, so the journal is dropped (AXFR for all).
            log.error("zone %r changed without a new serial (%d); IXFR journal dropped",
                      new.origin, new.serial)
            journal = ()
        kept = journal[-self.limit:] if self.limit else ()
        return ZoneState(new.origin, new.serial, new.soa, new.owners, kept)


def _compare(old: dict[bytes, list[bytes]], touched: dict[bytes, list[bytes]],
             gone: list[bytes]) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """RRs deleted and added: each touched owner's old RRs against its new ones, and every
    RR of the owners that are gone (or not in `touched`, for `gone` is every old owner when
    a full generation is compared)."""
    deleted: list[bytes] = []
    added: list[bytes] = []
    for owner in gone:
        if owner not in touched:
            deleted += old.get(owner, ())
    for owner, rrs in touched.items():
        before = old.get(owner, [])
        if before == rrs:
            continue
        had, has = set(before), set(rrs)
        deleted += (rr for rr in before if rr not in has)
        added += (rr for rr in rrs if rr not in had)
    return tuple(deleted), tuple(added)


def _newer(a: int, b: int) -> bool:
    """Whether serial `a` is after `b` in serial number arithmetic (RFC 1982)."""
    return a != b and ((a - b) & 0xFFFFFFFF) < 0x80000000
