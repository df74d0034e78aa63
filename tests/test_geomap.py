"""Location maps compiled into tables (`shared/geomap.py`, `shared/geochoice.py`,
`shared/geocompile.py`, `shared/geotable.py`, `shared/mmdb.py`): random sites, maps and
databases against an independent model (tests/geo_model.py), hand-picked scopes, and every
configuration error from a table."""

from __future__ import annotations

import ipaddress
import math
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import geo_model
import msgspec
import pytest
from harness import bench_module
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthdns.shared import ecs, geochoice, geocompile, geotable
from healthdns.shared.errors import ConfigError
from healthdns.shared.geomap import GeoMap, GeoNetworks, GeoRule, Site

geodata = bench_module("harness/geodata.py", "geodata")  # shared with bench/geomap.py

# --- random maps --------------------------------------------------------------------------

SITES = ("fra", "iad", "sin", "gru", "syd")
POINTS = ((50.1, 8.7), (38.9, -77.0), (1.3, 103.8), (-33.9, 151.2), (0.0, 0.0), (-23.5, -46.6))
CONTINENTS = ("EU", "NA", "AS")
COUNTRIES = ("DE", "US", "JP")  # few values: rules often compete for a location
SUBDIVISIONS = ("BY", "CA", "13")
CITIES = ("Paris", "Tokyo")
ASNS = (64500, 64501, 64502)


def optional(values: tuple[Any, ...], empty: Any = "") -> st.SearchStrategy[Any]:
    return st.one_of(st.just(empty), st.sampled_from(values))


@st.composite
def records(draw: st.DrawFn, rules: list[GeoRule]) -> Any:
    """A record; most fill in the fields of one or two rules, so rules often compete."""
    if draw(st.integers(0, 15)) == 0:
        return draw(st.sampled_from(["a string, not a map", {}]))
    chosen = draw(st.lists(st.sampled_from(rules), max_size=2)) if rules else []
    point = draw(st.one_of(st.none(), st.sampled_from(POINTS),
                           st.tuples(st.floats(-90, 90), st.floats(-180, 180))))
    subdivisions = draw(st.lists(st.sampled_from(SUBDIVISIONS), max_size=2, unique=True))
    for rule in chosen:
        if rule.subdivision and rule.subdivision not in subdivisions:
            subdivisions.insert(draw(st.integers(0, len(subdivisions))), rule.subdivision)

    def field(name: str, values: tuple[Any, ...], empty: Any = "") -> Any:
        given = [getattr(rule, name) for rule in chosen if getattr(rule, name)]
        return given[0] if given else draw(optional(values, empty))
    return geodata.record(
        continent=field("continent", CONTINENTS), country=field("country", COUNTRIES).upper(),
        subdivisions=subdivisions, city=field("city", CITIES), asn=field("asn", ASNS, 0),
        latitude=point[0] if point else None, longitude=point[1] if point else None)


def networks_in(version: int, count: int) -> st.SearchStrategy[list[str]]:
    """Disjoint CIDRs inside the model's universe for `version`."""
    universe = geo_model.UNIVERSE[version]
    low, size = int(universe.network_address), universe.num_addresses
    bits = universe.max_prefixlen

    def build(draws: list[tuple[int, int]]) -> list[str]:
        taken: list[tuple[int, int]] = []
        out = []
        for offset, width in draws:
            span = 1 << width
            start = low + (offset % size) // span * span
            if any(start < end and begin < start + span for begin, end in taken):
                continue
            taken.append((start, start + span))
            out.append(str(ipaddress.ip_network((start, bits - width))))
        return out
    return st.lists(st.tuples(st.integers(0, size - 1),
                              st.integers(0, size.bit_length() - 1)),
                    max_size=count).map(build)


