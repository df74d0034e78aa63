"""A location map (`shared.geomap`) compiled into a `GeoTable`: the explicit networks over the
database's networks, each with the site order its location gets (`shared.geochoice`), as a
partition of each address space into CIDR blocks.

The database is walked once, at compile time; the result holds no reference to it.
"""

from __future__ import annotations

import ipaddress
import itertools
import mmap
import os
import stat
import struct
from array import array
from collections.abc import Iterator, Mapping
from typing import Final, NamedTuple

import maxminddb

from healthdns.shared import geotable, mmdb
from healthdns.shared.errors import ConfigError
from healthdns.shared.geochoice import Chooser, Location, location_of
from healthdns.shared.geomap import GeoMap, Site, check_sites
from healthdns.shared.geotable import GeoTable

MAX_DATABASE: Final = 2 << 30  # bytes; GeoIP2 City is about 130 MB


def compile_map(spec: GeoMap, sites: Mapping[str, Site], path: str = "map",
                sites_path: str = "sites") -> GeoTable:
    """The tables of `spec`; a `ConfigError` naming the field when anything is wrong.

    `sites` is every site in declared order; `path` and `sites_path` are where the map and the
    sites are in the configuration, for the errors.
    """
    check_sites(sites, sites_path)
    chooser = Chooser(spec, sites, path)
    orders: dict[tuple[str, ...], int] = {chooser.default: 0}
    nets4, nets6 = _explicit(spec, chooser, orders, path)
    if spec.database:
        db = _read_database(spec.database, chooser, orders, f"{path}.database")
    else:
        db = _Database(_Runs.whole(0), _Runs.whole(0), "", 0, 0)
    runs4 = db.v4.overlay(nets4, geotable.V4_BITS)
    runs6 = db.v6.overlay(nets6, geotable.V6_BITS).overlay(_v4_space_marks(),
                                                           geotable.V6_BITS)
    if len(orders) > geotable.MAX_ORDERS:
        raise ConfigError(path, f"gives {len(orders)} distinct site orders, more than "
                          f"{geotable.MAX_ORDERS}")
    return _pack(runs4, runs6, tuple(orders), spec.database, db)


def check_database(file: str, field: str) -> None:
    """That `file` opens as a MaxMind DB file (its metadata reads: a truncated file has none);
    a `ConfigError` naming the field and the file when not. The walk of its tree, at compile
    time, finds the rest."""
    fd = _open(file, field)
    try:
        _reader(fd, file, field).close()
    finally:
        os.close(fd)


# --- building the tables ------------------------------------------------------------------


