"""From query bytes to response bytes: the per-query path.

`Answerer.answer` is the fast path: it handles the common shape of query (one question, no
EDNS, a bare EDNS OPT, or an OPT with one EDNS Client Subnet option as resolvers send it) by
splicing pre-rendered bytes around the question as sent. Everything else goes to
`Answerer.slow`, a complete parser that never raises on any input. Both consult the same
`Table`, so they agree by construction; a property test compares them anyway.

A geo name (`Table.geo`) is answered by `_geo`: the client's block in the map (one binary
search) gives its order id, and the order id the pre-rendered answer (one list index). Its
client is the ECS address, or the source address, which `answer` is not told: it returns
NEEDS_CLIENT and the caller asks `answer_from` with the address (only geo names cost that).

The fast path's parts: the packet cache (`cache`), the NXDOMAIN kept for a random-subdomain
flood (`negative`), the counters (`counting`); the wire's codes and parsers are in `wire`, the
slow path in `slow`.
"""

from __future__ import annotations

from collections import Counter
from typing import Final

from healthdns.responder.cache import CACHE_QUERY_MAX, admit
from healthdns.responder.counting import TRANSPORTS, TYPE_INDEX, QueryCounts
from healthdns.responder.entry import (
    QTYPE_SHIFT,
    RCODE_SHIFT,
    ZONE_MASK,
    ZONE_SHIFT,
    Entry,
    flag_map,
    site_counts,
    site_of,
    zone_origin,
)
from healthdns.responder.negative import kept_nxdomain, remember_nxdomain
from healthdns.responder.slow import SlowPath
from healthdns.responder.table import GeoKey, Table
from healthdns.responder.wire import (
    ANY,
    FORMERR,
    META_QTYPES,
    NAME_END,
    NEEDS_CLIENT,
    NO_EDNS,
    NXDOMAIN,
    ONE_AR,
    OPT_HEAD,
    PLAIN_LIMIT,
    TCP,
    UDP,
    V6,
    fast_shape,
)
from healthdns.shared.ecs import FAMILY_IPV4, SCOPES
from healthdns.shared.ecs import SHAPES as ECS_SHAPES
from healthdns.shared.geotable import SCOPE_BITS, SCOPE_MASK
from healthdns.shared.querycounts import COUNTED_QTYPES

# The transports `Answerer.answer` takes, and the smallest limit it answers within.
__all__ = ["NEEDS_CLIENT", "PLAIN_LIMIT", "TCP", "UDP", "V6", "Answerer"]
NO_OPTIONS: Final = b"\x00\x00"  # our OPT's RDLENGTH when it carries no option
# The query flags the fast path answers (every entry's flag map has the same keys).
FAST_FLAGS = frozenset(flag_map(0))
# Big-endian by default; bound once, as `int.from_bytes` makes a bound method on every read.
_from_bytes: Final = int.from_bytes