@st.composite
def orders(draw: st.DrawFn, names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(draw(st.lists(st.sampled_from(names), min_size=1, max_size=len(names),
                               unique=True)))


@st.composite
def rules(draw: st.DrawFn, names: tuple[str, ...], placed: bool) -> list[GeoRule]:
    out: dict[tuple[Any, ...], GeoRule] = {}
    for _ in range(draw(st.integers(0, 7))):
        def some(values: tuple[Any, ...], chance: int, empty: Any = "") -> Any:
            return draw(st.sampled_from(values)) if draw(st.integers(1, chance)) == 1 else empty
        # Few values, each field by chance: rules of different kinds often match one place.
        country = some(("DE", "DE", "US"), 1) if draw(st.integers(0, 3)) else ""
        fields = {"continent": some(CONTINENTS, 2), "country": country,
                  "subdivision": some(SUBDIVISIONS, 2) if country else "",
                  "city": some(CITIES, 3) if country else "", "asn": some(ASNS, 5, 0)}
        if not any(fields.values()):
            continue
        if draw(st.booleans()):  # codes are case-blind
            fields["country"] = fields["country"].lower()
        auto = placed and draw(st.integers(0, 4)) == 0
        rule = GeoRule(**fields, auto=auto, sites=() if auto else draw(orders(names)))
        out.setdefault(tuple(str(v).upper() for v in fields.values()), rule)
    return list(out.values())


@st.composite
def explicit(draw: st.DrawFn, names: tuple[str, ...]) -> list[GeoNetworks]:
    cidrs = draw(networks_in(4, 4)) + draw(networks_in(6, 4))
    draw(st.randoms()).shuffle(cidrs)
    groups = []
    while cidrs:
        take = draw(st.integers(1, 3))
        written = [f"::{c.split('/')[0]}/{int(c.split('/')[1]) + 96}"
                   if "." in c and draw(st.booleans()) else c for c in cidrs[:take]]
        groups.append(GeoNetworks(cidrs=tuple(written), sites=draw(orders(names))))
        cidrs = cidrs[take:]
    return groups


@st.composite
def mapped_sites(draw: st.DrawFn) -> tuple[GeoMap, dict[str, Site]]:
    """Sites and a map's rules, default and nearest-first settings (no networks)."""
    names = SITES[:draw(st.integers(1, len(SITES)))]
    sites = {}
    for name in names:
        point = draw(st.one_of(st.none(), st.sampled_from(POINTS)))
        sites[name] = Site(latitude=point[0], longitude=point[1]) if point else Site()
    placed = any(s.latitude is not None for s in sites.values())
    spec = GeoMap(rules=tuple(draw(rules(names, placed))),
                  default=draw(st.one_of(st.just(()), orders(names))),
                  auto=placed and draw(st.booleans()), auto_limit=draw(st.integers(0, 4)))
    return spec, sites


@st.composite
def worlds(draw: st.DrawFn) -> tuple[GeoMap, dict[str, Site], list[geo_model.Entry], int]:
    """A map with explicit networks, its sites, a database's networks and records."""
    spec, sites = draw(mapped_sites())
    ip_version = draw(st.sampled_from([4, 6, 6]))
    cidrs = draw(networks_in(4, 20)) + (draw(networks_in(6, 12)) if ip_version == 6 else [])
    database = [geo_model.Entry(c, draw(records(list(spec.rules)))) for c in cidrs]
    spec = msgspec.structs.replace(spec, networks=tuple(draw(explicit(tuple(sites)))))
    return spec, sites, database, ip_version


def compile_world(spec: GeoMap, sites: dict[str, Site], database: list[geo_model.Entry],
                  ip_version: int, directory: str) -> geotable.GeoIndex:
    path = geodata.write_mmdb(Path(directory) / "test.mmdb",
                              [(e.cidr, e.record) for e in database], ip_version=ip_version)
    table = geocompile.compile_map(msgspec.structs.replace(spec, database=str(path)), sites)
    # As a responder holds it: sent encoded, decoded, searched in place.
    wire = msgspec.msgpack.encode(table)
    return geotable.GeoIndex(msgspec.msgpack.decode(wire, type=geotable.GeoTable))


def clients(rng: random.Random) -> list[tuple[int, int]]:
    """Every address of both universes, addresses around and far from them, and IPv4
    addresses of the universe written in each IPv4-like space of IPv6."""
    out = []
    for version, universe in geo_model.UNIVERSE.items():
        low, size, bits = int(universe.network_address), universe.num_addresses, \
            universe.max_prefixlen
        out += [(version, low + i) for i in range(size)]
        out += [(version, max(0, low - 1)), (version, low + size), (version, 0),
                (version, (1 << bits) - 1)]
        out += [(version, rng.getrandbits(bits)) for _ in range(20)]
    v4 = geo_model.UNIVERSE[4]
    for _ in range(40):
        address = int(v4.network_address) + rng.randrange(v4.num_addresses)
        out += [(6, address), (6, 0xFFFF << 32 | address), (6, 0xFFFF << 48 | address),
                (6, 0x64FF9B << 96 | address), (6, 0x2002 << 112 | address << 80),
                (6, 0x20010000 << 96 | rng.getrandbits(64) << 32 | address ^ 0xFFFFFFFF)]
    return out


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.randoms(use_true_random=False))
def test_every_client_gets_the_models_order_and_scope(
        world: tuple[GeoMap, dict[str, Site], list[geo_model.Entry], int],
        rng: random.Random) -> None:
    spec, sites, database, ip_version = world
    with tempfile.TemporaryDirectory() as directory:
        index = compile_world(spec, sites, database, ip_version, directory)
    model = geo_model.Model(spec, sites, database)
    for version, address in clients(rng):
        order, scope = index.find(version, address)
        where = f"{ipaddress.ip_address(address) if version == 6 else ipaddress.IPv4Address(address)}"
        assert index.orders[order] == model.order(version, address), where
        assert scope == model.scope(version, address), where


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.randoms(use_true_random=False))
def test_an_ecs_prefix_gets_the_order_and_scope_of_its_first_address(
        world: tuple[GeoMap, dict[str, Site], list[geo_model.Entry], int],
        rng: random.Random) -> None:
    spec, sites, database, ip_version = world
    with tempfile.TemporaryDirectory() as directory:
        index = compile_world(spec, sites, database, ip_version, directory)
    model = geo_model.Model(spec, sites, database)
    for version, address in clients(rng)[::7]:
        bits = 32 if version == 4 else 128
        source = rng.randrange(1, bits + 1)
        first = address >> (bits - source) << (bits - source)
        octets = (source + 7) // 8
        data = (1 if version == 4 else 2).to_bytes(2, "big") + bytes((source, 0)) + \
            (first >> (bits - 8 * octets)).to_bytes(octets, "big")
        parsed = ecs.parse(data)
        assert not isinstance(parsed, str)
        _, _, sent = parsed
        order, scope = index.find(version, sent)
        assert (index.orders[order], scope) == (model.order(version, first),
                                                model.scope(version, first))


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_the_chooser_picks_the_models_order_for_random_records(data: st.DataObject) -> None:
    spec, sites = data.draw(mapped_sites())
    chooser = geochoice.Chooser(spec, sites, "map")
    model = geo_model.Model(spec, sites, [])
    for record in data.draw(st.lists(records(list(spec.rules)), min_size=20, max_size=20)):
        assert chooser.choose(geochoice.location_of(record)).order == \
            model.order_of_record(record), record


