"""healthdns beside gdnsd's geoip plugin, both started for real on the same generated database
and the same site map, each checking the same loopback backends: for 12,000 client prefixes
(ECS over UDP and TCP, IPv4 and IPv6 and IPv4 written in IPv6, source prefix 0, and no ECS from
source addresses across 127.0.0.0/8) under four health states (all up, sites down, all down),
both servers send every client to the same site with the same scope, and both equal an oracle
written from the rules (the compiled tables' block for the client, then the first site of its
order that is up, else the first). Clients that differ are asked once more after both servers
show the health state again: a check that times out on a loaded host flips a site for a
moment, and a real difference differs again.

Where healthdns differs on purpose (docs/conformance.md, "EDNS Client Subnet"), the difference
is asserted: a NODATA of a geo name that no site could answer differently gets scope 0 from
healthdns and the client's geo scope from gdnsd.
"""

from __future__ import annotations

import ipaddress
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import geo_reference
import msgspec
import pytest
from conftest import need_tool
from harness import Backend, Server, bench_module, config_toml

from healthdns.shared import geochoice, geocompile, geotable
from healthdns.shared.geomap import GeoMap, GeoNetworks, GeoRule, Site

geodata = bench_module("harness/geodata.py", "geodata")
clients = bench_module("harness/geoclients.py", "geoclients")

SITES = ("fra", "iad", "sin", "syd")
PLACES = [("EU", "DE", ["BY"], "Munich"), ("EU", "DE", ["HE"], ""), ("EU", "FR", [], "Paris"),
          ("NA", "US", ["CA"], "Springfield"), ("NA", "US", ["TX"], ""), ("NA", "CA", [], ""),
          ("AS", "JP", [], "Tokyo"), ("AS", "SG", [], ""), ("OC", "AU", [], ""),
          ("SA", "BR", [], "")]
RULES = (GeoRule(continent="EU", sites=("fra", "iad")),
         GeoRule(country="US", sites=("iad", "fra")),
         GeoRule(country="US", subdivision="CA", sites=("sin", "iad")),
         GeoRule(country="DE", city="Munich", sites=("iad", "fra")),
         GeoRule(continent="AS", sites=("sin", "syd")),
         GeoRule(country="AU", sites=("syd", "sin")))
NETWORKS = (GeoNetworks(cidrs=("10.1.0.0/16", "192.0.2.64/26"), sites=("syd", "fra")),
            GeoNetworks(cidrs=("2001:db8:ffff::/48",), sites=("sin", "fra")))
DEFAULT = ("fra", "iad", "sin", "syd")
BLOCKS = (("192.0.2.0/24", 30), ("198.51.100.0/24", 29), ("203.0.113.0/24", 28),
          ("10.0.0.0/14", 22), ("127.0.0.0/8", 16), ("2001:db8::/32", 56))
# Sites down in turn: the answers move down each client's order, then all are down.
HEALTH = ((), ("fra",), ("iad", "sin"), SITES)
PER_STATE = 3000  # clients per health state: 12,000 in all
TCP_SHARE = 5  # every fifth client of a state asks over TCP
NAME = f"www.{geo_reference.ORIGIN}"
INTERVAL = 0.5  # healthdns's checks (down after 2 failures); gdnsd's extmon runs every 2 s


def tiles(rng: random.Random, block: str, count: int, longest: int) -> list[str]:
    """Disjoint networks inside `block`, a few of them gaps."""
    out: list[str] = []
    pieces = [ipaddress.ip_network(block)]
    while pieces and len(out) < count:
        piece = pieces.pop(rng.randrange(len(pieces)))
        if piece.prefixlen < longest and rng.random() < 0.7:
            pieces.extend(piece.subnets())
        elif rng.random() < 0.85:
            out.append(str(piece))
    return out


@dataclass
class World:
    index: geotable.GeoIndex
    addresses: dict[str, str]  # site -> its one loopback address
    backends: dict[str, Backend]
    gdnsd: geo_reference.Gdnsd
    healthdns: Server
    networks: list[str]  # the database's

    def expected(self, client: Any, down: Sequence[str]) -> Any:
        """The oracle: the reply a client gets with the sites `down` down."""
        order, scope = self.index.find(client.version if client.ecs else 4, client.address)
        sites = self.index.orders[order]
        site = next((s for s in sites if s not in down), sites[0])
        return clients.Reply(0, (self.addresses[site],),
                             scope if client.ecs else 0 if client.source == 0 else None)


