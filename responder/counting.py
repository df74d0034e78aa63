"""The responder's query counters: keys made once, so that counting a query is one dict
increment, translated into labels only when read."""

from __future__ import annotations

from collections import Counter

from healthdns.responder.wire import TCP, V6
from healthdns.shared.querycounts import COUNTED_QTYPES

# Counters by transport bits -> (TCP?, address family as CoreDNS labels it: 1 IPv4, 2 IPv6).
TRANSPORTS = {t: (bool(t & TCP), 2 if t & V6 else 1) for t in range(4)}
# (path, TCP?, family, zone origin (wire, b"" for none of ours), qtype as `counted`, rcode)
# -> queries
QueryCounts = Counter[tuple[str, bool, int, bytes, int, int]]


def _type_index() -> bytes:
    index = bytearray(65536)
    for i, qtype in enumerate(COUNTED_QTYPES):
        index[qtype] = i
    return bytes(index)


# A query type's place in COUNTED_QTYPES, which counter keys carry (0: every other type), one
# octet per type: a subscript on the fast path, and at most 21 types in the counters.
TYPE_INDEX = _type_index()
# Counter keys by transport, shared by the cache entries that count alike: bounded by the
# zones, counted types and rcodes, so past KINDS_SHARED something is wrong and an entry gets a
# tuple of its own (bounded by the cache, as the entry is).
KINDS_SHARED = 4096
_kinds: dict[int, tuple[int, ...]] = {}


def counted(qtype: int) -> int:
    """The query type as counted: itself if it is one of COUNTED_QTYPES, else OTHER_QTYPE."""
    return COUNTED_QTYPES[TYPE_INDEX[qtype]]


def transport_kinds(kind: int) -> tuple[int, ...]:
    """A counter key for each transport (`UDP`, `TCP`, `| V6`), indexed by it."""
    found = _kinds.get(kind)
    if found is None:
        found = tuple(kind | transport for transport in range(4))
        if len(_kinds) < KINDS_SHARED:
            _kinds[kind] = found
    return found