# --- scopes by hand -----------------------------------------------------------------------


def index_of(tmp_path: Path, entries: list[tuple[str, Any]], spec: GeoMap,
             sites: dict[str, Site] | None = None) -> geotable.GeoIndex:
    path = geodata.write_mmdb(tmp_path / "hand.mmdb", entries)
    sites = sites or {name: Site() for name in SITES[:3]}
    return geotable.GeoIndex(geocompile.compile_map(
        msgspec.structs.replace(spec, database=str(path)), sites))


def v4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def v6(text: str) -> int:
    return int(ipaddress.IPv6Address(text))


def test_adjacent_networks_with_one_order_merge_into_the_widest_block(tmp_path: Path) -> None:
    de, fr = geodata.record("EU", "DE"), geodata.record("EU", "FR")
    index = index_of(tmp_path, [("10.0.0.0/25", de), ("10.0.0.128/25", fr),
                                ("10.0.1.0/24", de), ("10.0.2.0/24", geodata.record("NA", "US"))],
                     GeoMap(rules=(GeoRule(continent="EU", sites=("fra",)),
                                   GeoRule(country="US", sites=("iad",)))))
    fra, iad = index.orders.index(("fra",)), index.orders.index(("iad",))
    # DE and FR both map to fra: 10.0.0.0/23 is one block, however the database splits it.
    assert index.find(4, v4("10.0.0.200")) == (fra, 23)
    assert index.find(4, v4("10.0.1.9")) == (fra, 23)
    assert index.find(4, v4("10.0.2.1")) == (iad, 24)
    # 10.0.3.0/24 is not in the database: the default, as wide as 10.0.3.0/24 allows.
    assert index.find(4, v4("10.0.3.1")) == (0, 24)


