"""MaxMind DB files for the tests and benchmarks, generated here (nothing is downloaded).

Two writers:

* `write_mmdb` uses the `mmdb-writer` package: the reference for small databases (it inserts a
  network in about 100 µs and keeps Python objects per tree node, so 400,000 networks take over
  a minute and a gigabyte);
* `write_sorted` writes sorted, disjoint networks straight in the MaxMind DB format (version
  2.0: a binary search tree of 32-bit records, a data section, metadata), built from the
  specification: a GeoLite2-Country-sized file in a few seconds. A test checks that both
  writers' files read back identically.

Records follow the GeoIP2 model (`record`). Networks come from documentation, private and
loopback prefixes only.
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import random
import struct
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mmdb_writer import MMDBWriter
from netaddr import IPSet

Record = dict[str, Any]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DOC_V4 = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
PRIVATE_V4 = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
LOOPBACK_V4 = "127.0.0.0/8"
DOC_V6 = "2001:db8::/32"
PRIVATE_V6 = "fd00::/8"

CONTINENT_NAMES = {"AF": "Africa", "AN": "Antarctica", "AS": "Asia", "EU": "Europe",
                   "NA": "North America", "OC": "Oceania", "SA": "South America"}
LANGUAGES = ("de", "en", "es", "fr", "ja", "pt-BR", "ru", "zh-CN")  # GeoLite2's


def record(continent: str = "", country: str = "", subdivisions: Sequence[str] = (),
           city: str = "", asn: int = 0, latitude: float | None = None,
           longitude: float | None = None, names: bool = False) -> Record:
    """A GeoIP2-style record; `names` adds names in every language, as GeoLite2 has."""
    out: Record = {}
    if continent:
        out["continent"] = {"code": continent, "geoname_id": 6255148 + ord(continent[0])}
        if names:
            out["continent"]["names"] = _names(CONTINENT_NAMES.get(continent, continent))
    if country:
        out["country"] = {"iso_code": country, "geoname_id": 2921044 + ord(country[0])}
        out["registered_country"] = {"iso_code": country}
        if names:
            out["country"]["names"] = _names(f"Country {country}")
    if subdivisions:
        out["subdivisions"] = [{"iso_code": code} for code in subdivisions]
    if city:
        out["city"] = {"names": {"en": city}}
    if latitude is not None and longitude is not None:
        out["location"] = {"latitude": latitude, "longitude": longitude,
                           "accuracy_radius": 100}
    if asn:
        out["autonomous_system_number"] = asn
        out["autonomous_system_organization"] = f"AS{asn} Example"
    return out


def _names(name: str) -> dict[str, str]:
    return {language: f"{name} ({language})" for language in LANGUAGES}


def write_mmdb(path: Path, networks: Iterable[tuple[str, Record]], ip_version: int = 6,
               database_type: str = "GeoIP2-City") -> Path:
    """A database of `networks` (CIDR text, record) written by mmdb-writer; IPv4 networks of
    an IPv6 database sit in ::/96, as MaxMind's do."""
    writer = MMDBWriter(ip_version=ip_version, ipv4_compatible=ip_version == 6,
                        database_type=database_type, languages=["en"],
                        description="healthdns test data")
    for cidr, content in networks:
        writer.insert_network(IPSet([cidr]), content)
    writer.to_db_file(str(path))
    return path


# --- the direct writer ----------------------------------------------------------------------

_POINTER, _STRING, _DOUBLE, _UINT16, _UINT32, _MAP = 1, 2, 3, 5, 6, 7
_UINT64, _ARRAY, _BOOLEAN = 9, 11, 14
METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"


class Uint(int):
    """An unsigned integer of a fixed type (the metadata's fields have exact types)."""

    kind = _UINT32


class Uint16(Uint):
    kind = _UINT16


class Uint64(Uint):
    kind = _UINT64


