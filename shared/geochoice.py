"""The site order a client's location gets under a map's rules (`shared.geomap` says how):
the one decision the compiler (`shared.geocompile`) makes per distinct location, and the one an
explanation reports.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Final, NamedTuple

from healthdns.shared.errors import ConfigError
from healthdns.shared.geomap import MAX_ASN, GeoMap, GeoRule, Site, rule_key

EARTH_RADIUS_KM: Final = 6371.0088  # the mean radius (IUGG)


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
        fields, key = rule_key(rule, where)
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
