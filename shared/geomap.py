"""Location maps: which sites, in which order, a client is sent to, compiled into a `GeoTable`.

A map says where clients go, in three layers; the first that applies wins:

1. ``networks``: explicit CIDR lists, each with a site order (a company's own networks, a
   cloud's ranges). They may not overlap one another.
2. The database (``database``, a MaxMind DB file: GeoIP2/GeoLite2 Country or City, DB-IP Lite,
   an ASN database): each of its networks has a location, and ``rules`` map locations to site
   orders. When several rules match, the most specific wins: one naming an ASN, then one naming
   a city, then the one whose subdivision is deepest in the location's list, then one naming a
   country, then one naming only a continent. A rule with ``auto`` orders its clients
   nearest-first instead of by a list.
3. Clients no rule matches (and addresses the database does not hold) get the map's ``auto``
   order, nearest-first by great-circle distance from the database's coordinates to the sites'
   (the nearest ``auto_limit`` sites with coordinates, ties in the sites' declared order), as
   gdnsd's ``auto_dc_coords`` does; without ``auto``, or without coordinates, they get
   ``default`` (all sites in their declared order when it is empty).

A location is the record's ``continent.code``, ``country.iso_code``, every
``subdivisions[].iso_code`` (most general first), ``city.names.en`` (compared case-blind),
``autonomous_system_number`` and ``location.latitude``/``longitude``: the GeoIP2 model. A rule
naming a subdivision or a city names its country too (city names repeat across countries).

IPv6 networks inside the IPv4-like spaces (see `geotable.V4_SPACES`) follow the IPv4 data;
an explicit network in ``::/96`` is the IPv4 network it spells (``::1/128`` is 0.0.0.1/32), as
in gdnsd, and one inside another IPv4-like space is an error. The database is walked once, at
compile time; the result holds no reference to it.
"""

from __future__ import annotations

import ipaddress
import itertools
import math
import mmap
import os
import stat
import struct
from array import array
from collections.abc import Iterable, Iterator, Mapping
from typing import Final, NamedTuple

import maxminddb
import msgspec

from healthdns.shared import geotable, mmdb
from healthdns.shared.errors import ConfigError
from healthdns.shared.geotable import GeoTable

CONTINENTS: Final = ("AF", "AN", "AS", "EU", "NA", "OC", "SA")  # MaxMind's continent codes
DEFAULT_AUTO_LIMIT: Final = 3  # gdnsd's: a first choice and two fallbacks
EARTH_RADIUS_KM: Final = 6371.0088  # the mean radius (IUGG)
MAX_DATABASE: Final = 2 << 30  # bytes; GeoIP2 City is about 130 MB
MAX_ASN: Final = 2**32 - 1
_RULE_FIELDS: Final = ("continent", "country", "subdivision", "city", "asn")


class _Spec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of the map description: immutable, unknown keys are errors."""


class Site(_Spec, frozen=True):
    """A place addresses are served from; coordinates (decimal degrees) enable nearest-first."""

    latitude: float | None = None
    longitude: float | None = None


class GeoRule(_Spec, frozen=True):
    """Clients whose location matches every field given here get `sites` (or, with `auto`,
    the sites nearest to them)."""

    continent: str = ""  # AF AN AS EU NA OC SA
    country: str = ""  # ISO 3166-1 alpha-2
    subdivision: str = ""  # ISO 3166-2 code without the country (any level); needs country
    city: str = ""  # English name; needs country
    asn: int = 0  # autonomous system number
    sites: tuple[str, ...] = ()
    auto: bool = False


class GeoNetworks(_Spec, frozen=True):
    """Explicit networks and the site order their clients get, whatever the database says."""

    cidrs: tuple[str, ...]
    sites: tuple[str, ...]


class GeoMap(_Spec, frozen=True):
    """Client location -> ordered sites."""

    database: str = ""  # path of a .mmdb file; "" maps by `networks` alone
    rules: tuple[GeoRule, ...] = ()
    networks: tuple[GeoNetworks, ...] = ()
    default: tuple[str, ...] = ()  # () is every site in declared order
    auto: bool = False
    auto_limit: int = DEFAULT_AUTO_LIMIT  # 0: every site with coordinates


class Location(NamedTuple):
    """What a database record says about where a client is."""

    continent: str = ""
    country: str = ""
    subdivisions: tuple[str, ...] = ()
    city: str = ""  # case-folded
    asn: int = 0
    latitude: float | None = None
    longitude: float | None = None


class Choice(NamedTuple):
    """A site order and why it applies ("rules[2]", "networks[0].cidrs[1]", "nearest", …)."""

    order: tuple[str, ...]
    reason: str


_NOWHERE: Final = Location()


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


def check_sites(sites: Mapping[str, Site], path: str) -> None:
    """Every site's coordinates are both given or both absent, and on the globe."""
    if not sites:
        raise ConfigError(path, "no sites are defined")
    for name, site in sites.items():
        where = f"{path}.{name}"
        if (site.latitude is None) != (site.longitude is None):
            missing = "longitude" if site.longitude is None else "latitude"
            raise ConfigError(f"{where}.{missing}", "is missing: coordinates need both")
        if site.latitude is None or site.longitude is None:
            continue
        if not -90.0 <= site.latitude <= 90.0:
            raise ConfigError(f"{where}.latitude", f"{site.latitude} is not in -90..90")
        if not -180.0 <= site.longitude <= 180.0:
            raise ConfigError(f"{where}.longitude", f"{site.longitude} is not in -180..180")