def encode(value: object) -> bytes:
    """One value in the MaxMind DB data format; a plain int is a uint32 or uint64."""
    if isinstance(value, Uint):
        data = value.to_bytes((value.bit_length() + 7) // 8, "big")
        return _control(value.kind, len(data)) + data
    if isinstance(value, bool):
        return _control(_BOOLEAN, int(value))
    if isinstance(value, str):
        data = value.encode()
        return _control(_STRING, len(data)) + data
    if isinstance(value, float):
        return _control(_DOUBLE, 8) + struct.pack(">d", value)
    if isinstance(value, int):
        if not 0 <= value < 1 << 64:
            raise ValueError(f"{value} is not an unsigned 64-bit integer")
        data = value.to_bytes((value.bit_length() + 7) // 8, "big")
        return _control(_UINT32 if value < 1 << 32 else _UINT64, len(data)) + data
    if isinstance(value, dict):
        return _control(_MAP, len(value)) + b"".join(
            encode(str(k)) + encode(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return _control(_ARRAY, len(value)) + b"".join(map(encode, value))
    raise TypeError(f"cannot encode {type(value).__name__}")


def _control(kind: int, size: int) -> bytes:
    if size < 29:
        extra, code = b"", size
    elif size < 285:
        extra, code = bytes((size - 29,)), 29
    elif size < 65821:
        extra, code = (size - 285).to_bytes(2, "big"), 30
    else:
        extra, code = (size - 65821).to_bytes(3, "big"), 31
    if kind <= 7:
        return bytes((kind << 5 | code,)) + extra
    return bytes((code, kind - 7)) + extra


_EMPTY = -1  # a record with no data; data records are -2 - index into the record list


def write_sorted(path: Path, networks: Sequence[tuple[Network, int]], records: Sequence[Record],
                 database_type: str = "GeoLite2-Country", ip_version: int = 6) -> Path:
    """A database of sorted, disjoint `networks`, each with an index into `records`."""
    bits = 128 if ip_version == 6 else 32
    keyed = [(_position(net, bits), net.prefixlen + (bits - net.max_prefixlen), rec)
             for net, rec in networks]
    starts = [start for start, _, _ in keyed]
    if any(b <= a for a, b in itertools.pairwise(starts)):
        raise ValueError("networks are not sorted and disjoint")
    left: list[int] = []
    right: list[int] = []
    root = _subtree(keyed, starts, 0, len(keyed), 0, 0, bits, left, right)
    if root == _EMPTY:
        left, right = [_EMPTY], [_EMPTY]  # no networks: a root with no data
    elif root != 0:
        raise ValueError("a network of the whole address space is not a database")
    data, offsets = bytearray(), []
    for content in records:
        offsets.append(len(data))
        data += encode(content)
    count = len(left)
    tree = bytearray()
    for pair in zip(left, right, strict=True):
        for child in pair:
            value = child if child >= 0 else count if child == _EMPTY \
                else count + 16 + offsets[-2 - child]
            tree += value.to_bytes(4, "big")
    metadata = {"node_count": Uint(count), "record_size": Uint16(32),
                "ip_version": Uint16(ip_version), "database_type": database_type,
                "languages": ["en"], "binary_format_major_version": Uint16(2),
                "binary_format_minor_version": Uint16(0), "build_epoch": Uint64(time.time()),
                "description": {"en": "healthdns test data"}}
    path.write_bytes(bytes(tree) + bytes(16) + bytes(data) + METADATA_MARKER + encode(metadata))
    return path


def _position(network: Network, bits: int) -> int:
    return int(network.network_address)  # IPv4 in an IPv6 tree: ::/96, the same integer


def _subtree(keyed: list[tuple[int, int, int]], starts: list[int], lo: int, hi: int,
             depth: int, base: int, bits: int, left: list[int], right: list[int]) -> int:
    """The record for the subtree at `base`/`depth` holding networks ``keyed[lo:hi]``."""
    if lo == hi:
        return _EMPTY
    start, length, content = keyed[lo]
    if length == depth:
        if hi - lo > 1 or start != base:
            raise ValueError("networks overlap or are not aligned")
        return -2 - content
    node = len(left)
    left.append(_EMPTY)
    right.append(_EMPTY)
    middle = base | 1 << (bits - depth - 1)
    split = bisect.bisect_left(starts, middle, lo, hi)
    left[node] = _subtree(keyed, starts, lo, split, depth + 1, base, bits, left, right)
    right[node] = _subtree(keyed, starts, split, hi, depth + 1, middle, bits, left, right)
    return node


# --- a database the size of GeoLite2-Country ----------------------------------------------

COUNTRIES = tuple(f"{a}{b}" for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" for b in "ABCDEFGHIJ")[:250]


def country_of(index: int) -> tuple[str, str]:
    """(continent, country) of the index-th generated country."""
    return tuple(CONTINENT_NAMES)[index % 7], COUNTRIES[index]  # type: ignore[return-value]


def country_sized(path: Path, v4: int = 250_000, v6: int = 150_000, seed: int = 1,
                  same_country: float = 0.6) -> Path:
    """A Country-model database with about `v4` IPv4 networks tiling 10.0.0.0/8 and `v6`
    IPv6 networks tiling 2001:db8::/32, 250 countries, each network in its predecessor's country
    with probability `same_country` (real databases come in such runs)."""
    rng = random.Random(seed)
    records = [record(*country_of(i), names=True) for i in range(len(COUNTRIES))]
    networks: list[tuple[Network, int]] = []
    country = 0
    for block, count, lengths in ((ipaddress.ip_network("10.0.0.0/8"), v4, (20, 30)),
                                  (ipaddress.ip_network(DOC_V6), v6, (36, 64))):
        for network in _tiling(rng, block, count, lengths):
            if rng.random() > same_country:
                country = rng.randrange(len(COUNTRIES))
            networks.append((network, country))
    return write_sorted(path, networks, records)


def _tiling(rng: random.Random, block: Network, count: int, lengths: tuple[int, int]
            ) -> list[Network]:
    """About `count` disjoint networks in `block`, sorted, with a few gaps between them."""
    bits = block.max_prefixlen
    start, end = int(block.network_address), int(block.broadcast_address) + 1
    mean = 3 * (end - start) // count  # aligned powers of two below the draw: a third of it
    out: list[Network] = []
    position = start
    while position < end:
        align = (position & -position).bit_length() - 1 if position else bits
        size = min(1 << align, end - position)
        want = max(1 << (bits - lengths[1]), min(1 << (bits - lengths[0]),
                                                  int(rng.expovariate(1 / mean)) + 1))
        while size > want:
            size >>= 1
        if rng.random() > 0.05:  # one in twenty is a gap the database does not hold
            out.append(ipaddress.ip_network((position, bits - size.bit_length() + 1)))
        position += size
    return out
