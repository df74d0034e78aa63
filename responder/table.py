"""The responder's lookup table: built from a snapshot, patched by deltas, swapped in whole.

Each entry holds what the per-query path splices around the question it was sent. A new
generation is always a new `Table` (a delta copies the dicts, then patches the copy), so a query
sees one generation from start to end.

A table is built here (from a snapshot, or from the last one and a delta); what a question
finds in it is in `lookup`, the proofs of a signed NXDOMAIN in `denial`, and what an entry
holds in `entry`.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Iterator, Sequence
from itertools import cycle
from typing import Any

import msgspec

from healthdns.responder.denial import Chain, Denials, Proving
from healthdns.responder.entry import (
    ANY,
    ANY_IN,
    CLASS_IN,
    SLOT_SHIFT,
    Entry,
    KeptNxdomain,
    NxdomainEntries,
    SoaTemplate,
    diverted,
    entry,
    site_key,
    zone_id,
)
from healthdns.responder.lookup import Lookups
from healthdns.shared import canonical
from healthdns.shared.geotable import GeoIndex, GeoTable
from healthdns.shared.messages import Delta, EncodedDelta, EncodedSnapshot, Snapshot, decode_answer
from healthdns.shared.tables import (
    Answer,
    EncodedZoneDelta,
    EncodedZoneTable,
    GeoAnswers,
    ZoneDelta,
    ZoneTable,
)

# A zone's answers by key: decoded (`Snapshot`, `Delta`), or each still encoded as the
# responder receives them (`EncodedSnapshot`, `EncodedDelta`).
Answers = dict[bytes, Answer] | dict[bytes, msgspec.Raw]


def _decoded(answers: Answers) -> Iterator[tuple[bytes, Answer]]:
    """Each key and its answer, decoded.

    An encoded map is emptied as it is read, so that each answer and its key are freed
    before the next entry is made, which takes their place in memory. Read whole, the
    decoded message held 4 MB of keys and encoded answers at 10,000 signed names, and the
    table was laid out beside them: freed at the end, their space stayed between the
    table's objects, kept by the allocator (with the NSEC owners, `_emptied`: 2.8 MiB of
    a responder's memory).
    """
    if not answers or not isinstance(next(iter(answers.values())), msgspec.Raw):
        yield from answers.items()  # type: ignore[misc]
        return
    encoded: dict[bytes, msgspec.Raw] = answers  # type: ignore[assignment]
    while encoded:
        key, raw = encoded.popitem()  # the last first: a name's keys stay together
        yield key, decode_answer(raw)


class GeoKey:
    """A geo key's answers in one generation: the map's index, and per order id the rotation
    of its outcome's entries and the counter key of the site it serves (`entry.site_key`)."""

    __slots__ = ("by_order", "index", "rotates")

    def __init__(self, index: GeoIndex, by_order: list[tuple[Iterator[Entry], int]],
                 rotates: bool) -> None:
        self.index = index
        self.by_order = by_order
        self.rotates = rotates  # an outcome serves answers in turn: never cached


def indexes(maps: dict[str, GeoTable]) -> dict[str, GeoIndex]:
    """The search side of each map of a `messages.Maps`."""
    return {name: GeoIndex(table) for name, table in maps.items()}


def _emptied(items: list[bytes]) -> Iterator[bytes]:
    """The items in order, each dropped from the list once read (see `_decoded`)."""
    items.reverse()
    while items:
        yield items.pop()


