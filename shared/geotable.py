"""A compiled location map: sorted network tables a responder searches per query.

The map compiler (`geocompile`) turns a database and an operator's rules into a partition of each
address space into CIDR blocks, each with one *order id* (an index into `GeoTable.orders`, the
distinct site orders). Adjacent blocks with equal orders are merged into the widest blocks the
data allows, so a block's prefix length is the widest correct ECS scope (RFC 7871 section 7.2.1:
a scope covers only addresses that get the same answer, and blocks never overlap).

The tables are flat arrays in native byte order (they travel between the processes of one
host): block starts and, per block, ``order id << 8 | prefix length``. `GeoIndex.find4` and
`find6` are one `bisect` each (two for an IPv6 block longer than /64) and return that packed
value, so a lookup allocates nothing but the integers `bisect` reads. An IPv4 lookup first
reads which blocks overlap its /16 (`v4_index`, 256 KiB), so its `bisect` probes a few blocks
instead of 18: half the time at 200,000 blocks. About 400,000 blocks cost 8 bytes each for IPv4
and 20 for IPv6 (bench/geomap.py measures it).

IPv4 addresses written in IPv6 (RFC 4291 compatible and mapped, RFC 2765 SIIT, the RFC 6052
well-known prefix, Teredo and 6to4) are looked up in the IPv4 table, as gdnsd does: their IPv6
blocks are markers, and the scope is the IPv4 block's length plus the IPv4 bits' offset.
gdnsd 3.8.1 gives the same site and scope for every prefix tests/test_geo_reference.py asks.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from typing import Final, Literal

import msgspec

V4_BITS: Final = 32
V6_BITS: Final = 128
SCOPE_BITS: Final = 8  # a block value is ``order id << SCOPE_BITS | prefix length``
SCOPE_MASK: Final = (1 << SCOPE_BITS) - 1
_HALF: Final = 64  # an IPv6 start is two 64-bit halves
_LOW_MASK: Final = (1 << _HALF) - 1
_V4_MASK: Final = (1 << V4_BITS) - 1
V4_INDEX_BITS: Final = 16  # `v4_index` has an entry per /16, and one past the last

# Order ids from here up mark the IPv4-like spaces of IPv6; real ids stay below.
MAX_ORDERS: Final = (1 << 24) - 256


class V4Space(msgspec.Struct, frozen=True):
    """An IPv6 network whose addresses carry an IPv4 address, and where its bits are."""

    name: str
    start: int
    length: int
    shift: int  # the IPv4 address is ``address >> shift & 0xFFFFFFFF``
    inverted: bool  # Teredo stores the client's address with every bit flipped
    offset: int  # an IPv6 scope is the IPv4 block's length plus this


V4_SPACES: Final = (
    V4Space("IPv4-compatible (RFC 4291)", 0, 96, 0, False, 96),
    V4Space("IPv4-mapped (RFC 4291)", 0xFFFF << 32, 96, 0, False, 96),
    V4Space("SIIT (RFC 2765)", 0xFFFF << 48, 96, 0, False, 96),
    V4Space("the well-known NAT64 prefix (RFC 6052)", 0x0064FF9B << 96, 96, 0, False, 96),
    V4Space("Teredo (RFC 4380)", 0x20010000 << 96, 32, 0, True, 96),
    V4Space("6to4 (RFC 3056)", 0x2002 << 112, 16, 80, False, 16),
)
V4_SPACE_BLOCK: Final = MAX_ORDERS << SCOPE_BITS  # block values at or above it are markers


def v4_space_order(index: int) -> int:
    """The order id that marks `V4_SPACES[index]` in the IPv6 table."""
    return MAX_ORDERS + index


class GeoTable(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """A compiled map as it travels to a responder: arrays as bytes, native byte order."""

    orders: tuple[tuple[str, ...], ...]  # order id -> site names, most preferred first
    v4_starts: bytes  # array('I'): first address of each block, ascending, from 0
    v4_blocks: bytes  # array('I'): order id << 8 | prefix length, per block
    v4_index: bytes  # array('I'): per /16, the block holding its first address; then the last
    v6_high: bytes  # array('Q'): the first 64 bits of each block's first address
    v6_low: bytes  # array('Q'): the last 64 bits
    v6_blocks: bytes  # array('I')
    # What the map was compiled from, for status and explanations.
    database: str = ""
    database_type: str = ""
    database_epoch: int = 0  # the database's build time (Unix seconds), 0 without one
    database_networks: int = 0  # networks read from it

    @property
    def nbytes(self) -> int:
        """Bytes of the tables (not counting the order names)."""
        return sum(map(len, (self.v4_starts, self.v4_blocks, self.v4_index, self.v6_high,
                             self.v6_low, self.v6_blocks)))


class GeoIndex:
    """The search side of a `GeoTable`: memoryviews over its bytes, no copies."""

    __slots__ = ("_v4_blocks", "_v4_index", "_v4_starts", "_v6_blocks", "_v6_high", "_v6_low",
                 "orders", "table")

    def __init__(self, table: GeoTable) -> None:
        self.table = table
        self.orders = table.orders
        self._v4_starts = _view(table.v4_starts, "I")
        self._v4_blocks = _view(table.v4_blocks, "I")
        self._v4_index = _view(table.v4_index, "I")
        self._v6_high = _view(table.v6_high, "Q")
        self._v6_low = _view(table.v6_low, "Q")
        self._v6_blocks = _view(table.v6_blocks, "I")
        _check(self._v4_starts, self._v4_blocks, "IPv4")
        if len(self._v4_index) != (1 << V4_INDEX_BITS) + 1 \
                or self._v4_index[-1] != len(self._v4_starts) - 1:
            raise ValueError("the IPv4 index does not fit the IPv4 tables")
        _check(self._v6_high, self._v6_blocks, "IPv6")
        if len(self._v6_low) != len(self._v6_high):
            raise ValueError("the IPv6 tables differ in length")

    def find4(self, address: int) -> int:
        """``order id << 8 | scope`` of an IPv4 address (an int)."""
        top = address >> (V4_BITS - V4_INDEX_BITS)
        return self._v4_blocks[bisect_right(self._v4_starts, address, self._v4_index[top],
                                            self._v4_index[top + 1] + 1) - 1]

    def find6(self, address: int) -> int:
        """``order id << 8 | scope`` of an IPv6 address (an int)."""
        high = address >> _HALF
        index = bisect_right(self._v6_high, high) - 1
        block = self._v6_blocks[index]
        if block & SCOPE_MASK > _HALF:  # blocks inside one /64: search the low halves too
            first = bisect_left(self._v6_high, high, 0, index)
            index = bisect_right(self._v6_low, address & _LOW_MASK, first, index + 1) - 1
            block = self._v6_blocks[index]
        if block >= V4_SPACE_BLOCK:
            return self._find_v4_like(block >> SCOPE_BITS, address)
        return block

    def find(self, version: int, address: int) -> tuple[int, int]:
        """(order id, scope) of an address of IP `version` (4 or 6): the slow path's
        convenience; the fast path calls `find4`/`find6` and splits the value itself."""
        block = self.find4(address) if version == 4 else self.find6(address)
        return block >> SCOPE_BITS, block & SCOPE_MASK

    def _find_v4_like(self, order: int, address: int) -> int:
        space = V4_SPACES[order - MAX_ORDERS]
        v4 = address >> space.shift & _V4_MASK
        return self.find4(v4 ^ _V4_MASK if space.inverted else v4) + space.offset


def _view(data: bytes, code: Literal["I", "Q"]) -> memoryview[int]:
    size = array(code).itemsize
    if len(data) % size:
        raise ValueError(f"a table of {len(data)} bytes is not a whole number of {code} items")
    return memoryview(data).cast(code)


def v4_index(starts: array[int]) -> array[int]:
    """Per /16, the index of the block holding its first address; then the last index."""
    index, block = array("I"), 0
    for top in range(1 << V4_INDEX_BITS):
        first = top << (V4_BITS - V4_INDEX_BITS)
        while block + 1 < len(starts) and starts[block + 1] <= first:
            block += 1
        index.append(block)
    index.append(len(starts) - 1)
    return index


def _check(starts: memoryview, blocks: memoryview, family: str) -> None:
    if len(starts) != len(blocks) or not len(starts) or starts[0] != 0:
        raise ValueError(f"the {family} tables do not cover the address space")
