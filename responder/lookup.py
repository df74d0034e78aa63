"""A table generation's reads: the entry that answers a question (`Lookups.find`), as the
fast path and the slow path both look it up, and the SOA records negative answers start with."""

from __future__ import annotations

from collections.abc import Iterator

from healthdns.responder.entry import (
    ANY_IN,
    MAX_LABEL,
    MAX_NAME,
    SLOT_SHIFT,
    ZONE_MASK,
    ZONE_SHIFT,
    Entry,
    NxdomainEntries,
    SoaTemplate,
)
from healthdns.shared import compression


class Lookups:
    """What a question finds in a table (`table.Table` says what each attribute holds)."""

    __slots__ = ()
    answers: dict[bytes, Entry]
    names: dict[bytes, Entry]
    zones: dict[bytes, NxdomainEntries]
    origin_lengths: frozenset[int]
    any_types: tuple[bytes, ...]
    variants: dict[bytes, list[Entry]]
    rotations: dict[bytes, Iterator[Entry]]
    templates: list[SoaTemplate]
    soas: list[bytes]
    soas_signed: list[bytes]

    def find(self, key: bytes) -> Entry | None:
        """The entry answering a question (lower-case name, type, class), None when not ours
        or malformed: what the fast path finds, as the slow path looks it up. A rotating key
        steps to its next variant: each call is an answer sent."""
        found = self.answers.get(key)
        if found is not None:
            return found
        rotation = self.rotations.get(key)
        if rotation is not None:
            return next(rotation)
        return self.any_entry(key[:-4]) if key[-4:] == ANY_IN else self.lookup_miss(key[:-4])

    def any_entry(self, name: bytes) -> Entry | None:
        """The entry for qtype ANY when `answers` holds none for the name: its lowest type's
        (RFC 8482: one RRset), or when it has no type, the entry of a missing type. A name
        whose lowest type rotates has its ANY answer held (`_settle_any`): never derived."""
        answers = self.answers
        for suffix in self.any_types:
            found = answers.get(name + suffix)
            if found is not None:
                return found
        return self.lookup_miss(name)

    def lookup_miss(self, name: bytes) -> Entry | None:
        """The entry for a name with no pre-rendered answer of the asked type; None when the
        name is in none of our zones, or is not a well-formed name (the slow path says FORMERR).

        A name found in `names` or under an origin is well formed by construction; the walk
        checks every label it passes. Linear in the name: only suffixes as long as an origin
        are sliced and looked up, so a name of many short labels costs no copy per label.
        """
        found = self.names.get(name)
        if found is not None:
            return found
        if len(name) > MAX_NAME:
            return None
        first = name[0]
        if first <= MAX_LABEL:  # a random-name flood's: one new label under an origin
            nxdomain = self.zones.get(name[first + 1:])
            if nxdomain is not None:
                return self._nxdomain(nxdomain, len(name))
        if name[-1:] != b"\x00":
            return None
        i, end, lengths = 0, len(name) - 1, self.origin_lengths  # the last byte: the root
        while i < end:
            label = name[i]
            if label > MAX_LABEL:
                return None  # another label type, or a compression pointer: FORMERR
            i += label + 1
            if len(name) - i in lengths:
                nxdomain = self.zones.get(name[i:])
                if nxdomain is not None:
                    return self._nxdomain(nxdomain, len(name))
        return None

    def _nxdomain(self, nxdomain: NxdomainEntries, length: int) -> Entry:
        """A zone's NXDOMAIN entry for a name of `length` octets, its SOA records made."""
        found = nxdomain.entry(length)
        shape, _, _ = found
        self.soa(shape.soa)
        return found

    def zone_of(self, key: bytes) -> int:
        """The zone id a question (lower-case name, type, class) is counted under: the zone
        of the entry that answers it, as the fast and slow paths look it up; 0 when the name
        is in none of our zones or is malformed."""
        found = self._held(key)
        if found is None:
            found = self.find(key)  # not a rotating key: `find` steps nothing
        if found is None:
            return 0
        shape, _, _ = found
        return shape.kind >> ZONE_SHIFT & ZONE_MASK

    def _held(self, key: bytes) -> Entry | None:
        """The entry a key holds without stepping a rotation: a rotating key's variant 0."""
        found = self.answers.get(key)
        if found is None:
            entries = self.variants.get(key)
            return entries[0] if entries is not None else None
        return found

    def soa(self, slot: int) -> int:
        """Make the SOA records of `slot` if they are not yet; return the slot.

        Another thread may ask for the same slot meanwhile: the signed records are set
        first, so that a slot whose plain records are there has both."""
        if slot and not self.soas[slot]:
            template = self.templates[(slot >> SLOT_SHIFT) - 1]
            by = (slot & (1 << SLOT_SHIFT) - 1) - template.apex
            self.soas_signed[slot] = compression.moved(template.signed,
                                                       template.signed_holes, by)
            self.soas[slot] = compression.moved(template.plain, template.plain_holes, by)
        return slot