def test_a_source_prefix_longer_than_its_block_gets_the_blocks_shorter_scope(
        tmp_path: Path) -> None:
    index = index_of(tmp_path, [("10.0.0.0/16", geodata.record("EU", "DE"))],
                     GeoMap(rules=(GeoRule(country="DE", sites=("fra",)),)))
    parsed = ecs.parse(b"\x00\x01\x18\x00\x0a\x00\x07")  # 10.0.7.0/24
    assert not isinstance(parsed, str)
    assert index.find(4, parsed[2]) == (index.orders.index(("fra",)), 16)


def test_a_source_prefix_spanning_blocks_of_other_orders_gets_its_first_addresses_scope(
        tmp_path: Path) -> None:
    index = index_of(tmp_path, [("10.0.0.0/24", geodata.record("EU", "DE")),
                                ("10.0.1.0/24", geodata.record("NA", "US"))],
                     GeoMap(rules=(GeoRule(country="DE", sites=("fra",)),
                                   GeoRule(country="US", sites=("iad",)))))
    parsed = ecs.parse(b"\x00\x01\x10\x00\x0a\x00")  # 10.0.0.0/16 holds DE, US and default
    assert not isinstance(parsed, str)
    # The answer is 10.0.0.0's, valid for 10.0.0.0/24 only: the scope is longer than the
    # source, which tells the resolver to ask again with a longer prefix (RFC 7871 7.2.1).
    assert index.find(4, parsed[2]) == (index.orders.index(("fra",)), 24)


def test_a_map_without_data_answers_everyone_alike_with_scope_zero() -> None:
    index = geotable.GeoIndex(geocompile.compile_map(GeoMap(), {"fra": Site()}))
    assert index.find(4, v4("192.0.2.1")) == (0, 0)
    assert index.orders == (("fra",),)
    # IPv6 blocks stop at the IPv4-like spaces, which follow the IPv4 table: the widest block
    # around 2001:db8:: without Teredo's 2001::/32 is 2001:800::/21.
    assert index.find(6, v6("2001:db8::1")) == (0, 21)
    assert index.find(6, v6("::ffff:192.0.2.1")) == (0, 96)
    assert index.find(6, v6("2002:c000:0201::")) == (0, 16)


def test_ipv4_like_ipv6_clients_get_the_ipv4_answer_with_the_ipv4_bits_offset(
        tmp_path: Path) -> None:
    index = index_of(tmp_path, [("192.0.2.0/24", geodata.record("EU", "DE"))],
                     GeoMap(rules=(GeoRule(country="DE", sites=("sin",)),)))
    sin = index.orders.index(("sin",))
    for address, scope in (("192.0.2.7", 24), ("::192.0.2.7", 120), ("::ffff:192.0.2.7", 120),
                           ("::ffff:0:192.0.2.7", 120), ("64:ff9b::192.0.2.7", 120),
                           ("2002:c000:0207::1", 40), ("2001:0:4136:e378:8000:63bf:3fff:fdf8", 120)):
        version = ipaddress.ip_address(address).version
        assert index.find(version, int(ipaddress.ip_address(address))) == (sin, scope), address