class _Runs:
    """A partition of an address space into runs of equal order id: run i covers
    ``starts[i]`` up to the next start (or the end of the space). Adjacent runs differ."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ids: list[int] = []

    @classmethod
    def whole(cls, order: int) -> _Runs:
        runs = cls()
        runs.add(0, order)
        return runs

    def add(self, start: int, order: int) -> None:
        """Begin a run at `start` (beyond the last one's start) unless it continues the last."""
        if not self.ids or self.ids[-1] != order:
            self.starts.append(start)
            self.ids.append(order)

    def overlay(self, upper: list[tuple[int, int, int]], bits: int) -> _Runs:
        """These runs with the sorted, disjoint ``(start, end, id)`` ranges of `upper` on top."""
        out, size = _Runs(), 1 << bits
        index, position = 0, 0
        for start, end, order in (*upper, (size, size, -1)):
            while position < start:  # the lower runs between the upper ranges
                while index + 1 < len(self.starts) and self.starts[index + 1] <= position:
                    index += 1
                out.add(position, self.ids[index])
                following = self.starts[index + 1] if index + 1 < len(self.starts) else size
                position = min(start, following)
            if start < size:
                out.add(start, order)
                position = end
        return out

    def blocks(self, bits: int) -> Iterator[tuple[int, int, int]]:
        """(start, prefix length, id) of the widest CIDR blocks that tile each run."""
        size = 1 << bits
        ends = (*self.starts[1:], size)
        for start, end, order in zip(self.starts, ends, self.ids, strict=True):
            while start < end:
                align = (start & -start).bit_length() - 1 if start else bits
                width = min(align, (end - start).bit_length() - 1)
                yield start, bits - width, order
                start += 1 << width


class _RunBuilder:
    """Runs from a database's networks, which arrive in ascending order; gaps get `default`."""

    def __init__(self, bits: int, default: int) -> None:
        self.runs = _Runs()
        self.bits = bits
        self.default = default
        self.position = 0

    def add(self, start: int, length: int, order: int) -> bool:
        """False when the network is not above the previous one (a damaged tree)."""
        if start < self.position:
            return False
        if start > self.position:
            self.runs.add(self.position, self.default)
        self.runs.add(start, order)
        self.position = start + (1 << (self.bits - length))
        return True

    def finish(self) -> _Runs:
        if self.position < 1 << self.bits:
            self.runs.add(self.position, self.default)
        return self.runs


class _Database(NamedTuple):
    v4: _Runs
    v6: _Runs
    kind: str
    epoch: int
    networks: int


def _read_database(file: str, chooser: Chooser, orders: dict[tuple[str, ...], int],
                   field: str) -> _Database:
    fd = _open(file, field)
    try:
        reader = _reader(fd, file, field)
        try:
            return _walk(reader, fd, chooser, orders)
        except (maxminddb.InvalidDatabaseError, ValueError, IndexError, KeyError, TypeError,
                UnicodeDecodeError, RecursionError, struct.error) as e:
            raise ConfigError(field, f"{file} is damaged: {e}") from None
        finally:
            reader.close()
    finally:
        os.close(fd)


def _walk(reader: maxminddb.Reader, fd: int, chooser: Chooser,
          orders: dict[tuple[str, ...], int]) -> _Database:
    """Runs from every network of the database; each distinct record is decoded once."""
    metadata = reader.metadata()
    shape = mmdb.Shape(metadata.node_count, metadata.record_size, metadata.ip_version)
    v4 = _RunBuilder(geotable.V4_BITS, 0)
    v6 = _RunBuilder(geotable.V6_BITS, 0)
    by_pointer: dict[int, int] = {}
    by_location: dict[Location | None, int] = {}
    count = 0
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as buffer:
        for leaf in mmdb.networks(buffer, shape):
            order = by_pointer.get(leaf.pointer)
            if order is None:
                location = location_of(reader.get(_address(leaf.version, leaf.start)))
                order = by_location.get(location)
                if order is None:
                    order = by_location[location] = orders.setdefault(
                        chooser.choose(location).order, len(orders))
                by_pointer[leaf.pointer] = order
            if not (v4 if leaf.version == 4 else v6).add(leaf.start, leaf.length, order):
                raise maxminddb.InvalidDatabaseError("its networks are out of order")
            if leaf.version == 6 and leaf.start == 0 and leaf.length <= mmdb.IPV4_DEPTH:
                v4.add(0, 0, order)  # an IPv6 network over all of ::/96 holds all of IPv4
            count += 1
    return _Database(v4.finish(), v6.finish(), str(metadata.database_type),
                     int(metadata.build_epoch), count)


def _address(version: int, start: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.IPv4Address(start) if version == 4 else ipaddress.IPv6Address(start)


def _open(file: str, field: str) -> int:
    """A descriptor of the database file: a regular file of bounded size. Everything after
    reads this descriptor, so a file replaced meanwhile cannot mix two databases."""
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise ConfigError(field, f"{file}: cannot read it: {e.strerror}") from None
    status = os.fstat(fd)
    problem = "" if stat.S_ISREG(status.st_mode) else "is not a regular file"
    if status.st_size > MAX_DATABASE:
        problem = f"is {status.st_size} bytes, more than the {MAX_DATABASE >> 20} MiB a " \
            "database may have"
    if problem:
        os.close(fd)
        raise ConfigError(field, f"{file} {problem}")
    return fd


def _reader(fd: int, file: str, field: str) -> maxminddb.Reader:
    proc = f"/proc/self/fd/{fd}"  # the open file, whatever the path names by now
    try:
        return maxminddb.open_database(proc)
    except OSError as e:
        raise ConfigError(field, f"{file}: cannot read it: {e.strerror}") from None
    except (maxminddb.InvalidDatabaseError, ValueError) as e:
        reason = str(e).replace(proc, file)
        raise ConfigError(field, f"{file} is not a MaxMind DB file, or is truncated "
                          f"({reason})") from None


def _explicit(spec: GeoMap, chooser: Chooser, orders: dict[tuple[str, ...], int], path: str
              ) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    """The explicit networks per family as sorted (start, end, id); overlaps are errors."""
    found: dict[int, list[tuple[int, int, int, str, str]]] = {4: [], 6: []}
    for i, group in enumerate(spec.networks):
        where = f"{path}.networks[{i}]"
        order = chooser.order(group.sites, f"{where}.sites")
        oid = orders.setdefault(order, len(orders))
        if not group.cidrs:
            raise ConfigError(f"{where}.cidrs", "lists no networks")
        for j, text in enumerate(group.cidrs):
            field = f"{where}.cidrs[{j}]"
            version, start, length = _network(text, field)
            bits = geotable.V4_BITS if version == 4 else geotable.V6_BITS
            found[version].append((start, start + (1 << (bits - length)), oid, field, text))
    return _disjoint(found[4]), _disjoint(found[6])


def _disjoint(networks: list[tuple[int, int, int, str, str]]) -> list[tuple[int, int, int]]:
    networks.sort(key=lambda n: (n[0], -n[1]))
    for before, after in itertools.pairwise(networks):
        if after[0] < before[1]:
            raise ConfigError(after[3], f"{after[4]} overlaps {before[4]} ({before[3]})")
    return [(start, end, oid) for start, end, oid, _, _ in networks]


def _network(text: str, field: str) -> tuple[int, int, int]:
    """(IP version, start, prefix length) of a CIDR; ::/96 networks are IPv4 ones."""
    try:
        network = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as e:
        raise ConfigError(field, f"{text!r} is not a network: {e}") from None
    start, length = int(network.network_address), network.prefixlen
    if network.version == 4:
        return 4, start, length
    for space in geotable.V4_SPACES:
        if length >= space.length and start >> (128 - space.length) == \
                space.start >> (128 - space.length):
            if space.start == 0 and space.length == 96:
                return 4, start, length - 96
            raise ConfigError(field, f"{text} lies in the {space.name} space of IPv6, which "
                              "follows the IPv4 networks: write it as an IPv4 network")
    return 6, start, length


def _v4_space_marks() -> list[tuple[int, int, int]]:
    return [(space.start, space.start + (1 << (128 - space.length)),
             geotable.v4_space_order(i)) for i, space in enumerate(geotable.V4_SPACES)]


def _pack(runs4: _Runs, runs6: _Runs, orders: tuple[tuple[str, ...], ...], file: str,
          db: _Database) -> GeoTable:
    v4_starts, v4_blocks = array("I"), array("I")
    for start, length, order in runs4.blocks(geotable.V4_BITS):
        v4_starts.append(start)
        v4_blocks.append(order << geotable.SCOPE_BITS | length)
    high, low, v6_blocks = array("Q"), array("Q"), array("I")
    for start, length, order in runs6.blocks(geotable.V6_BITS):
        high.append(start >> 64)
        low.append(start & 0xFFFFFFFFFFFFFFFF)
        v6_blocks.append(order << geotable.SCOPE_BITS | length)
    return GeoTable(orders=orders, v4_starts=v4_starts.tobytes(), v4_blocks=v4_blocks.tobytes(),
                    v4_index=geotable.v4_index(v4_starts).tobytes(),
                    v6_high=high.tobytes(), v6_low=low.tobytes(), v6_blocks=v6_blocks.tobytes(),
                    database=file, database_type=db.kind, database_epoch=db.epoch,
                    database_networks=db.networks)