def distance(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two points (haversine, on a sphere)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dlat, dlon = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dlat / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def location_of(record: object) -> Location | None:
    """The location in a GeoIP2-style record; None when it says nothing usable."""
    if not isinstance(record, dict):
        return None
    latitude, longitude = _coordinates(record.get("location"))
    asn = record.get("autonomous_system_number")
    location = Location(
        continent=_text(record.get("continent"), "code").upper(),
        country=_text(record.get("country"), "iso_code").upper(),
        subdivisions=_subdivisions(record.get("subdivisions")),
        city=_text(_field(record.get("city"), "names"), "en").casefold(),
        asn=asn if type(asn) is int and 0 < asn <= MAX_ASN else 0,
        latitude=latitude, longitude=longitude)
    return location if location != _NOWHERE else None


class Chooser:
    """The site order a location gets under a map's rules: the one decision the compiler makes
    per distinct location, and the one an explanation reports."""

    def __init__(self, spec: GeoMap, sites: Mapping[str, Site], path: str) -> None:
        self.spec = spec
        self.names = tuple(sites)
        self.default = self.order(spec.default, f"{path}.default") if spec.default \
            else self.names
        self._placed: list[tuple[str, float, float]] = []
        for name, site in sites.items():
            if site.latitude is not None and site.longitude is not None:
                self._placed.append((name, site.latitude, site.longitude))
        if spec.auto_limit < 0:
            raise ConfigError(f"{path}.auto_limit", f"{spec.auto_limit} is negative")
        self._limit = spec.auto_limit or len(self._placed)
        if spec.auto and not self._placed:
            raise ConfigError(f"{path}.auto", "no site has coordinates to measure from")
        self._patterns, self._rule_orders = _index_rules(self, spec.rules, f"{path}.rules")

    def order(self, names: Iterable[str], path: str) -> tuple[str, ...]:
        """`names` as a site order: known sites, each once, at least one."""
        order = tuple(names)
        if not order:
            raise ConfigError(path, "names no site")
        for i, name in enumerate(order):
            if name not in self.names:
                raise ConfigError(f"{path}[{i}]", f"{name!r} is not a site (sites: "
                                  f"{', '.join(self.names)})")
            if name in order[:i]:
                raise ConfigError(f"{path}[{i}]", f"{name!r} is listed twice")
        return order

    def choose(self, location: Location | None) -> Choice:
        """The order for a client at `location` (None: the database has nothing on it)."""
        if location is None:
            return Choice(self.default, "default: the database has no location")
        rule = self._match(location)
        if rule is None:
            if self.spec.auto:
                return self._nearest_or_default(location, "nearest")
            return Choice(self.default, "default: no rule matches")
        where = f"rules[{rule}]"
        if self.spec.rules[rule].auto:
            return self._nearest_or_default(location, f"{where}: nearest")
        return Choice(self._rule_orders[rule], where)

    def nearest(self, latitude: float, longitude: float) -> tuple[str, ...]:
        """The sites with coordinates nearest to a point, at most `auto_limit` of them."""
        ranked = sorted(range(len(self._placed)), key=lambda i: (
            distance(latitude, longitude, self._placed[i][1], self._placed[i][2]), i))
        return tuple(self._placed[i][0] for i in ranked[:self._limit])

    def _nearest_or_default(self, location: Location, reason: str) -> Choice:
        if location.latitude is None or location.longitude is None:
            return Choice(self.default, f"{reason}, but the location has no coordinates: "
                          "default")
        return Choice(self.nearest(location.latitude, location.longitude), reason)

    def _match(self, location: Location) -> int | None:
        best: tuple[tuple[bool, bool, int, bool, bool], int] | None = None
        for fields, table in self._patterns.items():
            for depth, key in _keys(fields, location):
                rule = table.get(key)
                if rule is None:
                    continue
                rank = ("asn" in fields, "city" in fields, depth, "country" in fields,
                        "continent" in fields)
                if best is None or rank > best[0]:
                    best = (rank, rule)
        return None if best is None else best[1]


_Patterns = dict[tuple[str, ...], dict[tuple[str | int, ...], int]]


def _index_rules(chooser: Chooser, rules: tuple[GeoRule, ...], path: str
                 ) -> tuple[_Patterns, dict[int, tuple[str, ...]]]:
    """Rules by the fields they name, then by those fields' values; each list rule's order."""
    patterns: _Patterns = {}
    orders: dict[int, tuple[str, ...]] = {}
    for i, rule in enumerate(rules):
        where = f"{path}[{i}]"
        fields, key = _rule_key(rule, where)
        if rule.auto:
            if rule.sites:
                raise ConfigError(f"{where}.sites", "a rule has sites or auto, not both")
            if not chooser._placed:
                raise ConfigError(f"{where}.auto", "no site has coordinates to measure from")
        else:
            orders[i] = chooser.order(rule.sites, f"{where}.sites")
        table = patterns.setdefault(fields, {})
        if key in table:
            raise ConfigError(where, f"matches the same clients as {path}[{table[key]}]")
        table[key] = i
    return patterns, orders


def _rule_key(rule: GeoRule, where: str) -> tuple[tuple[str, ...], tuple[str | int, ...]]:
    if rule.continent and rule.continent.upper() not in CONTINENTS:
        raise ConfigError(f"{where}.continent", f"{rule.continent!r} is not one of "
                          f"{', '.join(CONTINENTS)}")
    if rule.country and not (len(rule.country) == 2 and rule.country.isascii()
                             and rule.country.isalpha()):
        raise ConfigError(f"{where}.country", f"{rule.country!r} is not an ISO 3166-1 "
                          "two-letter code")
    if rule.subdivision and not (1 <= len(rule.subdivision) <= 3 and rule.subdivision.isascii()
                                 and rule.subdivision.isalnum()):
        raise ConfigError(f"{where}.subdivision", f"{rule.subdivision!r} is not an ISO 3166-2 "
                          "subdivision code (1-3 letters or digits, without the country)")
    if (rule.subdivision or rule.city) and not rule.country:
        field = "subdivision" if rule.subdivision else "city"
        raise ConfigError(f"{where}.{field}", "names a place without its country")
    if rule.city and not rule.city.strip():
        raise ConfigError(f"{where}.city", "is blank")
    if not 0 <= rule.asn <= MAX_ASN:
        raise ConfigError(f"{where}.asn", f"{rule.asn} is not an AS number (1-{MAX_ASN})")
    values: dict[str, str | int] = {
        "continent": rule.continent.upper(), "country": rule.country.upper(),
        "subdivision": rule.subdivision.upper(), "city": rule.city.strip().casefold(),
        "asn": rule.asn}
    fields = tuple(f for f in _RULE_FIELDS if values[f])
    if not fields:
        raise ConfigError(where, f"names none of {', '.join(_RULE_FIELDS)}")
    return fields, tuple(values[f] for f in fields)


def _keys(fields: tuple[str, ...], location: Location
          ) -> Iterator[tuple[int, tuple[str | int, ...]]]:
    """(subdivision depth, key) for each way `location` fills `fields` (deepest first)."""
    values: dict[str, str | int] = {"continent": location.continent,
                                    "country": location.country, "city": location.city,
                                    "asn": location.asn}
    if "subdivision" not in fields:
        key = tuple(values[f] for f in fields)
        if all(key):
            yield 0, key
        return
    for depth in range(len(location.subdivisions), 0, -1):
        values["subdivision"] = location.subdivisions[depth - 1]
        key = tuple(values[f] for f in fields)
        if all(key):
            yield depth, key


# --- reading a record ---------------------------------------------------------------------


def _field(value: object, name: str) -> object:
    return value.get(name) if isinstance(value, dict) else None


def _text(value: object, name: str) -> str:
    found = _field(value, name)
    return found if isinstance(found, str) else ""


def _subdivisions(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(code.upper() for code in (_text(item, "iso_code") for item in value) if code)


def _coordinates(value: object) -> tuple[float | None, float | None]:
    latitude, longitude = _field(value, "latitude"), _field(value, "longitude")
    if isinstance(latitude, int | float) and isinstance(longitude, int | float) \
            and -90 <= latitude <= 90 and -180 <= longitude <= 180:
        return float(latitude), float(longitude)
    return None, None


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
