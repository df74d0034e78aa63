"""An independent model of location maps, written from the documentation of `shared/geomap.py`
(the three layers, rule specificity, nearest-first) and `shared/geotable.py` (IPv4-like spaces
of IPv6, scopes as the widest uniform blocks).

It works from the map's description and the list of networks and records the test wrote into
the database, never from the database file or the compiled tables, and it finds scopes by
brute force over a small universe of addresses: every database and explicit network lies
inside `UNIVERSE[version]`, so everything outside gets the default order. It imports only
the spec structs (`geomap`) and `distance` (`geochoice`, whose formula test_geomap.py checks
against published distances on its own).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from healthdns.shared.geochoice import distance
from healthdns.shared.geomap import GeoMap, GeoRule, Site

UNIVERSE = {4: ipaddress.ip_network("10.0.0.0/23"), 6: ipaddress.ip_network("2001:db8::/120")}
BITS = {4: 32, 6: 128}

# (network, where the IPv4 address is: bit offset from the right, flipped, scope offset)
V4_LIKE = (
    (ipaddress.ip_network("::/96"), 0, False, 96),
    (ipaddress.ip_network("::ffff:0:0/96"), 0, False, 96),
    (ipaddress.ip_network("::ffff:0:0:0/96"), 0, False, 96),
    (ipaddress.ip_network("64:ff9b::/96"), 0, False, 96),
    (ipaddress.ip_network("2001::/32"), 0, True, 96),
    (ipaddress.ip_network("2002::/16"), 80, False, 16),
)


@dataclasses.dataclass(frozen=True)
class Entry:
    """A network the test put in the database, with its record."""

    cidr: str
    record: Any

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.cidr)


class Model:
    def __init__(self, spec: GeoMap, sites: Mapping[str, Site], database: Sequence[Entry]
                 ) -> None:
        self.spec = spec
        self.sites = sites
        self.default = tuple(spec.default) or tuple(sites)
        self._explicit = [(span(as_written(cidr)), tuple(group.sites))
                          for group in spec.networks for cidr in group.cidrs]
        self._database = [(span(entry.network), entry.record) for entry in database]
        self._orders: dict[tuple[int, int], tuple[str, ...]] = {}
        self._uniform: dict[int, list[set[int]]] = {}
        self._all_default: dict[int, bool] = {}

    # --- which order ------------------------------------------------------------------

    def order(self, version: int, address: int) -> tuple[str, ...]:
        """The site order of a client (IPv4-like IPv6 addresses are their IPv4 address)."""
        like = v4_like(version, address)
        if like is not None:
            return self.order(4, like[0])
        key = (version, address)
        if key not in self._orders:
            self._orders[key] = self._decide(version, address)
        return self._orders[key]

    def _decide(self, version: int, address: int) -> tuple[str, ...]:
        for (kind, first, last), sites in self._explicit:  # layer 1: explicit networks
            if kind == version and first <= address <= last:
                return sites
        record = next((record for (kind, first, last), record in self._database
                       if kind == version and first <= address <= last), None)
        return self.order_of_record(record)

    def order_of_record(self, record: Any) -> tuple[str, ...]:
        """The order of a client the database holds `record` for (None: holds nothing)."""
        location = read_location(record)
        if location is None:
            return self.default
        rule = self.best_rule(location)
        if rule is None:
            return self.nearest_or_default(location) if self.spec.auto else self.default
        if rule.auto:
            return self.nearest_or_default(location)
        return tuple(rule.sites)

    def best_rule(self, location: dict[str, Any]) -> GeoRule | None:
        """The most specific matching rule: ASN, then city, then the deepest subdivision,
        then country, then continent."""
        ranked = []
        for rule in self.spec.rules:
            depth = matches(rule, location)
            if depth is not None:
                ranked.append(((bool(rule.asn), bool(rule.city), depth, bool(rule.country),
                                bool(rule.continent)), rule))
        ranked.sort(key=lambda pair: pair[0])
        if len(ranked) > 1:
            assert ranked[-1][0] != ranked[-2][0], "two rules equally specific"
        return ranked[-1][1] if ranked else None

    def nearest_or_default(self, location: dict[str, Any]) -> tuple[str, ...]:
        placed = [(name, s) for name, s in self.sites.items() if s.latitude is not None]
        if location.get("latitude") is None or not placed:
            return self.default
        ranked = sorted(enumerate(placed), key=lambda item: (distance(
            location["latitude"], location["longitude"], item[1][1].latitude or 0.0,
            item[1][1].longitude or 0.0), item[0]))
        limit = self.spec.auto_limit or len(placed)
        return tuple(name for _, (name, _) in ranked[:limit])

    # --- which scope ------------------------------------------------------------------

    def scope(self, version: int, address: int) -> int:
        """The shortest prefix around `address` whose addresses all get its order."""
        like = v4_like(version, address)
        if like is not None:
            return self.scope(4, like[0]) + like[1]
        bits = BITS[version]
        universe = UNIVERSE[version]
        low, size = int(universe.network_address), universe.num_addresses
        for length in range(bits + 1):
            first = address >> (bits - length) << (bits - length)
            last = first + (1 << (bits - length)) - 1
            if version == 6 and any(first <= end and last >= start
                                    for (_, start, end), *_ in V4_LIKE_SPANS):
                continue  # holds IPv4-like addresses and others
            if last < low or first >= low + size:
                return length  # outside the universe: all default
            if first >= low and last < low + size:
                if self._uniform_block(version, first - low, bits - length):
                    return length
            elif self._universe_default(version):  # around the universe
                return length
        raise AssertionError("a single address is always uniform")

    def _universe_default(self, version: int) -> bool:
        if version not in self._all_default:
            universe = UNIVERSE[version]
            low = int(universe.network_address)
            self._all_default[version] = all(self.order(version, low + i) == self.default
                                             for i in range(universe.num_addresses))
        return self._all_default[version]

    def _uniform_block(self, version: int, offset: int, level: int) -> bool:
        """Whether the aligned block of 2**level addresses at `offset` in the universe has one
        order; computed bottom-up over the whole universe once (a buddy tree)."""
        if version not in self._uniform:
            universe = UNIVERSE[version]
            low = int(universe.network_address)
            orders = [self.order(version, low + i) for i in range(universe.num_addresses)]
            levels = [set(range(len(orders)))]
            same = list(orders)
            while len(same) > 1:
                below = levels[-1]
                nxt = set()
                merged = []
                for i in range(0, len(same), 2):
                    ok = i in below and i + 1 in below and same[i] == same[i + 1]
                    if ok:
                        nxt.add(i // 2)
                    merged.append(same[i] if ok else None)
                levels.append(nxt)
                same = merged
            self._uniform[version] = levels
        return offset >> level in self._uniform[version][level]


def v4_like(version: int, address: int) -> tuple[int, int] | None:
    """(IPv4 address, scope offset) of an IPv6 address in an IPv4-like space."""
    if version != 6:
        return None
    for (_, start, end), shift, flipped, offset in V4_LIKE_SPANS:
        if start <= address <= end:
            v4 = address >> shift & 0xFFFFFFFF
            return (v4 ^ 0xFFFFFFFF if flipped else v4), offset
    return None


def span(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[int, int, int]:
    """(IP version, first address, last address)."""
    return network.version, int(network.network_address), int(network.broadcast_address)


V4_LIKE_SPANS = [(span(space), *rest) for space, *rest in V4_LIKE]


def as_written(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An explicit network; one in ::/96 is the IPv4 network it spells."""
    network = ipaddress.ip_network(cidr)
    if network.version == 6 and network.subnet_of(ipaddress.ip_network("::/96")):  # type: ignore[arg-type]
        return ipaddress.ip_network((int(network.network_address), network.prefixlen - 96))
    return network


