"""What the messages that carry zones hold: pre-rendered answers per zone for the responders
(`ZoneTable`, its `ZoneDelta`, and the forms a responder decodes them in), and the records a
secondary transfers (`ZoneRecords`, `ZoneRecordsDelta`). The messages themselves are in
`shared.messages`, which names these too.
"""

from __future__ import annotations

import msgspec


class Answer(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One pre-rendered response, everything after the question.

    ``flags`` is the header's second 16-bit word without RD and CD (which the responder copies
    from the query); ``body`` was rendered for the question at offset 12, so compression pointers
    into the question stay valid whatever case the client used.

    Not tracked by the cyclic GC (``gc=False``): its fields are numbers, bytes and another
    Answer made before it, so it can hold no cycle, and the signer keeps 80,000 of them at
    10,000 signed names (16 bytes each saved, and none for a collection to visit).
    """

    flags: int
    ancount: int
    nscount: int
    arcount: int
    body: bytes
    signed: Answer | None = None  # the same with RRSIG and NSEC records, for DO=1 queries
    # A negative answer of the zone itself: the responder puts the zone's current SOA records
    # first in the authority section (counted in nscount, not in body).
    soa: bool = False


class GeoAnswers(msgspec.Struct, frozen=True, array_like=True):
    """The answers of one geo key (name + qtype) of a zone: one per distinct outcome of its
    pool under this generation's health, not per client.

    A responder looks the client up in map `map` (``GeoIndex.find4``/``find6``: an order id
    and a scope), and answers ``answers[by_order[order id]]`` (a rotation: served in turn,
    like `ZoneTable.variants`). The zone's `answers` holds the default order's answer under
    the same key: what a responder without the map, and a secondary, serve.
    """

    map: str
    answers: list[list[Answer]]  # per outcome, its rotation (one answer when none)
    sites: list[str]  # per outcome, the site it serves ("" for none), for the counters
    by_order: list[int]  # order id -> outcome index


class ZoneTable(msgspec.Struct, frozen=True, array_like=True):
    """Answers for one zone (an alias zone has its own table).

    ``answers`` is keyed by the lower-case wire qname followed by the 2-byte qtype;
    ``names`` by the lower-case wire name, for every name that exists (empty non-terminals too),
    holding the answer for a type the name does not have (NODATA, or the CNAME chain).
    """

    origin: bytes
    answers: dict[bytes, Answer]
    names: dict[bytes, Answer]
    nxdomain: Answer  # body holds no pointers into the question
    serial: int
    # Keys of `answers` that rotate: the responder serves these in turn (pool rotation).
    variants: dict[bytes, list[Answer]] = {}
    # Signed zones: NSEC owners in canonical order (or NSEC3 hashes in order), and each one's
    # NSEC (NSEC3) and RRSIG records, from which the responder proves NXDOMAIN for DO=1
    # queries: written for the apex as the question (`compression.place` moves them).
    chain: list[bytes] = []
    proofs: list[bytes] = []
    # The SOA records negative answers carry (negative TTL), and with RRSIGs: written for the
    # apex as the question (`compression.moved` moves them to each question's apex).
    soa: bytes = b""
    soa_signed: bytes = b""
    nsec3: bool = False  # `chain` holds the NSEC3 hashes, in order, instead of owner names
    geo: dict[bytes, GeoAnswers] = {}  # keyed as `answers`: the names that answer by map


class ZoneDelta(msgspec.Struct, frozen=True, array_like=True):
    """What changed in one zone's table since the previous generation."""

    origin: bytes
    serial: int
    soa: bytes
    soa_signed: bytes
    answers: dict[bytes, Answer]  # added or changed
    names: dict[bytes, Answer]
    removed_answers: list[bytes]
    removed_names: list[bytes]
    variants: dict[bytes, list[Answer]]  # the zone's whole rotation set
    proofs: dict[int, bytes]  # changed NSEC proofs, by position in the (unchanged) chain
    geo: dict[bytes, GeoAnswers] = {}  # the zone's whole geo set


class ZoneRecords(msgspec.Struct, frozen=True, array_like=True):
    """One zone as a secondary holds it at `serial`: what AXFR and IXFR transfer (RFC 5936).

    Every record is uncompressed wire (owner written in full, lower case, canonical rdata as
    signed), one `bytes` per RR. `soa` is the SOA RR alone; `owners` maps each owner's
    lower-case wire name to every other RR it has, RRSIGs (the SOA's too), NSEC, NSEC3
    (under their hashed owners), DNSKEY, CDS and CDNSKEY included. A rotating pool is held with
    all the addresses its rotation serves, as one RRset signed as one (docs/transfers.md).
    """

    origin: bytes
    serial: int
    soa: bytes
    owners: dict[bytes, list[bytes]]


class ZoneRecordsDelta(msgspec.Struct, frozen=True, array_like=True):
    """What changed in one zone's records since the previous generation: each changed or added
    owner with all its RRs, and the owners that are gone."""

    origin: bytes
    serial: int
    soa: bytes
    owners: dict[bytes, list[bytes]]
    removed: list[bytes]


class EncodedZoneTable(msgspec.Struct, frozen=True, array_like=True):
    """A `ZoneTable` as a responder decodes it: each answer stays encoded (`msgspec.Raw`, a
    view into the message) until the responder turns it into a table entry.

    Decoded whole, a snapshot at 10,000 signed names is 80,000 `Answer` objects (25 MB)
    alive at once beside the table being built from them; the table's objects then sit
    between their freed ones, and the allocator keeps those pages for good (a responder
    stayed 12 MiB above its live data). Answer by answer, each is freed before the next.
    The fields are `ZoneTable`'s, in its order (a test holds them equal).
    """

    origin: bytes
    answers: dict[bytes, msgspec.Raw]
    names: dict[bytes, msgspec.Raw]
    nxdomain: Answer
    serial: int
    variants: dict[bytes, list[Answer]] = {}
    chain: list[bytes] = []
    proofs: list[bytes] = []
    soa: bytes = b""
    soa_signed: bytes = b""
    nsec3: bool = False
    geo: dict[bytes, GeoAnswers] = {}


class EncodedZoneDelta(msgspec.Struct, frozen=True, array_like=True):
    """A `ZoneDelta` as a responder decodes it, answers left encoded (see `EncodedZoneTable`):
    when signatures are renewed, a delta brings nearly every answer anew."""

    origin: bytes
    serial: int
    soa: bytes
    soa_signed: bytes
    answers: dict[bytes, msgspec.Raw]
    names: dict[bytes, msgspec.Raw]
    removed_answers: list[bytes]
    removed_names: list[bytes]
    variants: dict[bytes, list[Answer]]
    proofs: dict[int, bytes]
    geo: dict[bytes, GeoAnswers] = {}
