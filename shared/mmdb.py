"""The networks of a MaxMind DB file: its search tree walked once, in address order.

`maxminddb`'s reader iterates networks too, but builds an `ipaddress` network and decodes a
whole record for each: about 15 µs a network, 6 s for a GeoLite2-Country-sized file. A map
needs each distinct record once (a Country database has a few thousand among 400,000
networks), so `networks` walks the tree (MaxMind DB format 2.0: nodes of two 24-, 28- or
32-bit records) and yields each network with the data pointer of its record; the caller
decodes a record with the reader the first time its pointer appears. About 1 µs a node.

As `maxminddb` does, the walk skips the aliases of the IPv4 subtree (``::ffff:0:0/96``,
``2002::/16`` and others point at the node of ``::/96`` in MaxMind's IPv6 databases) and treats
a node reached twice, or a node below the last address bit, as a damaged file.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable, Iterator
from typing import Final, NamedTuple

from maxminddb import InvalidDatabaseError

IPV4_DEPTH: Final = 96  # where an IPv6 database keeps IPv4: ::/96
METADATA_MARKER: Final = b"\xab\xcd\xefMaxMind.com"
_DATA_SEPARATOR: Final = 16  # zero bytes between the tree and the data section
_METADATA_WINDOW: Final = 128 * 1024  # the format keeps the marker in the last 128 KiB
_Children = Callable[[int], tuple[int, int]]


class Leaf(NamedTuple):
    """A network with data: its IP version, first address (an int), prefix length, and the
    offset of its record in the data section (equal offsets: the same record)."""

    version: int
    start: int
    length: int
    pointer: int


class Shape(NamedTuple):
    """The metadata fields the tree walk needs."""

    node_count: int
    record_size: int
    ip_version: int


def networks(buffer: bytes | mmap.mmap, shape: Shape) -> Iterator[Leaf]:
    """Every network with data in `buffer` (the whole file), ascending."""
    view = memoryview(buffer)
    try:
        yield from _walk(view, _data_size(buffer, shape), shape)
    finally:
        view.release()  # the caller may close an mmap under it


def _walk(view: memoryview, data_size: int, shape: Shape) -> Iterator[Leaf]:
    count, bits = shape.node_count, 128 if shape.ip_version == 6 else 32
    children = _children(view, shape)
    v4_node = _ipv4_start(children, count) if bits == 128 else -1
    seen = bytearray(count)
    # Records still to visit, the next on top: a record's value, its depth, and the first
    # `depth` bits of its network. A value above `count` points at data, `count` means none.
    stack = [(0, 0, 0)]
    while stack:
        node, depth, prefix = stack.pop()
        if node > count:
            yield _leaf(node - count - _DATA_SEPARATOR, data_size, prefix, depth, bits)
            continue
        if node == v4_node and prefix:
            continue  # an alias of the IPv4 subtree
        if depth >= bits or seen[node]:
            raise InvalidDatabaseError("the search tree is damaged: it loops or is too deep")
        seen[node] = 1
        left, right = children(node)
        if right != count:
            stack.append((right, depth + 1, prefix << 1 | 1))
        if left != count:
            stack.append((left, depth + 1, prefix << 1))


def _leaf(pointer: int, data_size: int, prefix: int, depth: int, bits: int) -> Leaf:
    if pointer >= data_size:
        raise InvalidDatabaseError(f"a record points {pointer} bytes into a data section of "
                                   f"{data_size}")
    start = prefix << (bits - depth)
    if bits == 128 and depth >= IPV4_DEPTH and start >> 32 == 0:
        return Leaf(4, start, depth - IPV4_DEPTH, pointer)
    return Leaf(6 if bits == 128 else 4, start, depth, pointer)


def _data_size(buffer: bytes | mmap.mmap, shape: Shape) -> int:
    marker = buffer.rfind(METADATA_MARKER, max(0, len(buffer) - _METADATA_WINDOW))
    size = marker - _tree_size(shape) - _DATA_SEPARATOR
    if marker < 0 or size < 0:
        raise InvalidDatabaseError("the search tree is larger than the file")
    return size


def _tree_size(shape: Shape) -> int:
    return shape.node_count * shape.record_size // 4


def _ipv4_start(children: _Children, count: int) -> int:
    """The node of ::/96, or -1 when the path to it ends before it."""
    node = 0
    for _ in range(IPV4_DEPTH):
        if node >= count:
            return -1
        node = children(node)[0]
    return node if node < count else -1


def _children(view: memoryview, shape: Shape) -> _Children:
    """A function of a node number giving its two records."""
    size = shape.record_size
    if size not in (24, 28, 32):
        raise InvalidDatabaseError(f"the record size {size} is not 24, 28 or 32")
    if _tree_size(shape) + _DATA_SEPARATOR > len(view):
        raise InvalidDatabaseError("the search tree is larger than the file")
    if size == 32:
        pair = struct.Struct(">II").unpack_from

        def read32(node: int) -> tuple[int, int]:
            left, right = pair(view, node * 8)
            return left, right
        return read32
    if size == 24:
        parts = struct.Struct(">HBHB").unpack_from

        def read24(node: int) -> tuple[int, int]:
            a, b, c, d = parts(view, node * 6)
            return a << 8 | b, c << 8 | d
        return read24
    parts28 = struct.Struct(">HBBHB").unpack_from

    def read28(node: int) -> tuple[int, int]:
        a, b, middle, c, d = parts28(view, node * 7)
        return (middle & 0xF0) << 20 | a << 8 | b, (middle & 0x0F) << 24 | c << 8 | d
    return read28
