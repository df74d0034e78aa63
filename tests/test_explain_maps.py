"""The maps `explain --client` compiles (supervisor/explainmaps.py): for random maps and
databases, every client's order and scope equal the independent model's (tests/geo_model.py),
and the entry explain names is the one the model's layers pick; compiles happen once per
version of the database file, off the asking thread, and a damaged file is an error naming it.
"""

from __future__ import annotations

import ipaddress
import random
import tempfile
import threading
import time
from pathlib import Path

import geo_model
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_geomap import clients, geodata, worlds

from healthdns.shared.errors import ConfigError
from healthdns.shared.geomap import GeoMap, GeoNetworks, GeoRule, Site
from healthdns.supervisor import explainmaps

SITES = {"fra": Site(latitude=50.11, longitude=8.68), "iad": Site(latitude=38.95,
                                                                  longitude=-77.45),
         "sin": Site(latitude=1.35, longitude=103.99)}


def address(version: int, value: int) -> explainmaps.Address:
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


def model_entry(model: geo_model.Model, spec: GeoMap, database: list[geo_model.Entry],
                version: int, value: int) -> str:
    """The map entry that gives a client its order, by the model's layers."""
    like = geo_model.v4_like(version, value)
    if like is not None:
        version, value = 4, like[0]
    for i, group in enumerate(spec.networks):
        for j, cidr in enumerate(group.cidrs):
            kind, first, last = geo_model.span(geo_model.as_written(cidr))
            if kind == version and first <= value <= last:
                return f"networks[{i}].cidrs[{j}]"
    record = next((e.record for e in database
                   if geo_model.span(e.network)[0] == version
                   and geo_model.span(e.network)[1] <= value <= geo_model.span(e.network)[2]),
                  None)
    location = geo_model.read_location(record)
    rule = model.best_rule(location) if location is not None else None
    if rule is None:
        return "auto" if location is not None and spec.auto and \
            location.get("latitude") is not None else "default"
    return f"rules[{spec.rules.index(rule)}]"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.randoms(use_true_random=False))
def test_every_client_gets_the_models_order_scope_and_entry(
        world: tuple[GeoMap, dict[str, Site], list[geo_model.Entry], int],
        rng: random.Random) -> None:
    spec, sites, database, ip_version = world
    model = geo_model.Model(spec, sites, database)
    with tempfile.TemporaryDirectory() as directory:
        path = geodata.write_mmdb(Path(directory) / "test.mmdb",
                                  [(e.cidr, e.record) for e in database], ip_version=ip_version)
        compiled = explainmaps.Maps().compiled(
            "world", msgspec.structs.replace(spec, database=str(path)), sites)
        for version, value in clients(rng)[::3]:
            found = compiled.locate(address(version, value))
            where = str(address(version, value))
            assert found.order == model.order(version, value), where
            assert found.scope == model.scope(version, value), where
            assert found.entry == f"maps.world.{model_entry(model, spec, database, version, value)}", where


def small_world(tmp_path: Path) -> tuple[GeoMap, Path]:
    path = geodata.write_mmdb(tmp_path / "geo.mmdb", [
        ("192.0.2.0/25", geodata.record("EU", "DE", ["HE"], "Frankfurt am Main", 3320, 50.1,
                                        8.7)),
        ("192.0.2.128/25", geodata.record("EU", "DE", ["HE"], "Frankfurt am Main", 3320, 50.1,
                                          8.7)),
        ("198.51.100.0/24", geodata.record("NA", "US", ["VA"], "Ashburn", 0, 39.0, -77.5)),
        ("2001:db8::/32", geodata.record("AS", "SG", latitude=1.3, longitude=103.8)),
        ("203.0.113.0/24", geodata.record("AS", "SG"))])
    spec = GeoMap(database=str(path), default=("iad", "fra"), rules=(
        GeoRule(continent="EU", sites=("fra", "iad")), GeoRule(country="SG", auto=True)),
        networks=(GeoNetworks(cidrs=("10.1.0.0/16",), sites=("iad", "fra")),))
    return spec, path