class Table(Lookups, Denials):
    """Everything one generation serves, keyed the way queries are looked up.

    ``answers``: lower-case qname wire + qtype + qclass (IN) -> entry (the fast path).
    ``names``: lower-case name wire -> entry for a type the name lacks (NODATA, CNAME chains).
    ``zones``: origin wire -> NXDOMAIN entries; a name under no origin is not ours (REFUSED).
    ``origin_lengths``: the lengths of those origins, the only suffixes worth looking up.
    ``any_types``: every type (+ class IN) of an `answers` key, in type order. A name's ANY
    answer is the entry of its lowest such type (`any_entry`), held in `answers` only where
    it is not (`_settle_any`): an entry per name for qtype ANY cost 1.4 MiB per responder at
    10,000 signed names. ``any_blocked``: the ANY keys held only to stop that derivation
    (the name has no ANY answer of its own: it answers as any missing type does).
    ``soas``/``soas_signed``: by SOA slot, the records negative answers start their authority
    section with. A slot is a zone's index << SLOT_SHIFT | the length of the question name:
    their pointers go to the apex at the end of the question (`compression`). Slot 0 is
    empty (no SOA); the others are made from ``templates`` (by zone index) as entries come
    to use them (b"" until then).
    ``variants``: the answers of each rotating key (a pool with more addresses up than
    `max_answers`, or a CNAME that leads to one), variant 0 first; ``rotations``: per rotating
    key, the cycle through them that answering steps (`find`, `Answerer._lookup`). A rotating
    key is not in `answers` once the table is made: a lookup there misses, and the miss path
    takes the key's next variant, so the names that do not rotate pay nothing for rotation.
    """

    __slots__ = (
        "answers",
        "any_blocked",
        "any_types",
        "cache",
        "cache_size",
        "chains",
        "enclosers",
        "generation",
        "geo",
        "maps",
        "names",
        "nxdomains",
        "origin_lengths",
        "rotations",
        "seen",
        "soas",
        "soas_signed",
        "templates",
        "turning",
        "variants",
        "zones",
    )

    def __init__(self, snapshot: Snapshot | EncodedSnapshot, cache_size: int = 0,
                 maps: dict[str, GeoIndex] | None = None) -> None:
        # query bytes but the ID -> (response but the ID, its counter key by transport)
        self.cache: dict[bytes, tuple[bytes, tuple[int, ...]]] = {}
        self.cache_size = cache_size
        # hashes of queries missed once: the cache admits a query on its second miss
        self.seen: set[int] = set()
        # queries (bytes but the ID) for rotating keys: the cache never keeps their answers
        self.turning: set[bytes] = set()
        # NXDOMAIN answers by the query bytes but the ID and the first label's octets
        self.nxdomains: dict[bytes, KeptNxdomain] = {}
        self.generation = snapshot.generation
        self._soas_of(snapshot.zones)
        self.answers: dict[bytes, Entry] = {}
        self.any_types: tuple[bytes, ...] = ()
        self.any_blocked: set[bytes] = set()
        self.names: dict[bytes, Entry] = {}
        self.zones: dict[bytes, NxdomainEntries] = {}
        self.chains: dict[bytes, Chain] = {}
        self.variants: dict[bytes, list[Entry]] = {}
        self.rotations: dict[bytes, Iterator[Entry]] = {}
        # closest encloser -> what its NXDOMAIN proofs share: bounded by the names that exist.
        self.enclosers: dict[bytes, Proving] = {}
        self.maps = maps or {}  # the location maps (`messages.Maps`), by name
        self.geo: dict[bytes, GeoKey] = {}
        bodies: dict[bytes, bytes] = {}  # equal bodies, one object each
        zones: Sequence[ZoneTable | EncodedZoneTable] = snapshot.zones
        zone_answers, blocked = self._derive_any(zones)
        for index, zone in enumerate(zones, start=1):
            ids = (index, zone_id(zone.origin))
            self._put(ids, zone_answers[index - 1], zone.names, bodies)
            self._put_variants(ids, zone.variants, bodies)
            _put_geo(self, ids, zone.geo, bodies)
            self.zones[zone.origin] = NxdomainEntries(zone.nxdomain, ids, bool(zone.chain))
            if zone.chain:
                # An encoded zone is the responder's own: its owners go as their keys come.
                owners = _emptied(zone.chain) if isinstance(zone, EncodedZoneTable) \
                    else zone.chain
                keys = list(zone.chain) if zone.nsec3 else [canonical.packed(o)
                                                            for o in owners]
                self.chains[zone.origin] = (keys, list(zone.proofs), zone.nsec3,
                                            *self._proofs_at(zone, zone.nxdomain))
        self.origin_lengths = frozenset(len(origin) for origin in self.zones)
        self._settle_any(dict.fromkeys([name + ANY for name in blocked]))
        self._start_rotations()

    def _soas_of(self, zones: Sequence[ZoneTable | EncodedZoneTable | ZoneDelta
                                       | EncodedZoneDelta]) -> None:
        """This generation's SOA templates, and their slots, none made yet."""
        self.templates = [SoaTemplate.of(z) for z in zones]
        slots = (len(zones) + 1) << SLOT_SHIFT
        self.soas, self.soas_signed = [b""] * slots, [b""] * slots

    def _proofs_at(self, zone: ZoneTable | ZoneDelta | EncodedZoneTable | EncodedZoneDelta,
                   nxdomain: Answer) -> tuple[int, int]:
        """Where a zone's NXDOMAIN proofs go: the apex's length, and how far after the
        question (after the signed SOA records and the NXDOMAIN's own records)."""
        signed = nxdomain.signed or nxdomain
        return len(zone.origin), len(zone.soa_signed) + len(signed.body)

    def _derive_any(self, zones: Sequence[ZoneTable | EncodedZoneTable]
                    ) -> tuple[list[Answers], list[bytes]]:
        """Each zone's answers without the ANY keys `any_entry` derives, and the names that
        have no ANY answer but would derive one (`_settle_any` holds theirs).

        Done on the message before the table is made: an encoded message's dropped keys are
        freed before any entry is laid out (held until the end, they left 0.4 MiB of holes
        between the table's objects). A decoded one, the caller's, is copied, not changed.
        """
        # A later zone's key wins.
        every: ChainMap[bytes, Any] = ChainMap(*(z.answers for z in reversed(zones)))
        rotating = ChainMap(*(z.variants for z in zones))
        self.any_types = tuple(sorted(set(self.any_types) | {
            key[-2:] + CLASS_IN for key in every if not key.endswith(ANY)}))
        suffixes = [t[:2] for t in self.any_types]
        dropped = []
        for key in every:
            if key.endswith(ANY):
                name = key[:-2]
                source = next((name + t for t in suffixes if name + t in every), None)
                if source is not None and source not in rotating and every[source] == every[key]:
                    dropped.append(key)
        # Names with a type but no ANY answer (CNAME owners: they answer the chain).
        blocked = [name for name in dict.fromkeys(key[:-2] for key in every)
                   if name + ANY not in every]
        out: list[Answers] = []
        for zone in zones:
            answers: Answers = zone.answers
            if not isinstance(zone, EncodedZoneTable):
                answers = dict(zone.answers)
            for key in dropped:
                answers.pop(key, None)
            out.append(answers)
        return out, blocked

    def apply(self, delta: Delta | EncodedDelta, maps: dict[str, GeoIndex] | None = None
              ) -> Table:
        """The next generation: a copy of this one with the delta's changes (and `maps`, when
        a `messages.Maps` came since)."""
        new = Table.__new__(Table)
        new.cache, new.cache_size, new.seen, new.nxdomains = {}, self.cache_size, set(), {}
        new.turning = set()
        new.generation = delta.generation
        new._soas_of(delta.zones)
        for slot, made in enumerate(self.soas):  # the slots entries of this one use
            if made:
                new.soa(slot)
        new.answers, new.names = self.answers.copy(), self.names.copy()
        new.any_types, new.any_blocked = self.any_types, set(self.any_blocked)
        # A rotating key's own answer is variant 0, held aside while it rotates. The delta
        # brings each zone's whole rotation set, so the set is rebuilt, never kept: a pool
        # that stopped rotating must not go on serving its old variants.
        for key, entries in self.variants.items():
            new.answers[key] = entries[0]
        new.zones, new.variants = self.zones, {}
        new.origin_lengths = self.origin_lengths
        new.chains, new.enclosers = dict(self.chains), {}
        new.maps, new.geo = self.maps if maps is None else maps, {}
        bodies: dict[bytes, bytes] = {}
        wanted: dict[bytes, Entry | None] = {}  # settled once every zone is in
        zones: Sequence[ZoneDelta | EncodedZoneDelta] = delta.zones
        for index, zone in enumerate(zones, start=1):
            for key, before in self._any_before(zone).items():
                wanted.setdefault(key, before)
            for key in zone.removed_answers:
                if key.endswith(ANY):  # whatever an earlier zone of the delta gave it
                    wanted[key] = None
            for key in zone.removed_answers:
                new.answers.pop(key + CLASS_IN, None)
            for name in zone.removed_names:
                new.names.pop(name, None)
            ids = (index, zone_id(zone.origin))
            new._put(ids, zone.answers, zone.names, bodies, wanted)
            new._put_variants(ids, zone.variants, bodies)
            _put_geo(new, ids, zone.geo, bodies)
            chain = new.chains.get(zone.origin)
            if chain is not None:
                keys, proofs, hashed, _, _ = chain
                if zone.proofs:
                    proofs = list(proofs)
                    for position, proof in zone.proofs.items():
                        proofs[position] = proof
                new.chains[zone.origin] = (keys, proofs, hashed, *new._proofs_at(
                    zone, new.zones[zone.origin].answer))
        new._settle_any(wanted)
        new._start_rotations()
        return new

    def _start_rotations(self) -> None:
        """Hold each rotating key's answers in `variants` only (see the class), and start its
        rotation at variant 0: a new generation starts every rotation again."""
        for key in self.variants:
            self.answers.pop(key, None)
        self.rotations = {key: cycle(entries) for key, entries in self.variants.items()}

    def _put(self, ids: tuple[int, int], answers: Answers, names: Answers,
             bodies: dict[bytes, bytes], wanted: dict[bytes, Entry | None] | None = None
             ) -> None:
        """Add a zone's entries; `ids`: its index in this generation, its zone id.

        With `wanted` (a delta's: every name it touches is there, see `_any_before`), ANY
        keys are not put but go there, each with its entry, for `_settle_any`.
        """
        index, zone = ids
        owner, kept = b"", list[Entry]()  # the entries of the name being added (keys by name)
        types = set(self.any_types)
        slots = index << SLOT_SHIFT
        for key, answer in _decoded(answers):
            slot = self.soa(slots | len(key) - 2) if answer.soa else 0
            made = entry(answer, slot, zone, False, bodies)
            if not (len(key) - 2 == len(owner) and key.startswith(owner)):
                owner, kept = key[:-2], []
            # An ANY answer is its name's lowest type's: one tuple for both, not two.
            found = next((e for e in kept if e == made), None)
            if found is None:
                kept.append(made)
            if not key.endswith(ANY):
                types.add(key[-2:] + CLASS_IN)
            elif wanted is not None:
                wanted[key] = found or made
                continue
            self.answers[key + CLASS_IN] = found or made
        self.any_types = tuple(sorted(types))  # big-endian: octet order is type order
        for name, answer in _decoded(names):
            self.names[name] = entry(answer, self.soa(slots | len(name)) if answer.soa else 0,
                                     zone, False, bodies)

    def _put_variants(self, ids: tuple[int, int], variants: dict[bytes, list[Answer]],
                      bodies: dict[bytes, bytes]) -> None:
        index, zone = ids
        for key, answers in variants.items():
            slot = index << SLOT_SHIFT | len(key) - 2
            self.variants[key + CLASS_IN] = [
                entry(a, self.soa(slot) if a.soa else 0, zone, False, bodies) for a in answers]

    def _any_before(self, zone: ZoneDelta | EncodedZoneDelta) -> dict[bytes, Entry | None]:
        """The ANY answer (None: none of its own) this generation gives each name the delta
        touches: what the next keeps unless the delta gives or removes one."""
        owners = [key[:-2] for key in (*zone.answers, *zone.variants)]
        owners += [key[:-4] for key in self.variants]  # may stop rotating: derived again
        owners += [key[:-2] for key in zone.removed_answers if not key.endswith(ANY)]
        owners += [*zone.names, *zone.removed_names]
        before: dict[bytes, Entry | None] = {}
        for name in owners:
            key = name + ANY
            if key not in before:
                blocked = key + CLASS_IN in self.any_blocked
                before[key] = None if blocked else self._own_any(name)
        return before

    def _own_any(self, name: bytes) -> Entry | None:
        """The name's ANY answer, held or derived; None when it has none (nor any type)."""
        found = self.answers.get(name + ANY_IN)
        if found is not None:
            return found
        source = self._any_source(name)
        return None if source is None else self._held(source)

    def _any_source(self, name: bytes) -> bytes | None:
        """The key of the name's lowest type, the one an ANY answer is derived from."""
        answers, variants = self.answers, self.variants
        for suffix in self.any_types:
            key = name + suffix
            if key in answers or key in variants:
                return key
        return None

    def _settle_any(self, wanted: dict[bytes, Entry | None]) -> None:
        """Hold each ANY answer in `answers` only where `any_entry` would not derive it:
        another entry than the lowest type's, a lowest type that rotates (its ANY answer
        stays variant 0), or no ANY answer at all (held: the entry a missing type gets)."""
        for key, want in wanted.items():
            stored, name = key + CLASS_IN, key[:-2]
            self.answers.pop(stored, None)
            self.any_blocked.discard(stored)
            source = self._any_source(name)
            if want is None:
                held = self.lookup_miss(name) if source is not None else None
                if held is not None:
                    self.answers[stored] = held
                    self.any_blocked.add(stored)
            elif source is None or source in self.variants or self._held(source) != want:
                self.answers[stored] = want


def _put_geo(table: Table, ids: tuple[int, int], geo: dict[bytes, GeoAnswers],
             bodies: dict[bytes, bytes]) -> None:
    """Add a zone's geo keys (a delta brings the zone's whole set): each outcome's
    entries, and the key's entry in `answers` diverted, so that the fast path, finding
    it, asks `geo` (a key whose map this table lacks answers its default)."""
    index, zone = ids
    for key, answers in geo.items():
        found = table.maps.get(answers.map)
        held = table.answers.get(key + CLASS_IN)
        if found is None or held is None:
            continue
        slot = index << SLOT_SHIFT | len(key) - 2
        outcomes = [(cycle([entry(a, table.soa(slot) if a.soa else 0, zone, False, bodies,
                                  site_key(zone, site)) for a in rotation]),
                     site_key(zone, site))
                    for rotation, site in zip(answers.answers, answers.sites, strict=True)]
        table.geo[key + CLASS_IN] = GeoKey(found, [outcomes[i] for i in answers.by_order],
                                          any(len(r) > 1 for r in answers.answers))
        table.answers[key + CLASS_IN] = diverted(held)
