"""The packet cache's admission: which responses `query.Answerer.answer` keeps, by the query
bytes but the ID, and when."""

from __future__ import annotations

from healthdns.responder.counting import TYPE_INDEX, transport_kinds
from healthdns.responder.entry import (
    QTYPE_SHIFT,
    RCODE_SHIFT,
    SITE_COUNT_SHIFT,
    ZONE_MASK,
    ZONE_SHIFT,
)
from healthdns.responder.table import GeoKey, Table
from healthdns.responder.wire import NAME_END, name_end, signed_query
from healthdns.shared.ecs import FAMILY_IPV4
from healthdns.shared.ecs import SHAPES as ECS_SHAPES
from healthdns.shared.geotable import SCOPE_BITS

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
        return  # a rotating answer is made anew each time: each one steps the rotation
    if data[11] | data[10] and signed_query(data):  # RFC 8945: never a signed answer
        return
    if response[2] & 0x02:  # TC: every truncated answer is made, so that it is counted
        return
    end = name_end(data, 12, pointers=False) - 1  # the name's last octet, as `slow` reads
    zone = qtype = site = 0
    if 12 <= end < len(data) - 4 and data[4:6] == b"\x00\x01":  # as `slow` counts it
        qtype = data[end + 1] << 8 | data[end + 2]
        asked = data[12:end + 1].lower() + data[end + 1:end + 5]
        zone = table.zone_of(asked)
        geo = table.geo.get(asked)
        if geo is not None:  # answered by its ECS address, which the cache key holds
            site = _site(geo, data, end + 5)
            if site < 0:
                return
    kind = site << SITE_COUNT_SHIFT | zone << ZONE_SHIFT | TYPE_INDEX[qtype] << QTYPE_SHIFT \
        | (response[3] & 0x0F) << RCODE_SHIFT
    table.cache[key] = (response[2:], transport_kinds(kind))


def _site(geo: GeoKey, data: bytes, qend: int) -> int:
    """The site id + 1 a geo answer to a query with an ECS address is counted under, as
    `query.Answerer._geo` chose it; -1 when the query's ECS option is not of that shape."""
    shape = ECS_SHAPES.get(data[qend + 9:qend + 19])
    if shape is None or not shape[1]:
        return -1
    family, _, _, shift, _ = shape
    address = int.from_bytes(data[qend + 19:]) << shift
    block = geo.index.find4(address) if family == FAMILY_IPV4 else geo.index.find6(address)
    return (geo.by_order[block >> SCOPE_BITS][1] & ZONE_MASK) + 1


def _turns(table: Table, key: bytes, data: bytes) -> bool:
    """Whether a query (`key`: its bytes but the ID) asks for a rotating key. Asked at every
    miss after the first (`admit`), so such a query is remembered: a set lookup the next
    time (bounded like the cache: full, it starts again)."""
    if key in table.turning:
        return True
    end = data.find(0, 12, NAME_END)  # a rotating name has no 0 octet in a label
    asked = data[12:end + 1].lower() + data[end + 1:end + 5]
    geo = table.geo.get(asked)
    if asked not in table.rotations and (geo is None or not geo.rotates):
        return False
    if len(table.turning) >= table.cache_size:
        table.turning.clear()
    table.turning.add(key)
    return True
