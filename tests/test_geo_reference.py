"""healthdns's compiled location tables beside gdnsd's geoip plugin on the same database and
map (tests/geo_reference.py): for a sample of client prefixes over UDP and TCP, IPv4, IPv6 and
IPv4-like IPv6, the same site and the same ECS scope; gdnsd's failover from an extmon check;
and Knot's geoip module, whose scopes differ on purpose (documented in geo_reference.py)."""

from __future__ import annotations

import glob
import ipaddress
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geo_reference
import msgspec
import pytest
from conftest import need_tool
from harness import Backend, bench_module

from healthdns.shared import geochoice, geocompile, geotable
from healthdns.shared.geomap import GeoMap, GeoNetworks, GeoRule, Site

geodata = bench_module("harness/geodata.py", "geodata")  # shared with bench/geomap.py

SITES = ("fra", "iad", "sin", "syd")
PLACES = [("EU", "DE", ["BY"], "Munich"), ("EU", "DE", ["HE"], ""), ("EU", "FR", [], "Paris"),
          ("NA", "US", ["CA"], "Springfield"), ("NA", "US", ["TX"], ""), ("NA", "CA", [], ""),
          ("AS", "JP", [], "Tokyo"), ("AS", "SG", [], ""), ("OC", "AU", [], ""),
          ("SA", "BR", [], "")]
SPEC = GeoMap(
    rules=(GeoRule(continent="EU", sites=("fra", "iad")),
           GeoRule(country="US", sites=("iad", "fra")),
           GeoRule(country="US", subdivision="CA", sites=("sin", "iad")),
           GeoRule(country="DE", city="Munich", sites=("iad", "fra")),
           GeoRule(continent="AS", sites=("sin", "syd")),
           GeoRule(country="AU", sites=("syd", "sin"))),
    networks=(GeoNetworks(cidrs=("10.1.0.0/16", "192.0.2.64/26"), sites=("syd", "fra")),
              GeoNetworks(cidrs=("2001:db8:ffff::/48",), sites=("sin", "fra"))),
    default=("fra", "iad", "sin", "syd"))


def tiles(rng: random.Random, block: str, count: int, longest: int) -> list[str]:
    """Disjoint networks inside `block`, a few of them gaps."""
    network = ipaddress.ip_network(block)
    out: list[str] = []
    pieces = [network]
    while pieces and len(out) < count:
        piece = pieces.pop(rng.randrange(len(pieces)))
        if piece.prefixlen < longest and rng.random() < 0.7:
            pieces.extend(piece.subnets())
        elif rng.random() < 0.85:
            out.append(str(piece))
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    need_tool("gdnsd")
    rng = random.Random(23)
    directory = tmp_path_factory.mktemp("gdnsd")
    entries = []
    for block, longest in (("192.0.2.0/24", 30), ("198.51.100.0/24", 29), ("203.0.113.0/24", 28),
                           ("10.0.0.0/14", 22), ("2001:db8::/32", 56)):
        for cidr in tiles(rng, block, 60, longest):
            continent, country, subdivisions, city = rng.choice(PLACES)
            entries.append((cidr, geodata.record(continent, country, subdivisions, city)))
    database = geodata.write_mmdb(directory / "geo.mmdb", entries)
    sites = {name: Site() for name in SITES}
    spec = msgspec.structs.replace(SPEC, database=str(database))
    index = geotable.GeoIndex(geocompile.compile_map(spec, sites))
    addresses = geo_reference.loopback_addresses(SITES)
    first = Backend(addresses[SITES[0]])
    backends = {SITES[0]: first, **{s: Backend(addresses[s], first.port) for s in SITES[1:]}}
    for backend in backends.values():
        backend.up()
    server = geo_reference.Gdnsd(
        directory, database=database, datacenters=SITES, addresses=addresses,
        geo_map=geo_reference.gdnsd_map(geochoice.Chooser(spec, sites, "map"),
                                        [r for _, r in entries]),
        nets={cidr: group.sites for group in spec.networks for cidr in group.cidrs},
        check_port=first.port).start()
    try:
        yield {"index": index, "server": server, "addresses": addresses, "backends": backends,
               "entries": entries}
    finally:
        server.stop()
        for backend in backends.values():
            backend.close()


def client_prefixes(rng: random.Random, entries: list[tuple[str, Any]], count: int
                    ) -> list[tuple[int, int, int]]:
    """(IP version, first address, source length): inside the database's networks, around
    them, anywhere, and IPv4 ones written in the IPv4-like spaces of IPv6."""
    networks = [ipaddress.ip_network(cidr) for cidr, _ in entries]
    out = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.7:
            network = rng.choice(networks)
            address = int(network.network_address) + rng.randrange(network.num_addresses)
            version = network.version
        elif kind < 0.85:
            version = rng.choice([4, 6])
            address = rng.getrandbits(32 if version == 4 else 128)
        else:
            v4 = rng.choice([n for n in networks if n.version == 4])
            inner = int(v4.network_address) + rng.randrange(v4.num_addresses)
            version, address = 6, rng.choice([0xFFFF << 32 | inner, 0x2002 << 112 | inner << 80,
                                               0x0064FF9B << 96 | inner])
        bits = 32 if version == 4 else 128
        source = rng.choice([8, 16, 20, 24, 24, 24, 32]) if version == 4 else \
            rng.choice([32, 48, 56, 56, 64, 112, 120, 128])
        out.append((version, address >> (bits - source) << (bits - source), source))
    return out