def test_explicit_networks_win_over_the_database_and_v4compat_ones_are_ipv4(
        tmp_path: Path) -> None:
    index = index_of(tmp_path, [("10.0.0.0/8", geodata.record("EU", "DE")),
                                ("2001:db8::/32", geodata.record("EU", "DE"))],
                     GeoMap(rules=(GeoRule(country="DE", sites=("fra",)),),
                            networks=(GeoNetworks(cidrs=("10.1.0.0/16", "::127.0.0.1/128",
                                                         "2001:db8:1::/48"),
                                                  sites=("iad", "fra")),)))
    both = index.orders.index(("iad", "fra"))
    assert index.find(4, v4("10.1.2.3")) == (both, 16)
    assert index.find(4, v4("127.0.0.1")) == (both, 32)
    assert index.find(6, v6("::127.0.0.1")) == (both, 128)
    assert index.find(6, v6("2001:db8:1::5")) == (both, 48)
    assert index.find(4, v4("10.2.0.0"))[1] == 15  # 10.0/15 and 10.2/15: the rest of 10/8


def test_blocks_inside_a_slash_64_are_found_by_the_low_half(tmp_path: Path) -> None:
    index = index_of(tmp_path, [("2001:db8::/127", geodata.record("EU", "DE")),
                                ("2001:db8::8000:0:0:0/65", geodata.record("NA", "US"))],
                     GeoMap(rules=(GeoRule(country="DE", sites=("fra",)),
                                   GeoRule(country="US", sites=("iad",)))))
    fra, iad = index.orders.index(("fra",)), index.orders.index(("iad",))
    assert index.find(6, v6("2001:db8::1")) == (fra, 127)
    assert index.find(6, v6("2001:db8::2")) == (0, 127)
    assert index.find(6, v6("2001:db8::7fff:ffff:ffff:ffff")) == (0, 66)  # ::4000:0:0:0/66
    assert index.find(6, v6("2001:db8::8000:0:0:1")) == (iad, 65)
    assert index.find(6, v6("2001:db8:0:1::")) == (0, 64)


def test_the_most_specific_rule_wins_and_nearest_first_breaks_ties_by_declared_order(
        tmp_path: Path) -> None:
    sites = {"fra": Site(latitude=50.1, longitude=8.7), "iad": Site(latitude=38.9,
             longitude=-77.0), "twin": Site(latitude=50.1, longitude=8.7), "sin": Site()}
    spec = GeoMap(auto=True, auto_limit=2, rules=(
        GeoRule(continent="EU", sites=("sin",)),
        GeoRule(country="DE", sites=("iad",)),
        GeoRule(country="DE", subdivision="BY", sites=("fra", "sin")),
        GeoRule(country="DE", subdivision="M", sites=("twin",)),
        GeoRule(country="DE", city="Munich", auto=True),
        GeoRule(asn=64500, sites=("iad", "sin"))))
    entries = [("10.0.0.0/24", geodata.record("EU", "FR")),
               ("10.0.1.0/24", geodata.record("EU", "DE")),
               ("10.0.2.0/24", geodata.record("EU", "DE", ["BY", "M"])),
               ("10.0.3.0/24", geodata.record("EU", "DE", ["BY"], "Munich", latitude=48.1,
                                              longitude=11.6)),
               ("10.0.4.0/24", geodata.record("EU", "DE", ["BY"], "Munich", asn=64500)),
               ("10.0.5.0/24", geodata.record("NA", "US", latitude=40.7, longitude=-74.0)),
               ("10.0.6.0/24", geodata.record("NA", "US"))]
    index = index_of(tmp_path, entries, spec, sites)
    expect = {"10.0.0.1": ("sin",), "10.0.1.1": ("iad",), "10.0.2.1": ("twin",),
              "10.0.3.1": ("fra", "twin"), "10.0.4.1": ("iad", "sin"),
              "10.0.5.1": ("iad", "fra"), "10.0.6.1": ("fra", "iad", "twin", "sin")}
    for address, order in expect.items():
        assert index.orders[index.find(4, v4(address))[0]] == order, address