def healthdns_toml(database: str, addresses: dict[str, str], port: int) -> str:
    check = {"port": port, "interval": INTERVAL, "timeout": INTERVAL, "rise": 1, "fall": 2}
    geo_map = {"database": database, "default": list(DEFAULT),
               "rules": [{k: v for k, v in msgspec.structs.asdict(rule).items()
                          if v and k != "auto"} | {"sites": list(rule.sites)}
                         for rule in RULES],
               "networks": [{"cidrs": list(n.cidrs), "sites": list(n.sites)} for n in NETWORKS]}
    pool = {"map": "world", "check": check, "policy": "serve-all", "min_healthy": 1,
            "sites": {site: {"addresses": [address]} for site, address in addresses.items()}}
    text: str = config_toml({geo_reference.STATIC: {"a": ["192.0.2.50"]}, "www": {"pool": pool}},
                       sites={site: {} for site in SITES}, maps={"world": geo_map})
    return text


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    need_tool("gdnsd")
    rng = random.Random(23)
    directory = tmp_path_factory.mktemp("geo")
    entries = []
    for block, longest in BLOCKS:
        for cidr in tiles(rng, block, 60, longest):
            continent, country, subdivisions, city = rng.choice(PLACES)
            entries.append((cidr, geodata.record(continent, country, subdivisions, city)))
    database = geodata.write_mmdb(directory / "geo.mmdb", entries)
    sites = {name: Site() for name in SITES}
    spec = GeoMap(database=str(database), rules=RULES, networks=NETWORKS, default=DEFAULT)
    index = geotable.GeoIndex(geocompile.compile_map(spec, sites))
    addresses = geo_reference.loopback_addresses(SITES)
    first = Backend(addresses[SITES[0]])
    backends = {SITES[0]: first, **{s: Backend(addresses[s], first.port) for s in SITES[1:]}}
    for backend in backends.values():
        backend.up()
    gdnsd = geo_reference.Gdnsd(
        directory / "gdnsd", database=database, datacenters=DEFAULT, addresses=addresses,
        geo_map=geo_reference.gdnsd_map(geochoice.Chooser(spec, sites, "map"),
                                        [r for _, r in entries]),
        nets={cidr: group.sites for group in NETWORKS for cidr in group.cidrs},
        check_port=first.port)
    (directory / "gdnsd").mkdir()
    healthdns = Server([], directory, healthdns_toml(str(database), addresses, first.port))
    try:
        gdnsd.start()
        healthdns.start()
        yield World(index, addresses, backends, gdnsd, healthdns, [c for c, _ in entries])
    finally:
        if healthdns.process is not None:
            healthdns.stop()
        gdnsd.stop()
        for backend in backends.values():
            backend.close()


def set_health(world: World, down: Sequence[str], probes: Sequence[Any]) -> None:
    """Sites `down` down, the rest up; returns once both servers answer `probes` (a client
    per site whose order starts there) as the oracle says, within a generous deadline."""
    for site, backend in world.backends.items():
        if site in down and backend.listening:
            backend.down()
        elif site not in down and not backend.listening:
            backend.up()
    want = [world.expected(c, down) for c in probes]
    deadline = time.monotonic() + 30.0
    while True:
        got = {port: clients.ask(port, NAME, probes)
               for port in (world.gdnsd.port, world.healthdns.port)}
        if all(replies == want for replies in got.values()):
            return
        assert time.monotonic() < deadline, f"health {down} not seen: {got} != {want}"
        time.sleep(0.2)


def differing(port: int, chosen: Sequence[Any], want: Sequence[Any], tcp: bool
              ) -> list[tuple[Any, Any, Any]]:
    """(client, reply, expected reply) of each client whose reply is not the expected one."""
    got = clients.ask(port, NAME, chosen, tcp=tcp)
    return [(c, g, w) for c, g, w in zip(chosen, got, want, strict=True) if g != w]


