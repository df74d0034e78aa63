"""The packet cache's admission: which responses `query.Answerer.answer` keeps, by the query
bytes but the ID, and when."""

from __future__ import annotations

from healthdns.responder.counting import TYPE_INDEX, transport_kinds
from healthdns.responder.entry import QTYPE_SHIFT, RCODE_SHIFT, ZONE_SHIFT
from healthdns.responder.table import Table
from healthdns.responder.wire import NAME_END, name_end, signed_query

# Longer queries are answered but not cached: the cache holds entries, not octets, and a
# well-formed query with a few EDNS options is far shorter (a name is at most 255 octets).
CACHE_QUERY_MAX = 512


def admit(table: Table, key: bytes, data: bytes, response: bytes) -> None:
    """Cache a response on the second miss of its query, not the first.

    A random-name flood asks each name once: it only churns the small `seen` set of
    hashes (`query.Answerer.answer` adds them), never the cache, so legitimate names keep
    their entries (a full cache keeps what it holds; a new table starts empty). A miss
    answered on the fast path costs little more than a hit, so waiting for the second
    costs little.
    """
    if (table.rotations or table.geo) and _turns(table, key, data):
        return  # a rotating answer is made anew each time: each one steps the rotation; a
        # geo answer is chosen by the client's address, which the query bytes may not hold
    if data[11] | data[10] and signed_query(data):  # RFC 8945: never a signed answer
        return
    if response[2] & 0x02:  # TC: every truncated answer is made, so that it is counted
        return
    end = name_end(data, 12, pointers=False) - 1  # the name's last octet, as `slow` reads
    zone = qtype = 0
    if 12 <= end < len(data) - 4 and data[4:6] == b"\x00\x01":  # as `slow` counts it
        qtype = data[end + 1] << 8 | data[end + 2]
        zone = table.zone_of(data[12:end + 1].lower() + data[end + 1:end + 5])
    kind = zone << ZONE_SHIFT | TYPE_INDEX[qtype] << QTYPE_SHIFT \
        | (response[3] & 0x0F) << RCODE_SHIFT
    table.cache[key] = (response[2:], transport_kinds(kind))


def _turns(table: Table, key: bytes, data: bytes) -> bool:
    """Whether a query (`key`: its bytes but the ID) asks for a rotating key. Asked at every
    miss after the first (`admit`), so such a query is remembered: a set lookup the next
    time (bounded like the cache: full, it starts again)."""
    if key in table.turning:
        return True
    end = data.find(0, 12, NAME_END)  # a rotating name has no 0 octet in a label
    asked = data[12:end + 1].lower() + data[end + 1:end + 5]
    if asked not in table.rotations and asked not in table.geo:
        return False
    if len(table.turning) >= table.cache_size:
        table.turning.clear()
    table.turning.add(key)
    return True