def test_a_choice_says_which_entry_of_the_map_gave_it() -> None:
    sites = {"fra": Site(latitude=50.1, longitude=8.7), "iad": Site(latitude=38.9,
             longitude=-77.0)}
    chooser = geochoice.Chooser(GeoMap(auto=True, rules=(
        GeoRule(country="DE", sites=("fra",)), GeoRule(country="US", auto=True))), sites, "m")
    at = geochoice.Location
    assert chooser.choose(None) == (("fra", "iad"), "default: the database has no location")
    assert chooser.choose(at(country="DE")) == (("fra",), "rules[0]")
    assert chooser.choose(at(country="US", latitude=40.7, longitude=-74.0)) == \
        (("iad", "fra"), "rules[1]: nearest")
    assert chooser.choose(at(country="US")) == \
        (("fra", "iad"), "rules[1]: nearest, but the location has no coordinates: default")
    assert chooser.choose(at(country="FR", latitude=48.9, longitude=2.4)) == \
        (("fra", "iad"), "nearest")


def test_great_circle_distances_match_published_figures_and_an_independent_formula() -> None:
    # Paris-New York about 5837 km, London-Sydney about 16990 km (on a 6371 km sphere).
    assert geochoice.distance(48.8566, 2.3522, 40.7128, -74.0060) == pytest.approx(5837, abs=5)
    assert geochoice.distance(51.5074, -0.1278, -33.8688, 151.2093) == pytest.approx(16994, abs=10)
    rng = random.Random(7)
    for _ in range(2000):
        a = (rng.uniform(-90, 90), rng.uniform(-180, 180))
        b = (rng.uniform(-90, 90), rng.uniform(-180, 180))
        assert geochoice.distance(*a, *b) == pytest.approx(chord_distance(*a, *b), rel=1e-9,
                                                        abs=1e-6)