def read_location(record: Any) -> dict[str, Any] | None:
    """The GeoIP2 fields of a record, or None when it has none."""
    if not isinstance(record, dict):
        return None
    location = {
        "continent": record.get("continent", {}).get("code", "").upper(),
        "country": record.get("country", {}).get("iso_code", "").upper(),
        "subdivisions": [s["iso_code"].upper() for s in record.get("subdivisions", [])],
        "city": record.get("city", {}).get("names", {}).get("en", "").casefold(),
        "asn": record.get("autonomous_system_number", 0),
        "latitude": record.get("location", {}).get("latitude"),
        "longitude": record.get("location", {}).get("longitude"),
    }
    empty = not any(location[k] for k in ("continent", "country", "subdivisions", "city",
                                          "asn")) and location["latitude"] is None
    return None if empty else location


def matches(rule: GeoRule, location: dict[str, Any]) -> int | None:
    """None when `rule` does not match; else the depth of its subdivision in the location's
    list (1 for the most general), 0 when it names none."""
    checks = [(rule.continent.upper(), location["continent"]),
              (rule.country.upper(), location["country"]),
              (rule.city.casefold(), location["city"]), (rule.asn, location["asn"])]
    if any(want and want != have for want, have in checks):
        return None
    if not rule.subdivision:
        return 0
    depths = [i + 1 for i, code in enumerate(location["subdivisions"])
              if code == rule.subdivision.upper()]
    return max(depths) if depths else None