def test_the_location_the_entry_and_the_distances_are_said(tmp_path: Path) -> None:
    spec, _ = small_world(tmp_path)
    compiled = explainmaps.Maps().compiled("world", spec, SITES)
    found = compiled.locate(ipaddress.ip_address("192.0.2.200"))
    assert found.network == "192.0.2.128/25"
    assert found.location == {"continent": "EU", "country": "DE", "subdivisions": ["HE"],
                              "city": "Frankfurt am Main", "asn": 3320,
                              "as_organization": "AS3320 Example", "latitude": 50.1,
                              "longitude": 8.7}
    assert (found.order, found.scope, found.entry) == (("fra", "iad"), 24, "maps.world.rules[0]")
    assert found.why == "the rule for continent EU"
    singapore = compiled.locate(ipaddress.ip_address("2001:db8::1"))
    assert singapore.order == ("sin", "fra", "iad")
    assert singapore.why == ("the rule for country SG, nearest first: sin 22 km, fra 10,261 km, "
                             "iad 15,538 km")
    nowhere = compiled.locate(ipaddress.ip_address("203.0.113.1"))
    assert (nowhere.entry, nowhere.order) == ("maps.world.rules[1]", ("iad", "fra"))
    assert nowhere.why == ("the rule for country SG, nearest first: the location has no "
                           "coordinates: the default order")
    office = compiled.locate(ipaddress.ip_address("10.1.2.3"))
    assert (office.entry, office.order, office.location) == (
        "maps.world.networks[0].cidrs[0]", ("iad", "fra"), None)
    assert office.why == "the explicit network 10.1.0.0/16: it wins over the database"
    mapped = compiled.locate(ipaddress.ip_address("::ffff:192.0.2.9"))
    assert (mapped.network, mapped.entry, mapped.scope) == ("192.0.2.0/25", "maps.world.rules[0]",
                                                            120)


def test_a_map_is_compiled_once_per_version_of_its_file(tmp_path: Path) -> None:
    spec, path = small_world(tmp_path)
    maps = explainmaps.Maps()
    first = maps.compiled("world", spec, SITES)
    assert maps.compiled("world", spec, SITES).index is first.index
    replacement = tmp_path / "new.mmdb"
    geodata.write_mmdb(replacement, [("192.0.2.0/24", geodata.record("NA", "US"))])
    replacement.replace(path)  # as geoipupdate replaces it
    second = maps.compiled("world", spec, SITES)
    assert second.index is not first.index
    assert second.locate(ipaddress.ip_address("192.0.2.1")).order == ("iad", "fra")


def test_a_truncated_database_is_an_error_naming_the_field_and_the_file(tmp_path: Path) -> None:
    spec, path = small_world(tmp_path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ConfigError) as raised:
        explainmaps.Maps().compiled("world", spec, SITES)
    assert raised.value.path == "maps.world.database"
    assert str(path) in raised.value.message and "truncated" in raised.value.message
    assert "/proc/self/fd" not in str(raised.value)


def test_a_database_replaced_by_a_broken_one_keeps_the_version_before(tmp_path: Path) -> None:
    """As the signer keeps its map: explain places clients with the earlier version, and says
    why; a good file again is compiled again."""
    spec, path = small_world(tmp_path)
    maps = explainmaps.Maps()
    first = maps.compiled("world", spec, SITES)
    broken = tmp_path / "broken.mmdb"
    broken.write_bytes(path.read_bytes()[:200])
    broken.replace(path)
    kept = maps.compiled("world", spec, SITES)
    assert kept.index is first.index and "truncated" in kept.warning
    assert kept.locate(ipaddress.ip_address("192.0.2.1")).location is not None  # the old file
    assert maps.compiled("world", spec, SITES).index is first.index  # not compiled again
    geodata.write_mmdb(broken, [("192.0.2.0/24", geodata.record("NA", "US"))])
    broken.replace(path)
    again = maps.compiled("world", spec, SITES)
    assert again.warning == "" and again.locate(
        ipaddress.ip_address("192.0.2.1")).order == ("iad", "fra")


def test_a_slow_compile_does_not_hold_the_asker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    """A request waits at most the bound, then is told to ask again; the compile goes on, and
    a file replaced meanwhile waits for it (one compile of a map at a time)."""
    spec, _ = small_world(tmp_path)
    release = threading.Event()
    real = explainmaps.geocompile.compile_map

    def slow(*args: object, **kwargs: object) -> object:
        release.wait(30)
        return real(*args, **kwargs)  # type: ignore[arg-type]
    monkeypatch.setattr(explainmaps.geocompile, "compile_map", slow)
    maps = explainmaps.Maps(wait=0.2)
    started = time.monotonic()
    with pytest.raises(explainmaps.Pending, match="ask again"):
        maps.compiled("world", spec, SITES)
    assert time.monotonic() - started < 5
    replacement = tmp_path / "new.mmdb"  # the file replaced while it compiles
    geodata.write_mmdb(replacement, [("192.0.2.0/24", geodata.record("NA", "US"))])
    replacement.replace(spec.database)
    with pytest.raises(explainmaps.Pending):
        maps.compiled("world", spec, SITES)
    assert sum(t.name == "explain map world" for t in threading.enumerate()) == 1
    release.set()
    deadline = time.monotonic() + 30
    while True:
        try:
            assert maps.compiled("world", spec, SITES).locate(
                ipaddress.ip_address("192.0.2.1")).order == ("iad", "fra")  # the newer file
            break
        except explainmaps.Pending:
            assert time.monotonic() < deadline, "the compile never finished"
