"""What a geo name answers, model-based: random maps (over a database written here), random
pools spread over random sites, random health and random clients (ECS prefixes of every
length, source prefix 0, no ECS and the source address). Each answer, made as the product
makes it (the signer renders a generation, a responder's table answers the query bytes), must
be what an oracle written from the rules in docs/configuration.md gives, and every scope the
length of the merged network the model (tests/geo_model.py) finds around the ECS address.
"""

from __future__ import annotations

import ipaddress
import random
import tempfile
from pathlib import Path
from typing import Any

import dns.dnssec
import dns.edns
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import geo_model
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_dnssec import generate
from test_geomap import clients, geodata, worlds

from healthdns.responder.query import NEEDS_CLIENT, Answerer
from healthdns.responder.table import Table, indexes
from healthdns.shared import config, messages
from healthdns.shared.geomap import GeoMap, GeoRule, Site
from healthdns.signer.main import Signer

POLICIES = ("serve-all", "empty", "backup")
BACKUP = ("203.0.113.250", "2001:db8:ffff::250")
ZONE, WWW = dns.name.from_text("example.test"), dns.name.from_text("www.example.test")


@st.composite
def pools(draw: st.DrawFn, sites: tuple[str, ...]) -> dict[str, Any]:
    """A geo pool over some of `sites`: each one or two groups of IPv4 and IPv6 addresses."""
    chosen = draw(st.lists(st.sampled_from(sites), min_size=1, unique=True))
    count = 0
    per_site: dict[str, Any] = {}
    for site in chosen:
        groups = []
        for _ in range(draw(st.integers(1, 2))):
            group = []
            for _ in range(draw(st.integers(1, 3))):
                count += 1
                v6 = draw(st.integers(0, 3)) == 0
                group.append(f"2001:db8:ff::{count:x}" if v6 else f"192.0.2.{count}")
            groups.append({"addresses": group})
        per_site[site] = {"groups": groups}
    largest = max(len(g["addresses"]) for s in per_site.values() for g in s["groups"])
    policy = draw(st.sampled_from(POLICIES))
    pool: dict[str, Any] = {"map": "world", "check": {"port": 80}, "sites": per_site,
                            "min_healthy": draw(st.integers(1, largest)), "policy": policy}
    if policy == "backup":
        pool["backup"] = list(BACKUP)
    return pool


def expected(order: tuple[str, ...], pool: dict[str, Any], up: set[str], version: int
             ) -> set[str]:
    """The addresses of `version` a client whose site order is `order` is served: the rules
    as docs/configuration.md gives them."""
    def family(addresses: list[str]) -> list[str]:
        return [a for a in addresses if ipaddress.ip_address(a).version == version]

    usable = []  # the order's sites with addresses of the family, and their groups
    for site in order:
        if site in pool["sites"]:
            groups = [family(g["addresses"]) for g in pool["sites"][site]["groups"]]
            groups = [g for g in groups if g]
            if groups:
                usable.append(groups)
    for groups in usable:  # 1. the first site with a group of min_healthy up
        for group in groups:
            healthy = [a for a in group if a in up]
            if len(healthy) >= min(pool["min_healthy"], len(group)):
                return set(healthy)
    for groups in usable:  # 2. the first site with any up: the first group with any up
        for group in groups:
            healthy = [a for a in group if a in up]
            if healthy:
                return set(healthy)
    if not usable or pool["policy"] == "empty":  # 3. all down: the policy
        return set()
    if pool["policy"] == "serve-all":
        return set(usable[0][0])
    return set(family(list(BACKUP)))


def ecs_option(version: int, address: int, source: int) -> dns.edns.GenericOption:
    bits = 32 if version == 4 else 128
    octets = (source + 7) // 8
    first = address >> (bits - source) << (bits - source) if source else 0
    data = (1 if version == 4 else 2).to_bytes(2, "big") + bytes((source, 0)) + \
        (first >> (bits - 8 * octets)).to_bytes(octets, "big")
    return dns.edns.GenericOption(8, data)