def test_gdnsd_chooses_the_same_site_and_scope_as_the_tables(world: dict[str, Any]) -> None:
    index, server, addresses = world["index"], world["server"], world["addresses"]
    rng = random.Random(7)
    checked = 0
    for version, address, source in client_prefixes(rng, world["entries"], 1500):
        text = str(ipaddress.IPv4Address(address) if version == 4
                   else ipaddress.IPv6Address(address))
        reply = geo_reference.ask(server.port, f"www.{geo_reference.ORIGIN}", f"{text}/{source}",
                                  tcp=checked % 10 == 0)
        order, scope = index.find(version, address)
        expected = (addresses[index.orders[order][0]],)
        assert (reply.addresses, reply.scope) == (expected, scope), f"{text}/{source}"
        checked += 1
    assert checked == 1500


def test_without_ecs_or_with_a_zero_source_the_query_source_decides_with_scope_zero(
        world: dict[str, Any]) -> None:
    index, server, addresses = world["index"], world["server"], world["addresses"]
    order, _ = index.find(4, int(ipaddress.IPv4Address(geo_reference.HOST)))
    expected = (addresses[index.orders[order][0]],)
    name = f"www.{geo_reference.ORIGIN}"
    assert geo_reference.ask(server.port, name) == \
        geo_reference.Reply("NOERROR", expected, None)
    assert geo_reference.ask(server.port, name, "0.0.0.0/0") == \
        geo_reference.Reply("NOERROR", expected, 0)
    static = geo_reference.ask(server.port, f"{geo_reference.STATIC}.{geo_reference.ORIGIN}",
                               "192.0.2.0/24")
    assert static.scope == 0  # a static name's answer holds for every client


def test_gdnsd_fails_a_client_over_to_its_next_site_when_an_extmon_check_fails(
        world: dict[str, Any]) -> None:
    index, server, addresses = world["index"], world["server"], world["addresses"]
    client = "10.1.0.0/24"  # explicit network: syd, then fra
    order, _ = index.find(4, int(ipaddress.IPv4Address("10.1.0.0")))
    first, second = index.orders[order][:2]
    name = f"www.{geo_reference.ORIGIN}"
    assert geo_reference.ask(server.port, name, client).addresses == (addresses[first],)
    backend = world["backends"][first]
    backend.down()
    try:
        assert wait_for(lambda: geo_reference.ask(server.port, name, client).addresses
                        == (addresses[second],), 20.0)
    finally:
        backend.up()
    assert wait_for(lambda: geo_reference.ask(server.port, name, client).addresses
                    == (addresses[first],), 20.0)


def wait_for(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def knot_module() -> None:
    need_tool("knotd")
    if not glob.glob("/usr/lib/*/knot/modules-*/geoip.so"):
        pytest.skip("knot-module-geoip is not installed")


@pytest.mark.usefixtures("knot_module")
def test_knot_subnet_mode_scopes_by_the_matched_entry_even_over_a_nested_one(
        tmp_path: Path) -> None:
    server = geo_reference.Knot(tmp_path, mode="subnet", entries=[
        ("10.0.0.0/8", "127.0.0.13"), ("10.1.0.0/16", "127.0.0.11")]).start()
    try:
        name = f"www.{geo_reference.ORIGIN}"
        assert geo_reference.ask(server.port, name, "10.1.2.0/24") == \
            geo_reference.Reply("NOERROR", ("127.0.0.11",), 16)
        # Scope 8 claims all of 10/8 gets .13, though 10.1/16 does not: the tables say /15.
        assert geo_reference.ask(server.port, name, "10.2.0.0/24") == \
            geo_reference.Reply("NOERROR", ("127.0.0.13",), 8)
    finally:
        server.stop()
    index = geotable.GeoIndex(geocompile.compile_map(GeoMap(default=("a",), networks=(
        GeoNetworks(cidrs=("10.1.0.0/16",), sites=("b",)),)), {"a": Site(), "b": Site()}))
    assert index.find(4, int(ipaddress.IPv4Address("10.2.0.0")))[1] == 15


@pytest.mark.usefixtures("knot_module")
def test_knot_geodb_mode_scopes_by_the_database_network_unmerged(tmp_path: Path) -> None:
    database = geodata.write_mmdb(tmp_path / "geo.mmdb", [
        ("192.0.2.0/25", geodata.record("EU", "DE")), ("192.0.2.128/25", geodata.record("EU", "FR"))])
    server = geo_reference.Knot(tmp_path, mode="geodb", database=database,
                                entries=[("EU;*", "127.0.0.11")]).start()
    try:
        name = f"www.{geo_reference.ORIGIN}"
        assert geo_reference.ask(server.port, name, "192.0.2.0/24") == \
            geo_reference.Reply("NOERROR", ("127.0.0.11",), 25)
        # A client the database does not hold: the zone's own record, with scope 0.
        assert geo_reference.ask(server.port, name, "198.51.100.0/24") == \
            geo_reference.Reply("NOERROR", ("127.0.0.99",), 0)
    finally:
        server.stop()
