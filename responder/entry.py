"""What the per-query path splices for one answer: entries, the shapes they share, their
SOA slots, and the process-wide ids of zones their counters carry."""

from __future__ import annotations

import struct
from typing import Any, NamedTuple, TypeAlias

from healthdns.shared import compression
from healthdns.shared.tables import Answer, EncodedZoneDelta, EncodedZoneTable, ZoneDelta, ZoneTable

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
# Counter keys (see `Answerer`): transport in bits 0-1, rcode in 2-5, qtype in 6-21, zone id above.
RCODE_SHIFT, QTYPE_SHIFT, ZONE_SHIFT = 2, 6, 22
# Zone origins (wire) by id, and ids by origin: interned for the life of the process, never
# reused, so a counter keyed by id means the same zone whatever generation it was made under
# (a reload may add, drop or reorder zones). Id 0: no zone of ours. Bounded by the zones
# ever configured, like `_flag_maps` by the distinct flags.
_zone_origins: list[bytes] = [b""]
_zone_ids: dict[bytes, int] = {}
SLOT_SHIFT = 8  # an SOA slot: the zone's index << SLOT_SHIFT | the question name's length
# Sites geo answers are counted under, interned as zones are: (zone id, site) by key, the key
# zone id << SITE_SHIFT | site id. Bounded by the zones and sites ever configured.
SITE_SHIFT = 16
# A geo answer counts its site in its counter key (fast path and packet cache alike), above
# the zone: (site id + 1) << SITE_COUNT_SHIFT (0: not a geo answer). Zone ids stay below
# 1 << 16.
SITE_COUNT_SHIFT = ZONE_SHIFT + SITE_SHIFT
ZONE_MASK = (1 << SITE_SHIFT) - 1


def site_counts(counts: dict[int, int], into: dict[int, int]) -> None:
    """Add the geo answers of a counter dict (keys as `entry` makes them) to `into`, by
    `site_key`."""
    for kind, n in dict(counts).items():
        if kind >> SITE_COUNT_SHIFT:
            key = (kind >> ZONE_SHIFT & ZONE_MASK) << SITE_SHIFT \
                | (kind >> SITE_COUNT_SHIFT) - 1
            into[key] = into.get(key, 0) + n
_site_names: list[str] = []
_site_ids: dict[str, int] = {}
_diverted: dict[Shape, Shape] = {}  # bounded as `_shapes` is


class Shape:
    """What the entries of one kind of answer share, one object for them all (`entry` makes
    each once: equal shapes are the same object). A zone has a few dozen per length of its
    names."""

    __slots__ = ("counts", "counts_do", "counts_opt", "flag_map", "flags", "kind", "proved",
                 "soa")

    def __init__(self, flags: int, counts: bytes, counts_opt: bytes, counts_do: bytes,
                 proved: tuple[int, int, int] | None, soa: int, kind: int) -> None:
        self.flags = flags  # the response's, as the signer renders them (RD and CD not set)
        self.flag_map = flag_map(flags)  # query flag bytes -> response flag bytes
        self.counts = counts  # QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT without EDNS
        self.counts_opt = counts_opt  # ... with our OPT record
        self.counts_do = counts_do  # ... with our OPT record, for the body for DO=1
        # (an, ns, ar) of the body for DO=1 when the NSEC proofs of an NXDOMAIN are added per
        # query (`Table.denial`); None when they are not
        self.proved = proved
        # The slot of the SOA records put first in the authority section (0: none; see
        # `Table.soas`).
        self.soa = soa
        # The counter key of its answers but the query's type and transport:
        # zone id << ZONE_SHIFT | rcode << RCODE_SHIFT (see `query.Answerer`).
        self.kind = kind


# (shape, body, body for DO=1): three slots per entry, not ten (at 10,000 signed names,
# 30,000 entries of 64 octets instead of 120; all but the bodies repeat from entry to entry).
# A tuple, read by unpacking it: entries compare by value (`Table._settle_any`).
Entry: TypeAlias = tuple[Shape, bytes, bytes]


def diverted(made: Entry) -> Entry:
    """The entry with a shape whose flag map is empty: the fast path finds it, maps no
    flags, and looks further (a geo name's default answer, held where every name's is, so
    that ANY, counters and the slow path find it as they find any other)."""
    shape, body, signed = made
    other = _diverted.get(shape)
    if other is None:
        other = _diverted[shape] = Shape.__new__(Shape)
        for slot in Shape.__slots__:
            setattr(other, slot, getattr(shape, slot))
        other.flag_map = {}
    return (other, body, signed)


def site_key(zone: int, site: str) -> int:
    """The counter key of a zone's answers from `site` ("": from no site)."""
    found = _site_ids.get(site)
    if found is None:
        found = _site_ids[site] = len(_site_names)
        _site_names.append(site)
    return zone << SITE_SHIFT | found


def site_of(key: int) -> tuple[bytes, str]:
    """(zone origin, site) of a `site_key`."""
    return zone_origin(key >> SITE_SHIFT), _site_names[key & ZONE_MASK]


class KeptNxdomain:
    """An NXDOMAIN kept for every name one label under the same parent, by the query bytes
    but the ID and that label's octets (see `negative.remember_nxdomain`)."""

    __slots__ = ("head", "kinds", "last", "limit", "opt", "parent", "proved", "room", "tail")

    def __init__(self, head: bytes, tail: bytes, parent: bytes, room: int,
                 kinds: tuple[int, ...], limit: int, proved: tuple[int, int, int] | None = None,
                 opt: bytes = b"") -> None:
        self.head = head  # the response's flags and counts, or with DNSSEC its flags alone
        self.tail = tail  # the response after the label, or with DNSSEC up to the proofs
        self.parent = parent  # lower-case wire
        self.room = room  # the longest label the name and the answer have room for
        self.kinds = kinds  # the counter key by transport
        self.limit = limit  # the longest answer the client takes
        self.proved = proved  # with DNSSEC: the counts `Table.denial` adds to
        self.opt = opt  # with DNSSEC: our OPT record, after the proofs
        self.last = b""  # the label it last answered


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
          bodies: dict[bytes, bytes] | None = None, site: int = 0) -> Entry:
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
    # The rcode is known per entry, so the fast path adds only the qtype and transport; a
    # geo outcome's entry counts its site too (`site`: its `site_key`, or 0).
    kind = zone << ZONE_SHIFT | (answer.flags & 0x0F) << RCODE_SHIFT
    if site:
        kind |= ((site & ZONE_MASK) + 1) << SITE_COUNT_SHIFT
    made = (answer.flags, counts, counts_opt, counts_do, base, soa, kind)
    shape = _shapes.get(made)
    if shape is None:
        shape = _shapes[made] = Shape(answer.flags, counts, counts_opt, counts_do, base, soa,
                                      kind)
    body, signed_body = answer.body, signed.body
    if bodies is not None:
        body = bodies.setdefault(body, body)
        signed_body = bodies.setdefault(signed_body, signed_body)
    return (shape, body, signed_body)


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
