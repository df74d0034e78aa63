"""The responder's lookup table: built from a snapshot, patched by deltas, swapped in whole.

Each entry holds what the per-query path splices around the question it was sent. A new
generation is always a new `Table` (a delta copies the dicts, then patches the copy), so a query
sees one generation from start to end.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections import ChainMap
from collections.abc import Iterator, Sequence
from itertools import cycle
from typing import Any, NamedTuple

import msgspec

from healthdns.shared import canonical, compression, nsec3
from healthdns.shared.messages import (
    Answer,
    Delta,
    EncodedDelta,
    EncodedSnapshot,
    EncodedZoneDelta,
    EncodedZoneTable,
    Snapshot,
    ZoneDelta,
    ZoneTable,
    decode_answer,
)

# What the entries of one kind of answer share, one tuple for them all: (flags, flag map,
#  counts, counts with our OPT, counts with OPT for DO=1, (an, ns, ar) when NXDOMAIN proofs
#  are added per query, the slot of the SOA records to put first in the authority section
#  (0: none; see `Table.soas`), the counter key of its answers but the query's type and
#  transport: zone id << ZONE_SHIFT | rcode << RCODE_SHIFT, see `query.Answerer`). A zone has
#  a few dozen per length of its names.
Shape = tuple[int, dict[bytes, bytes], bytes, bytes, bytes, tuple[int, int, int] | None, int, int]
# (shape, body, body for DO=1): three slots per entry, not ten (at 10,000 signed names,
# 30,000 entries of 64 octets instead of 120; all but the bodies repeat from entry to entry).
Entry = tuple[Shape, bytes, bytes]
CLASS_IN = b"\x00\x01"
ANY = b"\x00\xff"  # qtype ANY (RFC 8482: answered with one RRset of the name)
ANY_IN = ANY + CLASS_IN
MAX_NAME = 255  # octets in a name, the root label included (RFC 1035 3.1)
MAX_LABEL = 63  # octets in a label; 0x40 and 0x80 set mean other label types (RFC 6891 5)
_flag_maps: dict[int, dict[bytes, bytes]] = {}
_shared_counts: dict[bytes, bytes] = {}  # bounded: counts are small numbers (MAX_ANSWERS)
# Shapes by what makes them but the flag map (a dict: unhashable, and made from the flags).
# Bounded: zones times SOA indexes times the distinct counts (small numbers, MAX_ANSWERS).
_shapes: dict[tuple[Any, ...], Shape] = {}
_COUNTS = struct.Struct(">HHHH").pack  # header counts; made per signed NXDOMAIN (`denial`)
# Counter keys (see `Answerer`): transport in bits 0-1, rcode in 2-5, qtype in 6-21, zone id above.
RCODE_SHIFT, QTYPE_SHIFT, ZONE_SHIFT = 2, 6, 22
# Zone origins (wire) by id, and ids by origin: interned for the life of the process, never
# reused, so a counter keyed by id means the same zone whatever generation it was made under
# (a reload may add, drop or reorder zones). Id 0: no zone of ours. Bounded by the zones
# ever configured, like `_flag_maps` by the distinct flags.
_zone_origins: list[bytes] = [b""]
_zone_ids: dict[bytes, int] = {}
# A zone's denial chain (NSEC `canonical.packed` keys or NSEC3 hashes), its proofs by chain
# position (templates, see `compression.place`), whether it is NSEC3, and where the proofs
# start: the apex's length and the octets between the question and them.
Chain = tuple[list[Any], list[bytes], bool, int, int]
# A zone's chain, and what a closest encloser always needs (see `Table.denial`): NSEC3, the
# positions matching it and covering its wildcard; NSEC, the position covering its wildcard,
# its packed key (the start of every name's below it), the encloser itself and the lengths of
# its suffixes (an NSEC owner's labels that end it are written as a pointer into the
# question), and how much of the wildcard's NSEC owner is written. Then the records those
# positions give, as placed for the last length of question name (`Table._placed`).
Proving = tuple[list[Any], list[bytes], bool, int, int, tuple[Any, ...],
                list[tuple[int, bytes]]]
SLOT_SHIFT = 8  # an SOA slot: the zone's index << SLOT_SHIFT | the question name's length
# An NXDOMAIN kept for every name one label under the same parent, by the query bytes but the
# ID and that label's octets (see `query.Answerer._remember_nxdomain`): (the response's flags
# and counts, or with DNSSEC its flags alone; the response after the label, or with DNSSEC up
# to the proofs; the parent (lower-case wire); the longest label the name and answer have room
# for; counter key by transport; with DNSSEC the counts `Table.denial` adds to, our OPT record
# and the longest answer the client takes; the label it last answered, in a list of one).
Nxdomain = tuple[bytes, bytes, bytes, int, tuple[int, ...], tuple[int, int, int] | None,
                 bytes, int, list[bytes]]


def flag_map(flags: int) -> dict[bytes, bytes]:
    """Query flag bytes -> response flag bytes, for the query flags the fast path takes.

    A standard query (QR=0, opcode QUERY, AA=TC=Z=0, NOERROR) may set RD, AD and CD; the
    response copies RD and CD (RFC 1035 4.1.1, RFC 6840 5.9). Any other query flags miss the
    map and take the slow path. One map per distinct response flags value, shared by entries.
    """
    found = _flag_maps.get(flags)
    if found is None:
        found = {}
        for rd in (0, 0x01):
            for low in (0x00, 0x10, 0x20, 0x30):
                reply = flags | rd << 8 | (low & 0x10)
                found[bytes((rd, low))] = reply.to_bytes(2, "big")
        _flag_maps[flags] = found
    return found


def _counts(an: int, ns: int, ar: int) -> bytes:
    """QDCOUNT 1 and these counts, one shared object per distinct value: a table holds a few
    distinct values three times per entry (4.8 MB of 27 at 10,000 signed names, unshared)."""
    packed = struct.pack(">HHHH", 1, an, ns, ar)
    return _shared_counts.setdefault(packed, packed)


def zone_id(origin: bytes) -> int:
    """The process-wide id of a zone origin (lower-case wire), given on first sight."""
    found = _zone_ids.get(origin)
    if found is None:
        found = _zone_ids[origin] = len(_zone_origins)
        _zone_origins.append(origin)
    return found


def zone_origin(zone: int) -> bytes:
    """The origin (wire) of a zone id; b"" for 0, no zone of ours."""
    return _zone_origins[zone]


def entry(answer: Answer, soa_index: int, zone: int, proved: bool = False,
          bodies: dict[bytes, bytes] | None = None) -> Entry:
    """What the query path splices; `soa_index`: the SOA slot of a negative answer (see
    `Table.soas`); `proved`: NSEC proofs are added per query (NXDOMAIN).

    With `bodies` (one dict per table build), equal bodies are one object: a snapshot
    decodes each as its own bytes, though at 10,000 signed names 40,000 of 80,000 repeat
    another (an ANY answer is its lowest type's, equal addresses give equal records).
    """
    # QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT: without and with our OPT record.
    counts = _counts(answer.ancount, answer.nscount, answer.arcount)
    counts_opt = _counts(answer.ancount, answer.nscount, answer.arcount + 1)
    soa = soa_index if answer.soa else 0
    signed = answer.signed or answer
    counts_do = _counts(signed.ancount, signed.nscount, signed.arcount + 1)
    base = (signed.ancount, signed.nscount, signed.arcount) if proved else None
    # The rcode is known per entry, so the fast path adds only the qtype and transport.
    kind = zone << ZONE_SHIFT | (answer.flags & 0x0F) << RCODE_SHIFT
    made = (answer.flags, counts, counts_opt, counts_do, base, soa, kind)
    shape = _shapes.get(made)
    if shape is None:
        shape = _shapes[made] = (answer.flags, flag_map(answer.flags), counts, counts_opt,
                                 counts_do, base, soa, kind)
    body, signed_body = answer.body, signed.body
    if bodies is not None:
        body = bodies.setdefault(body, body)
        signed_body = bodies.setdefault(signed_body, signed_body)
    return (shape, body, signed_body)


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


class SoaTemplate(NamedTuple):
    """A zone's SOA records as the signer renders them, for the apex as the question
    (`compression`), and where their pointers are."""

    apex: int  # the apex's length: the question length they are written for
    plain: bytes
    plain_holes: list[int]
    signed: bytes  # the same, then the RRSIGs
    signed_holes: list[int]

    @classmethod
    def of(cls, zone: ZoneTable | EncodedZoneTable | ZoneDelta | EncodedZoneDelta
           ) -> SoaTemplate:
        return cls(len(zone.origin), zone.soa, compression.holes(zone.soa), zone.soa_signed,
                   compression.holes(zone.soa_signed))


class NxdomainEntries:
    """A zone's NXDOMAIN entries, one per length of question name (the SOA records' pointers
    differ), each made when first asked for. Kept from generation to generation (the SOA
    records they put first are the generation's, `Table.soas`)."""

    __slots__ = ("answer", "by_length", "ids", "proved")

    def __init__(self, answer: Answer, ids: tuple[int, int], proved: bool) -> None:
        self.answer, self.ids, self.proved = answer, ids, proved
        self.by_length: list[Entry | None] = [None] * (MAX_NAME + 1)

    def entry(self, length: int) -> Entry:
        found = self.by_length[length]
        if found is None:
            index, zone = self.ids
            found = self.by_length[length] = entry(
                self.answer, index << SLOT_SHIFT | length, zone, self.proved)
        return found

    def made(self) -> list[Entry]:
        return [e for e in self.by_length if e is not None]


def _suffix_lengths(name: bytes) -> Iterator[int]:
    """The length of each suffix of a wire name, the name's own first."""
    i = 0
    while i < len(name):
        yield len(name) - i
        i += name[i] + 1


def _emptied(items: list[bytes]) -> Iterator[bytes]:
    """The items in order, each dropped from the list once read (see `_decoded`)."""
    items.reverse()
    while items:
        yield items.pop()


class Table:
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

    def __init__(self, snapshot: Snapshot | EncodedSnapshot, cache_size: int = 0) -> None:
        # query bytes but the ID -> (response but the ID, its counter key by transport)
        self.cache: dict[bytes, tuple[bytes, tuple[int, ...]]] = {}
        self.cache_size = cache_size
        # hashes of queries missed once: the cache admits a query on its second miss
        self.seen: set[int] = set()
        # queries (bytes but the ID) for rotating keys: the cache never keeps their answers
        self.turning: set[bytes] = set()
        # NXDOMAIN answers by the query bytes but the ID and the first label's octets
        # (`Nxdomain`)
        self.nxdomains: dict[bytes, Nxdomain] = {}
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
        bodies: dict[bytes, bytes] = {}  # equal bodies, one object each
        zones: Sequence[ZoneTable | EncodedZoneTable] = snapshot.zones
        zone_answers, blocked = self._derive_any(zones)
        for index, zone in enumerate(zones, start=1):
            ids = (index, zone_id(zone.origin))
            self._put(ids, zone_answers[index - 1], zone.names, bodies)
            self._put_variants(ids, zone.variants, bodies)
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

    def apply(self, delta: Delta | EncodedDelta) -> Table:
        """The next generation: a copy of this one with the delta's changes."""
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

    def _held(self, key: bytes) -> Entry | None:
        """The entry a key holds without stepping a rotation: a rotating key's variant 0."""
        found = self.answers.get(key)
        if found is None:
            entries = self.variants.get(key)
            return entries[0] if entries is not None else None
        return found

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

    def _put_variants(self, ids: tuple[int, int], variants: dict[bytes, list[Answer]],
                      bodies: dict[bytes, bytes]) -> None:
        index, zone = ids
        for key, answers in variants.items():
            slot = index << SLOT_SHIFT | len(key) - 2
            self.variants[key + CLASS_IN] = [
                entry(a, self.soa(slot) if a.soa else 0, zone, False, bodies) for a in answers]

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
        self.soa(found[0][6])
        return found

    def zone_of(self, key: bytes) -> int:
        """The zone id a question (lower-case name, type, class) is counted under: the zone
        of the entry that answers it, as the fast and slow paths look it up; 0 when the name
        is in none of our zones or is malformed."""
        found = self._held(key)
        if found is None:
            found = self.find(key)  # not a rotating key: `find` steps nothing
        return found[0][7] >> ZONE_SHIFT if found is not None else 0

    def denial(self, name: bytes, base: tuple[int, int, int]) -> tuple[bytes, bytes]:
        """The counts (our OPT included) and the NSEC or NSEC3 records, with their RRSIGs,
        proving that `name` does not exist, from the zone that holds it.

        NSEC: the record covering the name and the one covering the wildcard at its closest
        encloser (RFC 4035 3.1.3.2). NSEC3: the records matching the closest encloser,
        covering the next closer name and covering the wildcard (RFC 5155 7.2.2). What
        depends only on the encloser is found once per table: a random-name flood under one
        encloser costs a walk, a bisect (and one hash with NSEC3) per query.

        The records are written for this question (`compression.place`), those the encloser
        fixes first.
        """
        encloser = canonical.closest_encloser(self.names, name)
        found = self.enclosers.get(encloser)
        if found is None:
            found = self.enclosers[encloser] = self._encloser(name, encloser)
        keys, proofs, hashed, apex_length, after, fixed, _ = found
        an, ns, ar = base
        placed = self._placed(found, len(name))
        apex = compression.QUESTION + len(name) - apex_length
        start = compression.QUESTION + len(name) + 4 + after + len(placed)
        if not hashed:  # one record when the name and the wildcard fall in one gap
            key = canonical.packed_below(fixed[1], name, len(name) - len(encloser))
            covering = max(0, bisect_right(keys, key) - 1)  # as `canonical.covering`
            if covering == fixed[0]:
                return _COUNTS(1, an, ns + 2, ar + 1), placed
            proof = proofs[covering]
            # Under the apex itself (a flood's names), an owner shares no more with the name.
            kept = compression.kept_labels(proof, encloser, fixed[3], apex_length) \
                if len(encloser) > apex_length else -1
            return _COUNTS(1, an, ns + 4, ar + 1), placed + compression.place(
                proof, apex, start, kept)
        closer = nsec3.next_closer_position(keys, name, encloser)
        records = 2 if fixed[0] == fixed[1] else 4  # each with its RRSIG
        if closer in fixed:
            return _COUNTS(1, an, ns + records, ar + 1), placed
        return _COUNTS(1, an, ns + records + 2, ar + 1), placed + compression.place(
            proofs[closer], apex, start)

    @staticmethod
    def _placed(found: Proving, length: int) -> bytes:
        """The records an encloser's positions give, placed for a question name of `length`
        octets, right after the SOA records: kept for the last length asked (a flood's
        names are of one length), one slot replaced whole (threads may ask at once)."""
        memo = found[6]
        last = memo[0]
        if last[0] == length:
            return last[1]
        _, proofs, hashed, apex_length, after, fixed, _ = found
        apex = compression.QUESTION + length - apex_length
        start = compression.QUESTION + length + 4 + after
        if hashed:
            placed = compression.place(proofs[fixed[0]], apex, start)
            if fixed[1] != fixed[0]:
                placed += compression.place(proofs[fixed[1]], apex, start + len(placed))
        else:
            placed = compression.place(proofs[fixed[0]], apex, start, fixed[4])
        memo[0] = (length, placed)
        return placed

    def _encloser(self, name: bytes, encloser: bytes) -> Proving:
        """The chain of the zone holding `name` (the longest origin above it), with the
        positions its closest encloser `encloser` always needs."""
        i = 0
        while name[i]:
            i += name[i] + 1
            found = self.chains.get(name[i:])
            if found is not None:
                keys, proofs, hashed, apex_length = found[:4]
                unplaced = [(0, b"")]  # no name is 0 octets long
                if hashed:
                    return (*found, nsec3.encloser_positions(keys, encloser), unplaced)
                wildcard = canonical.covering(keys, canonical.wildcard(encloser),
                                              canonical.packed)
                suffixes = frozenset(_suffix_lengths(encloser))
                return (*found, (wildcard, canonical.packed(encloser), encloser, suffixes,
                                 compression.kept_labels(proofs[wildcard], encloser, suffixes,
                                                         apex_length)), unplaced)
        raise LookupError(f"no signed zone holds {name!r}: its entry has no NSEC proofs")