class Answerer(SlowPath):
    """Answers queries from the current table; one per responder process."""

    def __init__(self, payload_size: int, nsid: bytes = b"") -> None:
        super().__init__(payload_size, nsid)
        # Queries answered, by path (no logging per query). The fast path and the cache key
        # theirs as zone id << ZONE_SHIFT | type index << QTYPE_SHIFT | rcode << RCODE_SHIFT
        # | transport (the type index: `TYPE_INDEX`): the entry holds all but the type and
        # transport, so counting stays one dict increment. Zone ids and type indexes are
        # translated only when read (`counts_by_label`). A geo answer's key also holds its
        # site (`entry.SITE_COUNT_SHIFT`, read by `sites_by_label`).
        self.fast_counts: dict[int, int] = {}
        self.cache_counts: dict[int, int] = {}
        # Our OPT records (without, with DO) but their RDLENGTH: an ECS option follows.
        self.opt_heads = (self.opts[0][:-2], self.opts[1][:-2])

    # --- fast path ------------------------------------------------------------------------------

    def answer(self, data: bytes, transport: int) -> bytes | None:
        """The response to `data`, or None when no response must be sent.

        `transport`: UDP or TCP, | V6 when the socket is IPv6 (a bool works for IPv4).

        The packet cache comes first (as PowerDNS's does): one table answers the same query
        bytes, the ID aside, with the same response bytes, so a UDP response is kept by the
        query it answered. Each table has its own cache: a new snapshot starts empty.
        """
        table = self.table
        if table is None or transport & 1:  # TCP (a literal: this test is on every query)
            return self._lookup(table, data, transport)
        key = data[2:]
        cached = table.cache.get(key)
        if cached is not None:
            # IPv4 and IPv6 sockets share the cache: the entry holds its counter key per
            # transport, made once, so a hit allocates nothing to count.
            stored, kinds = cached  # the response but its ID, the counter keys
            kind, counts = kinds[transport], self.cache_counts
            counts[kind] = counts.get(kind, 0) + 1
            return data[:2] + stored
        nxdomains = table.nxdomains
        if nxdomains and len(data) > 12:
            response = kept_nxdomain(table, nxdomains, data, transport, self.fast_counts)
            if response is not None:
                return response
        response = self._lookup(table, data, transport)
        if response is None or not table.cache_size or response is NEEDS_CLIENT:
            return response
        if response[3] & 0x0F == NXDOMAIN and response[6:8] == b"\x00\x00" \
                and len(nxdomains) < table.cache_size:  # no CNAME chain: the name alone
            remember_nxdomain(table, data, response, self.payload_size, self.opts[1])
        if len(table.cache) >= table.cache_size:
            return response
        # A first miss only adds a hash to `seen` (see `cache.admit`): inline, as a flood's
        # every query is one, and one probe of the set (`add`; the size tells whether it was
        # new).
        seen = table.seen
        known = len(seen)
        seen.add(hash(key))  # the hash is the one the cache lookup computed
        if len(seen) > known:
            if known >= table.cache_size:  # bounded: start again with this one
                seen.clear()
                seen.add(hash(key))
        elif len(data) <= CACHE_QUERY_MAX:
            admit(table, key, data, response)
        return response

    def answer_told(self, data: bytes, transport: int, client: bytes) -> bytes | None:
        """`answer`, where the client's address (packed) is known already (TCP, the portable
        UDP path)."""
        response = self.answer(data, transport)
        if response is NEEDS_CLIENT:
            return self.answer_from(data, transport, client)
        return response

    def answer_from(self, data: bytes, transport: int, client: bytes) -> bytes | None:
        """The response to `data` from `client` (its packed source address): where `answer`
        said NEEDS_CLIENT (a geo name, asked without an ECS address). Never cached."""
        response = self._lookup(self.table, data, transport, client)
        return None if response is NEEDS_CLIENT else response  # told it: never again

    def _lookup(self, table: Table | None, data: bytes, transport: int,
                client: bytes = b"") -> bytes | None:
        """Locate the question, look up its entry, splice; anything unusual goes slow."""
        # The end of the question name, when it is well formed and at most 255 octets: a
        # longer one goes slow (FORMERR) before any lookup; a miss checks its labels.
        end = data.find(0, 12, NAME_END)
        qend = end + 5
        if table is None or end < 12 or len(data) < qend:
            return self.slow(data, transport, client=client)
        name = data[12:end + 1].lower()
        qtype = data[end + 1] << 8 | data[end + 2]
        key = name + data[end + 1:qend]
        entry = table.answers.get(key)
        if entry is None:  # rotating pools; NODATA, CNAME chains and NXDOMAIN
            if data[end + 3] or data[end + 4] != 1 or qtype in META_QTYPES:  # IN: 0x0001
                return self.slow(data, transport)
            rotation = table.rotations.get(key)
            if rotation is not None:  # every answer steps to the next variant: one made here
                if data[2:4] not in FAST_FLAGS or not fast_shape(data, qend):
                    return self.slow(data, transport)  # which steps it there instead
                entry = next(rotation)
            else:  # ANY (RFC 8482): its lowest type's entry, derived rather than held
                entry = table.any_entry(name) if qtype == ANY else table.lookup_miss(name)
                if entry is None:
                    return self.slow(data, transport)
        shape, body, signed = entry
        flags = shape.flag_map.get(data[2:4])  # None for responses, other opcodes, odd bits
        if flags is None:  # ... and for a geo name's default (`entry.diverted`)
            geo = table.geo.get(key)
            if geo is not None:
                return self._geo(table, data, transport, qend, name, geo, client)
            return self.slow(data, transport, client=client)
        # Counted truncated or not, as `slow` counts; one dict increment (see `__init__`).
        kind, fast = shape.kind | TYPE_INDEX[qtype] << QTYPE_SHIFT | transport, self.fast_counts
        counts = data[4:12]
        if counts == NO_EDNS and len(data) == qend:
            fast[kind] = fast.get(kind, 0) + 1
            response = b"".join((data[:2], flags, shape.counts, data[12:],
                                 table.soas[shape.soa], body))
            if len(response) > PLAIN_LIMIT and not transport & TCP:
                return self._truncated(data, qend, shape, b"")
            return response
        if (counts != ONE_AR or len(data) != qend + 11 or data[qend:qend + 3] != OPT_HEAD
                or data[qend + 6] or data[qend + 9] or data[qend + 10]):
            # One ECS option (a resolver's query): a name not routed by it echoes it with
            # scope 0, which a valid query's option has already (RFC 7871 7.2.1).
            ecs_shape = ECS_SHAPES.get(data[qend + 9:qend + 19])
            if ecs_shape is None or len(data) != qend + 19 + ecs_shape[2] \
                    or counts != ONE_AR or data[qend:qend + 3] != OPT_HEAD or data[qend + 6]:
                return self.slow(data, transport, client=client)  # EDNS version > 0, ...
            if data[-1] & ecs_shape[4] and ecs_shape[2]:  # bits beyond the source
                return self.slow(data, transport, rcode=FORMERR)
            return self._spliced(table, data, transport, qend, name, entry, data[qend + 9:])
        fast[kind] = fast.get(kind, 0) + 1
        if data[qend + 7] & 0x80:  # DO: the signed variant (RFC 3225)
            counts, soa, body, opt = (shape.counts_do, table.soas_signed[shape.soa], signed,
                                      self.opts[1])
            if shape.proved is not None:  # NXDOMAIN: add the proofs for this name
                counts, proofs = table.denial(name, shape.proved)
                body += proofs
        else:
            counts, soa, opt = shape.counts_opt, table.soas[shape.soa], self.opts[0]
        response = b"".join((data[:2], flags, counts, data[12:qend], soa, body, opt))
        if len(response) > PLAIN_LIMIT and not transport & TCP:
            # RFC 6891 6.2.5: the lesser of the client's payload size and ours, at least 512.
            limit = min(self.payload_size, data[qend + 3] << 8 | data[qend + 4])
            if len(response) > limit:
                return self._truncated(data, qend, shape, opt)
        return response

    def _geo(self, table: Table, data: bytes, transport: int, qend: int, name: bytes,
             geo: GeoKey, client: bytes) -> bytes | None:
        """A geo name's answer: the client (the ECS address, or the source address when the
        query has no ECS or one of source length 0) looked up in the map, its order's
        outcome spliced, and the ECS option echoed with the scope of the map's block."""
        # A query without an option has too few octets there for any key of `ECS_SHAPES`.
        ecs_shape = ECS_SHAPES.get(data[qend + 9:qend + 19])
        if ecs_shape is None:
            if not (data[4:12] == NO_EDNS and len(data) == qend or fast_shape(data, qend)):
                return self.slow(data, transport, client=client)  # an OPT of another shape
            return self._geo_by_source(table, data, transport, qend, name, geo, client,
                                       b"" if len(data) == qend else NO_OPTIONS)
        family, source, octets, shift, beyond = ecs_shape
        if len(data) != qend + 19 + octets or data[4:12] != ONE_AR \
                or data[qend:qend + 3] != OPT_HEAD or data[qend + 6]:
            return self.slow(data, transport, client=client)
        if octets and data[-1] & beyond:
            return self.slow(data, transport, rcode=FORMERR)
        if not source:  # scope 0: the answer is for the source address alone
            return self._geo_by_source(table, data, transport, qend, name, geo, client,
                                       data[qend + 9:])
        address = data[qend + 19:]
        index, wide = geo.index, _from_bytes(address) << shift
        block = index.find4(wide) if family == FAMILY_IPV4 else index.find6(wide)
        rotation, _ = geo.by_order[block >> SCOPE_BITS]  # counted with its site by `_spliced`
        # The echo: the query's option but its SCOPE PREFIX-LENGTH (RDLENGTH to SOURCE, 9).
        return self._spliced(table, data, transport, qend, name, next(rotation),
                             data[qend + 9:qend + 18], client, SCOPES[block & SCOPE_MASK], address)

    def _geo_by_source(self, table: Table, data: bytes, transport: int, qend: int,
                       name: bytes, geo: GeoKey, client: bytes, tail: bytes) -> bytes | None:
        """A geo name's answer by the query's source address (`client`; NEEDS_CLIENT when
        not told it); `tail`: our OPT's RDLENGTH and options, b"" without EDNS."""
        if not client:
            return NEEDS_CLIENT
        address = _from_bytes(client)
        block = geo.index.find4(address) if len(client) == 4 else geo.index.find6(address)
        rotation, _ = geo.by_order[block >> SCOPE_BITS]
        return self._spliced(table, data, transport, qend, name, next(rotation), tail, client)

    def _spliced(self, table: Table, data: bytes, transport: int, qend: int, name: bytes,
                 found: Entry, tail: bytes, client: bytes = b"", scope: bytes = b"",
                 address: bytes = b"") -> bytes | None:
        """`found` spliced around the question of a fast-path query: no EDNS (`tail` empty),
        or an OPT of version 0 bare or with one ECS option; our OPT's RDLENGTH and options are
        `tail` + `scope` + `address` (a geo answer's echo in parts, joined once)."""
        shape, body, signed = found
        flags = shape.flag_map.get(data[2:4])
        if flags is None:  # other flags: the slow path answers them
            return self.slow(data, transport, client=client)
        qtype = data[qend - 4] << 8 | data[qend - 3]
        kind, fast = shape.kind | TYPE_INDEX[qtype] << QTYPE_SHIFT | transport, self.fast_counts
        fast[kind] = fast.get(kind, 0) + 1
        if not tail:
            response = b"".join((data[:2], flags, shape.counts, data[12:qend],
                                 table.soas[shape.soa], body))
            if len(response) > PLAIN_LIMIT and not transport & TCP:
                return self._truncated(data, qend, shape, b"")
            return response
        do = data[qend + 7] >> 7
        if do:  # DO: the signed variant (RFC 3225)
            counts, soa, body = shape.counts_do, table.soas_signed[shape.soa], signed
            if shape.proved is not None:  # NXDOMAIN: add the proofs for this name
                counts, proofs = table.denial(name, shape.proved)
                body += proofs
        else:
            counts, soa = shape.counts_opt, table.soas[shape.soa]
        head = self.opt_heads[do]
        response = b"".join((data[:2], flags, counts, data[12:qend], soa, body, head, tail,
                             scope, address))
        if len(response) > PLAIN_LIMIT and not transport & TCP:
            limit = min(self.payload_size, data[qend + 3] << 8 | data[qend + 4])
            if len(response) > limit:
                return self._truncated(data, qend, shape, head + tail + scope + address)
        return response

    def sites_by_label(self) -> list[tuple[bytes, str, int]]:
        """(zone origin, site, answers) of geo names: for metrics (copied first, as
        `counts_by_label` does)."""
        counts = dict(self.site_counts)
        site_counts(self.fast_counts, counts)
        site_counts(self.cache_counts, counts)
        return [(*site_of(key), n) for key, n in counts.items()]

    def counts(self) -> Counter[tuple[str, int, int]]:
        """(path, qtype, rcode) -> queries answered."""
        out: Counter[tuple[str, int, int]] = Counter()
        for (path, _, _, _, qtype, rcode), n in self.counts_by_label().items():
            out[(path, qtype, rcode)] += n
        return out

    def counts_by_label(self) -> QueryCounts:
        """(path, TCP?, family, zone origin, qtype, rcode) -> queries answered: for metrics.

        Read from another thread than the UDP threads that count: each dict is copied first
        (one C call under the GIL) so that none changes size while it is read. Zone ids are
        translated here, at most once a second, never per query."""
        out: QueryCounts = Counter()
        for path, counts in (("fast", self.fast_counts), ("cache", self.cache_counts)):
            for kind, n in dict(counts).items():
                out[(path, *TRANSPORTS[kind & 3],
                     zone_origin(kind >> ZONE_SHIFT & ZONE_MASK),
                     COUNTED_QTYPES[kind >> QTYPE_SHIFT & 0xFFFF],
                     kind >> RCODE_SHIFT & 0x0F)] += n
        for (zone, qtype, rcode, transport), n in dict(self.slow_counts).items():
            out[("slow", *TRANSPORTS[transport], zone_origin(zone), qtype, rcode)] += n
        return out