def chord_distance(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """The same distance from unit vectors: twice the arcsine of half the chord."""
    def unit(lat: float, lon: float) -> tuple[float, float, float]:
        p, q = math.radians(lat), math.radians(lon)
        return math.cos(p) * math.cos(q), math.cos(p) * math.sin(q), math.sin(p)
    chord = math.dist(unit(lat1, lon1), unit(lat2, lon2))
    return 2 * geochoice.EARTH_RADIUS_KM * math.asin(min(1.0, chord / 2))


# --- errors -------------------------------------------------------------------------------

PLACED = {"fra": Site(latitude=50.1, longitude=8.7), "iad": Site()}
BARE = {"fra": Site(), "iad": Site()}


@pytest.mark.parametrize(("spec", "sites", "error"), [
    (GeoMap(), {}, "sites: no sites are defined"),
    (GeoMap(), {"fra": Site(latitude=1.0)}, "sites.fra.longitude: is missing"),
    (GeoMap(), {"fra": Site(latitude=91.0, longitude=0.0)}, "sites.fra.latitude: 91.0 is not"),
    (GeoMap(), {"fra": Site(latitude=0.0, longitude=-181.0)}, "sites.fra.longitude: -181.0"),
    (GeoMap(default=("fra", "ams")), BARE, "map.default[1]: 'ams' is not a site (sites: fra, iad)"),
    (GeoMap(default=("fra", "fra")), BARE, "map.default[1]: 'fra' is listed twice"),
    (GeoMap(rules=(GeoRule(country="DE", sites=("ams",)),)), BARE,
     "map.rules[0].sites[0]: 'ams' is not a site"),
    (GeoMap(rules=(GeoRule(country="DE"),)), BARE, "map.rules[0].sites: names no site"),
    (GeoMap(rules=(GeoRule(sites=("fra",)),)), BARE,
     "map.rules[0]: names none of continent, country, subdivision, city, asn"),
    (GeoMap(rules=(GeoRule(country="DE", sites=("fra",)),
                   GeoRule(country="de", sites=("iad",)))), BARE,
     "map.rules[1]: matches the same clients as map.rules[0]"),
    (GeoMap(rules=(GeoRule(continent="EUR", sites=("fra",)),)), BARE,
     "map.rules[0].continent: 'EUR' is not one of AF, AN, AS, EU, NA, OC, SA"),
    (GeoMap(rules=(GeoRule(country="DEU", sites=("fra",)),)), BARE,
     "map.rules[0].country: 'DEU' is not an ISO 3166-1 two-letter code"),
    (GeoMap(rules=(GeoRule(country="DE", subdivision="BY-1", sites=("fra",)),)), BARE,
     "map.rules[0].subdivision: 'BY-1' is not an ISO 3166-2 subdivision code"),
    (GeoMap(rules=(GeoRule(city="Paris", sites=("fra",)),)), BARE,
     "map.rules[0].city: names a place without its country"),
    (GeoMap(rules=(GeoRule(asn=2**32, sites=("fra",)),)), BARE,
     "map.rules[0].asn: 4294967296 is not an AS number"),
    (GeoMap(rules=(GeoRule(country="DE", sites=("fra",), auto=True),)), PLACED,
     "map.rules[0].sites: a rule has sites or auto, not both"),
    (GeoMap(rules=(GeoRule(country="DE", auto=True),)), BARE,
     "map.rules[0].auto: no site has coordinates to measure from"),
    (GeoMap(auto=True), BARE, "map.auto: no site has coordinates to measure from"),
    (GeoMap(auto=True, auto_limit=-1), PLACED, "map.auto_limit: -1 is negative"),
    (GeoMap(networks=(GeoNetworks(cidrs=(), sites=("fra",)),)), BARE,
     "map.networks[0].cidrs: lists no networks"),
    (GeoMap(networks=(GeoNetworks(cidrs=("10.0.0.0/8",), sites=("ams",)),)), BARE,
     "map.networks[0].sites[0]: 'ams' is not a site"),
    (GeoMap(networks=(GeoNetworks(cidrs=("10.0.0.0/33",), sites=("fra",)),)), BARE,
     "map.networks[0].cidrs[0]: '10.0.0.0/33' is not a network"),
    (GeoMap(networks=(GeoNetworks(cidrs=("10.0.0.1/8",), sites=("fra",)),)), BARE,
     "map.networks[0].cidrs[0]: '10.0.0.1/8' is not a network: 10.0.0.1/8 has host bits set"),
    (GeoMap(networks=(GeoNetworks(cidrs=("example.net",), sites=("fra",)),)), BARE,
     "map.networks[0].cidrs[0]: 'example.net' is not a network"),
    (GeoMap(networks=(GeoNetworks(cidrs=("10.0.0.0/8", "192.0.2.0/24"), sites=("fra",)),
                      GeoNetworks(cidrs=("10.1.0.0/16",), sites=("iad",)))), BARE,
     "map.networks[1].cidrs[0]: 10.1.0.0/16 overlaps 10.0.0.0/8 (map.networks[0].cidrs[0])"),
    (GeoMap(networks=(GeoNetworks(cidrs=("2001:db8::/32", "2001:db8::/32"),
                                  sites=("fra",)),)), BARE,
     "map.networks[0].cidrs[1]: 2001:db8::/32 overlaps 2001:db8::/32 (map.networks[0].cidrs[0])"),
    (GeoMap(networks=(GeoNetworks(cidrs=("192.0.2.0/24", "::192.0.2.128/121"),
                                  sites=("fra",)),)), BARE,
     "map.networks[0].cidrs[1]: ::192.0.2.128/121 overlaps 192.0.2.0/24"),
    (GeoMap(networks=(GeoNetworks(cidrs=("::ffff:10.0.0.0/104",), sites=("fra",)),)), BARE,
     ("map.networks[0].cidrs[0]: ::ffff:10.0.0.0/104 lies in the IPv4-mapped (RFC 4291) space "
      "of IPv6, which follows the IPv4 networks: write it as an IPv4 network")),
    (GeoMap(networks=(GeoNetworks(cidrs=("2002:a00::/24",), sites=("fra",)),)), BARE,
     "map.networks[0].cidrs[0]: 2002:a00::/24 lies in the 6to4 (RFC 3056) space"),
])
def test_a_bad_map_is_an_error_naming_the_field(spec: GeoMap, sites: dict[str, Site],
                                                error: str) -> None:
    with pytest.raises(ConfigError) as raised:
        geocompile.compile_map(spec, sites)
    assert str(raised.value).startswith(error), str(raised.value)


def good_database(path: Path) -> Path:
    return geodata.write_mmdb(path, [(f"10.0.{i}.0/24", geodata.record("EU", "DE"))
                                     for i in range(64)])


def truncated(path: Path) -> None:
    data = good_database(path).read_bytes()
    path.write_bytes(data[:len(data) // 2])


def cut_in_the_tree(path: Path) -> None:
    data = good_database(path).read_bytes()
    path.write_bytes(data[:100] + data[-300:])  # tree cut short, metadata intact


def looping(path: Path) -> None:
    data = bytearray(good_database(path).read_bytes())
    data[0:3] = bytes(3)  # the root's left record points back at the root
    path.write_bytes(bytes(data))


def wild_pointer(path: Path) -> None:
    data = bytearray(geodata.write_sorted(path, [(ipaddress.ip_network("10.0.0.0/8"), 0)],
                                          [geodata.record("EU", "DE")], ip_version=4
                                          ).read_bytes())
    meta_count = 8  # a /8 in an IPv4 tree: 8 nodes, the last one's left record is the data
    data[7 * 8:7 * 8 + 4] = (meta_count + 16 + 10**6).to_bytes(4, "big")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("make", "error"), [
    (None, "cannot read it: No such file or directory"),
    (lambda p: p.mkdir(), "is not a regular file"),
    (lambda p: p.write_bytes(b""), "is not a MaxMind DB file, or is truncated"),
    (lambda p: p.write_text("10.0.0.0/8 DE\n"), "is not a MaxMind DB file, or is truncated"),
    (truncated, "is not a MaxMind DB file, or is truncated"),
    (cut_in_the_tree, "is"),
    (looping, "is damaged: the search tree is damaged: it loops or is too deep"),
    (wild_pointer, "is damaged: a record points 1000000 bytes into a data section of"),
])
def test_a_bad_database_is_an_error_naming_the_field_and_the_file(
        tmp_path: Path, make: Any, error: str) -> None:
    path = tmp_path / "geo.mmdb"
    if make:
        make(path)
    with pytest.raises(ConfigError) as raised:
        geocompile.compile_map(GeoMap(database=str(path)), BARE, path="geo.maps.eu")
    assert str(raised.value).startswith(f"geo.maps.eu.database: {path}"), str(raised.value)
    assert error in str(raised.value)


def test_a_fifo_in_place_of_the_database_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ConfigError, match="is not a regular file"):
        geocompile.compile_map(GeoMap(database=str(tmp_path / "fifo")), BARE)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=8))
