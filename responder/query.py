"""From query bytes to response bytes: the per-query path.

`Answerer.answer` is the fast path: it handles the common shape of query (one question, no
EDNS or a bare EDNS OPT) by splicing pre-rendered bytes around the question as sent. Everything
else goes to `Answerer.slow`, a complete parser that never raises on any input. Both consult the
same `Table`, so they agree by construction; a property test compares them anyway.

The fast path's parts: the packet cache (`cache`), the NXDOMAIN kept for a random-subdomain
flood (`negative`), the counters (`counting`); the wire's codes and parsers are in `wire`, the
slow path in `slow`.
"""

from __future__ import annotations

from collections import Counter

from healthdns.responder.cache import CACHE_QUERY_MAX, admit
from healthdns.responder.counting import TRANSPORTS, TYPE_INDEX, QueryCounts
from healthdns.responder.entry import (
    QTYPE_SHIFT,
    RCODE_SHIFT,
    ZONE_SHIFT,
    flag_map,
    zone_origin,
)
from healthdns.responder.negative import kept_nxdomain, remember_nxdomain
from healthdns.responder.slow import SlowPath
from healthdns.responder.table import Table
from healthdns.responder.wire import (
    ANY,
    META_QTYPES,
    NAME_END,
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
from healthdns.shared.querycounts import COUNTED_QTYPES

# The transports `Answerer.answer` takes, and the smallest limit it answers within.
__all__ = ["PLAIN_LIMIT", "TCP", "UDP", "V6", "Answerer"]
# The query flags the fast path answers (every entry's flag map has the same keys).
FAST_FLAGS = frozenset(flag_map(0))


class Answerer(SlowPath):
    """Answers queries from the current table; one per responder process."""

    def __init__(self, payload_size: int, nsid: bytes = b"") -> None:
        super().__init__(payload_size, nsid)
        # Queries answered, by path (no logging per query). The fast path and the cache key
        # theirs as zone id << ZONE_SHIFT | type index << QTYPE_SHIFT | rcode << RCODE_SHIFT
        # | transport (the type index: `TYPE_INDEX`): the entry holds all but the type and
        # transport, so counting stays one dict increment. Zone ids and type indexes are
        # translated only when read (`counts_by_label`).
        self.fast_counts: dict[int, int] = {}
        self.cache_counts: dict[int, int] = {}

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
        if response is None or not table.cache_size:
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

    def _lookup(self, table: Table | None, data: bytes, transport: int) -> bytes | None:
        """Locate the question, look up its entry, splice; anything unusual goes slow."""
        # The end of the question name, when it is well formed and at most 255 octets: a
        # longer one goes slow (FORMERR) before any lookup; a miss checks its labels.
        end = data.find(0, 12, NAME_END)
        qend = end + 5
        if table is None or end < 12 or len(data) < qend:
            return self.slow(data, transport)
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
        if flags is None:
            return self.slow(data, transport)
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
            return self.slow(data, transport)  # EDNS version > 0, options, or another shape
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
                out[(path, *TRANSPORTS[kind & 3], zone_origin(kind >> ZONE_SHIFT),
                     COUNTED_QTYPES[kind >> QTYPE_SHIFT & 0xFFFF],
                     kind >> RCODE_SHIFT & 0x0F)] += n
        for (zone, qtype, rcode, transport), n in dict(self.slow_counts).items():
            out[("slow", *TRANSPORTS[transport], zone_origin(zone), qtype, rcode)] += n
        return out