def answered(answerer: Answerer, query: dns.message.Message, client: bytes
             ) -> dns.message.Message:
    wire = query.to_wire()
    response = answerer.answer(wire, 0)
    if response is NEEDS_CLIENT:
        response = answerer.answer_from(wire, 0, client)
    assert response is not None and response is not NEEDS_CLIENT
    return dns.message.from_wire(response)


def served(spec: GeoMap, sites: dict[str, Site], path: Path, pool: dict[str, Any],
           up: set[str], zone: dict[str, Any] | None = None) -> Answerer:
    """A responder's answerer holding the generation the signer makes for this health
    (`zone`: more of the zone's table, its `dnssec`)."""
    document = {
        "sites": {name: msgspec.to_builtins(site) for name, site in sites.items()},
        "maps": {"world": {**msgspec.to_builtins(spec), "database": str(path)}},
        "zones": [{"origin": "example.test", "nameservers": ["ns1.example.net"],
                   "records": {"www": {"pool": pool}, "static": {"a": ["198.51.100.1"]}},
                   **(zone or {})}],
    }
    cfg = config.from_mapping(document)
    normalised = cfg.zones[0].records["www"].pool
    assert normalised is not None
    health = {g.check.target(a): a in up for g in normalised.groups if g.check is not None
              for a in g.addresses}
    signer = Signer(cfg)
    published = signer.update(health, True)
    assert published is not None and signer.new_maps is not None
    # As the supervisor relays them: the maps, then the snapshot, each encoded.
    maps = messages.decode_to_responder(messages.encode(signer.new_maps))
    snapshot = messages.decode_to_responder(published.snapshot)
    assert isinstance(snapshot, messages.EncodedSnapshot) and isinstance(maps, messages.Maps)
    answerer = Answerer(1232)
    answerer.table = Table(snapshot, 0, indexes(maps.tables))
    return answerer


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.data(), st.randoms(use_true_random=False))
def test_every_answer_is_the_oracles_site_with_the_models_scope(
        world: tuple[GeoMap, dict[str, Site], list[geo_model.Entry], int], data: st.DataObject,
        rng: random.Random) -> None:
    spec, sites, database, ip_version = world
    pool = data.draw(pools(tuple(sites)))
    every = [a for s in pool["sites"].values() for g in s["groups"] for a in g["addresses"]]
    up = {a for a in every if data.draw(st.booleans())}
    with tempfile.TemporaryDirectory() as directory:
        path = geodata.write_mmdb(Path(directory) / "test.mmdb",
                                  [(e.cidr, e.record) for e in database], ip_version=ip_version)
        answerer = served(spec, sites, path, pool, up)
    model = geo_model.Model(spec, sites, database)
    families = {ipaddress.ip_address(a).version for a in every}
    for version, address in clients(rng)[::5]:
        bits = 32 if version == 4 else 128
        source = rng.choice([0, rng.randrange(1, bits + 1), bits, -1])  # -1: no ECS
        first = address >> (bits - source) << (bits - source) if source > 0 else address
        client_version = 4 if version == 4 else 6
        client = address.to_bytes(4 if version == 4 else 16, "big")
        for rdtype, family in (("A", 4), ("AAAA", 6)):
            options = [] if source < 0 else [ecs_option(version, address, source)]
            query = dns.message.make_query("www.example.test", rdtype, use_edns=0,
                                           options=options)
            response = answered(answerer, query, client)
            where = f"{rdtype} {ipaddress.ip_address(address) if version == 6 else ipaddress.IPv4Address(address)}/{source}"
            order = model.order(version, first) if source > 0 \
                else model.order(client_version, address)
            got = {r.address for rrset in response.answer for r in rrset
                   if rrset.rdtype == dns.rdatatype.from_text(rdtype)}
            assert got == expected(order, pool, up, family), where
            echoed = [o for o in response.options if o.otype == 8]
            if source < 0:
                assert not echoed, where  # a query without ECS gets none
                continue
            assert len(echoed) == 1, where
            scope = echoed[0].to_wire()[3]  # FAMILY, SOURCE, SCOPE, ADDRESS
            want = model.scope(version, first) if source > 0 and family in families else 0
            assert scope == want, where