def test_a_database_damaged_anywhere_compiles_or_is_a_config_error(
        flips: list[tuple[int, int]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = good_database(Path(directory) / "geo.mmdb")
        data = bytearray(path.read_bytes())
        for offset, value in flips:
            data[offset % len(data)] = value
        path.write_bytes(bytes(data))
        try:
            geocompile.compile_map(GeoMap(database=str(path),
                                      rules=(GeoRule(country="DE", sites=("iad",)),)), BARE)
        except ConfigError as e:
            assert str(e).startswith(f"map.database: {path}")


@pytest.mark.parametrize(("field", "cut", "error"), [
    ("v4_starts", 4, "the IPv4 tables do not cover the address space"),
    ("v4_index", 4, "the IPv4 index does not fit the IPv4 tables"),
    ("v6_low", 8, "the IPv6 tables differ in length"),
    ("v6_blocks", 3, "is not a whole number of I items"),
])
def test_an_index_refuses_tables_that_do_not_fit_together(field: str, cut: int,
                                                          error: str) -> None:
    table = geocompile.compile_map(GeoMap(networks=(GeoNetworks(
        cidrs=("10.0.0.0/8", "2001:db8::/32"), sites=("fra",)),)), BARE)
    broken = msgspec.structs.replace(table, **{field: getattr(table, field)[:-cut]})
    with pytest.raises(ValueError, match=error):
        geotable.GeoIndex(broken)