def probes_of(world: World, sample: Sequence[Any]) -> list[Any]:
    """For each site, an ECS client of `sample` whose order starts with it."""
    out: dict[str, Any] = {}
    for client in sample:
        if client.ecs:
            order, _ = world.index.find(client.version, client.address)
            out.setdefault(world.index.orders[order][0], client)
    assert set(out) == set(SITES), f"the sample reaches only {sorted(out)} first"
    return list(out.values())


def test_both_servers_choose_the_same_site_and_scope_for_12000_clients(world: World) -> None:
    rng = random.Random(5)
    sample = clients.sample(rng, world.networks, PER_STATE * len(HEALTH))
    probes = probes_of(world, sample)
    seen: set[tuple[str, ...]] = set()
    for state, down in enumerate(HEALTH):
        set_health(world, down, probes)
        part = sample[state * PER_STATE:(state + 1) * PER_STATE]
        for tcp in (False, True):
            chosen = [c for i, c in enumerate(part) if (i % TCP_SHARE == 0) == tcp]
            want = [world.expected(c, down) for c in chosen]
            for server, port in (("gdnsd", world.gdnsd.port),
                                 ("healthdns", world.healthdns.port)):
                wrong = differing(port, chosen, want, tcp)
                if wrong:  # a check that timed out under load flips a site for a moment
                    set_health(world, down, probes)
                    wrong = differing(port, [c for c, _, _ in wrong], [w for _, _, w in wrong],
                                      tcp)
                assert not wrong, f"{server}, down {down}, tcp {tcp}: {len(wrong)} of " \
                    f"{len(chosen)} differ, e.g. {[(c.text(), g, w) for c, g, w in wrong[:5]]}"
            seen.update(w.addresses for w in want)
    assert len(seen) == len(SITES)  # every site was chosen for some client


def test_a_geo_name_s_nodata_has_scope_0_where_gdnsd_gives_the_geo_scope(world: World) -> None:
    """No site has IPv6 addresses, so AAAA is NODATA for every client: healthdns says so for
    the whole address space (scope 0); gdnsd returns the client's geo scope, which makes a
    resolver cache the same NODATA once per block."""
    client = clients.Client(4, int(ipaddress.IPv4Address("10.1.2.0")), 24)
    _, scope = world.index.find(4, client.address)
    assert scope == 16
    gdnsd, = clients.ask(world.gdnsd.port, NAME, [client], qtype=clients.AAAA)
    healthdns, = clients.ask(world.healthdns.port, NAME, [client], qtype=clients.AAAA)
    assert gdnsd == clients.Reply(0, (), scope)
    assert healthdns == clients.Reply(0, (), 0)


def test_static_names_and_nxdomain_get_scope_0_from_both(world: World) -> None:
    client = clients.Client(4, int(ipaddress.IPv4Address("10.1.2.0")), 24)
    for port in (world.gdnsd.port, world.healthdns.port):
        static, missing = (clients.ask(port, f"{name}.{geo_reference.ORIGIN}", [client])[0]
                           for name in (geo_reference.STATIC, "nosuch"))
        assert static == clients.Reply(0, ("192.0.2.50",), 0)
        assert missing == clients.Reply(3, (), 0)


def test_the_batched_client_reads_replies_as_dnspython_does(world: World) -> None:
    """The comparison above reads replies with bench/harness/geoclients.py; dnspython reads a
    few of them the same (rcode, addresses, scope)."""
    for text in ("10.1.2.0/24", "192.0.2.64/27", "2001:db8:ffff::/56", "198.51.100.0/24"):
        address, _, length = text.partition("/")
        ip = ipaddress.ip_address(address)
        client = clients.Client(ip.version, int(ip), int(length))
        for port in (world.gdnsd.port, world.healthdns.port):
            ours, = clients.ask(port, NAME, [client])
            theirs = geo_reference.ask(port, NAME, text)
            assert (theirs.rcode, theirs.addresses, theirs.scope) == \
                ("NOERROR", ours.addresses, ours.scope)
            assert ours.rcode == 0