def test_answers_are_counted_per_zone_and_site(tmp_path: Path) -> None:
    path = geodata.write_mmdb(tmp_path / "geo.mmdb", [
        ("10.0.0.0/16", {"continent": {"code": "EU"}}),
        ("10.1.0.0/16", {"continent": {"code": "NA"}})])
    spec = GeoMap(rules=(GeoRule(continent="EU", sites=("fra", "iad")),
                         GeoRule(continent="NA", sites=("iad", "fra"))))
    pool = {"map": "world", "check": {"port": 80}, "policy": "empty",
            "sites": {"fra": {"addresses": ["192.0.2.1"]}, "iad": {"addresses": ["192.0.2.2"]}}}
    answerer = served(spec, {"fra": Site(), "iad": Site()}, path, pool, {"192.0.2.1"})
    for address, count in ((0x0A000001, 3), (0x0A010001, 2), (0x0B000001, 1)):
        for _ in range(count):
            answered(answerer, dns.message.make_query("www.example.test", "A", use_edns=0,
                                                      options=[ecs_option(4, address, 24)]),
                     b"")
    zone = dns.name.from_text("example.test").to_wire()
    # iad is down: its NA clients are served fra's address, counted under fra.
    assert sorted(answerer.sites_by_label()) == [(zone, "fra", 6)]


def two_continents(tmp_path: Path) -> Answerer:
    """An answerer for www over sites fra (192.0.2.1) and iad (192.0.2.2), both up: clients
    in 10.0.0.0/16 (Europe) get fra first, in 10.1.0.0/16 (America) iad first."""
    path = geodata.write_mmdb(tmp_path / "geo.mmdb", [
        ("10.0.0.0/16", {"continent": {"code": "EU"}}),
        ("10.1.0.0/16", {"continent": {"code": "NA"}})])
    spec = GeoMap(rules=(GeoRule(continent="EU", sites=("fra", "iad")),
                         GeoRule(continent="NA", sites=("iad", "fra"))))
    pool = {"map": "world", "check": {"port": 80},
            "sites": {"fra": {"addresses": ["192.0.2.1"]}, "iad": {"addresses": ["192.0.2.2"]}}}
    return served(spec, {"fra": Site(), "iad": Site()}, path, pool, {"192.0.2.1", "192.0.2.2"})


def test_the_packet_cache_never_serves_one_networks_answer_to_another(
        tmp_path: Path) -> None:
    """A geo answer to an ECS address is cached under the query's bytes, which hold the
    address; one chosen by the source address (no ECS, or source 0) is never cached, as the
    same bytes come from everywhere. Cached answers are counted under their site too."""
    answerer = two_continents(tmp_path)
    assert answerer.table is not None
    answerer.table.cache_size = 100
    europe, america = 0x0A000001, 0x0A010001
    for source in (24, 0, -1):
        for rounds in range(4):  # the second miss admits, the rest are hits where cached
            for client, address in ((europe, "192.0.2.1"), (america, "192.0.2.2")):
                options = [] if source < 0 else [ecs_option(4, client, source)]
                query = dns.message.make_query("www.example.test", "A", use_edns=0,
                                               options=options)
                query.id = rounds
                response = answered(answerer, query, client.to_bytes(4, "big"))
                assert [r.address for r in response.answer[0]] == [address], (source, rounds)
    assert len(answerer.table.cache) == 2  # the two ECS queries alone
    zone = dns.name.from_text("example.test").to_wire()
    assert sorted(answerer.sites_by_label()) == [(zone, "fra", 12), (zone, "iad", 12)]


def test_a_geo_query_the_slow_path_answers_is_located_too(tmp_path: Path) -> None:
    """Queries the fast path leaves to the slow path (other flags, other options, ECS with
    an option of another shape) are answered for the same client, with the same scope."""
    answerer = two_continents(tmp_path)
    america = 0x0A010001
    for options, flags, client, scope in (
            ([ecs_option(4, america, 24)], 0x0040, b"", 16),  # the Z bit
            ([ecs_option(4, america, 24), dns.edns.GenericOption(3, b"")], 0, b"", 16),
            ([], 0x0040, america.to_bytes(4, "big"), None),
            ([ecs_option(4, 0, 0), dns.edns.GenericOption(3, b"")], 0,
             america.to_bytes(4, "big"), 0)):
        query = dns.message.make_query("www.example.test", "A", use_edns=0, options=options)
        query.flags |= flags
        response = answered(answerer, query, client)
        assert [r.address for r in response.answer[0]] == ["192.0.2.2"], (options, flags)
        echoed = [o.to_wire()[3] for o in response.options if o.otype == 8]
        assert echoed == ([] if scope is None else [scope]), (options, flags)


@pytest.fixture(scope="module")
def csk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dns.rrset.RRset]:
    """A CSK of example.test, and its DNSKEY: the trust anchor."""
    path, dnskey = generate(tmp_path_factory.mktemp("geocsk"), "ECDSAP256SHA256", "csk")
    return path, dns.rrset.from_text(ZONE, 3600, "IN", "DNSKEY", dnskey)


def proved_nodata(response: dns.message.Message, rdtype: int, nsec3: bool,
                  anchor: dns.rrset.RRset) -> bool:
    """Whether `response` (to www.example.test) proves a NODATA of `rdtype` as a validator
    checks it (RFC 4035 5.4, RFC 5155 8.5): the name's own NSEC (NSEC3) record, signed by the
    anchor, with neither the type nor CNAME in its bitmap."""
    kind = dns.rdatatype.NSEC3 if nsec3 else dns.rdatatype.NSEC
    owner = dns.name.from_text(dns.dnssec.nsec3_hash(WWW, None, 0, 1), ZONE) if nsec3 else WWW
    record = response.get_rrset(response.authority, owner, dns.rdataclass.IN, kind)
    sigs = response.get_rrset(response.authority, owner, dns.rdataclass.IN,
                              dns.rdatatype.RRSIG, kind)
    if record is None or sigs is None:
        return False
    dns.dnssec.validate(record, sigs, {ZONE: anchor})  # raises when it does not
    types = {w * 256 + i * 8 + b for w, bits in record[0].windows  # type: ignore[attr-defined]
             for i, octet in enumerate(bits) for b in range(8) if octet & (0x80 >> b)}
    return rdtype not in types and dns.rdatatype.CNAME not in types


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(worlds(), st.data(), st.randoms(use_true_random=False), st.booleans())
def test_every_signed_outcome_validates_its_nodata_included(
        csk: tuple[Path, dns.rrset.RRset],
        world: tuple[GeoMap, dict[str, Site], list[geo_model.Entry], int], data: st.DataObject,
        rng: random.Random, nsec3: bool) -> None:
    """In a signed zone every client's answer validates: its addresses by their RRSIG, and a
    NODATA (its order's policy `empty`, or no site of it with the family, while the default
    order serves the type) by the name's NSEC (NSEC3) record with the type not in its bitmap."""
    key, anchor = csk
    spec, sites, database, ip_version = world
    # `empty` most often: the NODATA of an order whose sites are down, next to a default
    # order with addresses, is the case the NSEC bitmap must prove.
    pool = data.draw(pools(tuple(sites)))
    if data.draw(st.booleans()):
        pool = {**pool, "policy": "empty", "backup": []}
    every = [a for s in pool["sites"].values() for g in s["groups"] for a in g["addresses"]]
    up = {a for a in every if data.draw(st.booleans())}
    dnssec = {"dnssec": {"csk": str(key), "denial": "nsec3" if nsec3 else "nsec"}}
    with tempfile.TemporaryDirectory() as directory:
        path = geodata.write_mmdb(Path(directory) / "test.mmdb",
                                  [(e.cidr, e.record) for e in database], ip_version=ip_version)
        answerer = served(spec, sites, path, pool, up, dnssec)
    for version, address in clients(rng)[::15]:
        option = ecs_option(version, address, 32 if version == 4 else 128)
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            query = dns.message.make_query(WWW, rdtype, want_dnssec=True, options=[option])
            response = answered(answerer, query, b"")
            found = response.get_rrset(response.answer, WWW, dns.rdataclass.IN, rdtype)
            if found is None:
                assert proved_nodata(response, rdtype, nsec3, anchor), (address, rdtype)
                continue
            sigs = response.find_rrset(response.answer, WWW, dns.rdataclass.IN,
                                       dns.rdatatype.RRSIG, rdtype)
            dns.dnssec.validate(found, sigs, {ZONE: anchor})
