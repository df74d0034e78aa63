"""Geo routing on the wire, in the real supervisor: clients in different places are ECS
prefixes (`dig +subnet`) and source addresses across 127.0.0.0/8 (`dig -b`), over UDP and
TCP, IPv4 and IPv6 ECS, source prefix 0, no ECS, malformed ECS; a site going down moves its
clients to the next site; in the signed zone every variant validates; AXFR carries each geo
name's default answer. The database is written here (mmdb-writer)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.dnssec
import dns.edns
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from conftest import need_tool
from harness import Backend, Server, bench_module, config_toml
from test_dnssec import generate

geodata = bench_module("harness/geodata.py", "geodata")
KEY, SECRET = "xfr.example", "c2VjcmV0IHNlY3JldCBzZWNyZXQgc2VjcmV0IHNlY3JldA=="
TRANSFERS = re.compile(r"transfers on (\S+?):(\d+)")
FRA, IAD, SIN = "127.0.0.11", "127.0.0.12", "127.0.0.13"


@dataclass
class Setup:
    server: Server
    fra: Backend
    transfer_port: int
    anchor: str
    tmp: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("geowire")
    database = geodata.write_mmdb(tmp / "geo.mmdb", [
        ("127.0.0.0/16", geodata.record("EU", "DE")),  # fra first
        ("127.1.0.0/16", geodata.record("NA", "US")),  # iad first
        ("127.2.0.0/16", geodata.record("AS", "SG")),  # sin first
        ("2001:db8:1::/48", geodata.record("NA", "US")),
        ("2001:db8:2::/48", geodata.record("AS", "SG"))])
    key, anchor = generate(tmp, "ECDSAP256SHA256", "csk")
    fra, iad, sin = Backend(FRA), Backend(IAD), Backend(SIN)
    iad.close()
    iad, sin = Backend(IAD, fra.port), Backend(SIN, fra.port)
    for backend in (fra, iad, sin):
        backend.up()
    check = {"port": fra.port, "interval": 0.2, "timeout": 0.15, "rise": 1, "fall": 1}
    pool = {"map": "world", "check": check, "sites": {
        "fra": {"addresses": [FRA]}, "iad": {"addresses": [IAD]}, "sin": {"addresses": [SIN]}}}
    toml = config_toml(
        {"www": {"pool": pool}, "static": {"a": ["192.0.2.1"]}},
        zone={"dnssec": {"csk": str(key)}},
        sites={"fra": {}, "iad": {}, "sin": {}},
        maps={"world": {"database": str(database), "default": ["fra", "iad", "sin"],
                        "rules": [{"continent": "EU", "sites": ["fra", "iad", "sin"]},
                                  {"continent": "NA", "sites": ["iad", "fra", "sin"]},
                                  {"continent": "AS", "sites": ["sin", "iad", "fra"]}],
                        "networks": [{"cidrs": ["127.3.0.0/24"], "sites": ["sin", "fra"]}]}},
        tsig=[{"name": KEY, "secret": SECRET}],
        transfer={"listen": ["127.0.0.1:0"],
                  "allow": [{"networks": ["127.0.0.0/8"], "key": KEY}]})
    server = Server([], tmp, toml).start()
    found = TRANSFERS.search(server.output())
    assert found, server.output()
    try:
        yield Setup(server, fra, int(found.group(2)), anchor, tmp)
    finally:
        assert server.stop() == 0
        for backend in (fra, iad, sin):
            backend.close()


def dig(setup: Setup, *args: str) -> tuple[set[str], str]:
    """The A addresses dig gets, and its CLIENT-SUBNET line ("" without one)."""
    out = subprocess.run([need_tool("dig"), "@127.0.0.1", "-p", str(setup.server.port),
                          "+norec", *args], capture_output=True, text=True, timeout=10,
                         check=True).stdout
    addresses = {line.split()[-1] for line in out.splitlines()
                 if line and not line.startswith(";") and "\tA\t" in line}
    subnet = next((line.split(":", 1)[1].strip() for line in out.splitlines()
                   if "CLIENT-SUBNET" in line), "")
    return addresses, subnet


@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
def test_ecs_clients_get_their_sites_address_and_the_blocks_scope(
        setup: Setup, transport: str) -> None:
    for subnet, address, scope in (
            ("127.0.9.0/24", FRA, "127.0.9.0/24/16"),
            ("127.1.9.0/24", IAD, "127.1.9.0/24/16"),
            ("127.2.0.0/15", SIN, "127.2.0.0/15/16"),  # the source spans blocks: theirs
            ("127.3.0.128/25", SIN, "127.3.0.128/25/24"),  # an explicit network wins
            ("2001:db8:1:400::/56", IAD, "2001:db8:1:400::/56/48"),
            ("2001:db8:2::/48", SIN, "2001:db8:2::/48/48")):
        assert dig(setup, transport, f"+subnet={subnet}", "www.example.test") == \
            ({address}, scope), subnet


@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
def test_without_an_ecs_address_the_source_address_decides(setup: Setup,
                                                           transport: str) -> None:
    for source, address in (("127.0.0.1", FRA), ("127.1.0.5", IAD), ("127.2.3.4", SIN)):
        # No ECS: none in the answer; ECS source 0: scope 0, the source address decides.
        assert dig(setup, transport, "-b", source, "www.example.test") == ({address}, "")
        assert dig(setup, transport, "-b", source, "+noedns", "www.example.test")[0] == \
            {address}
        assert dig(setup, transport, "-b", source, "+subnet=0.0.0.0/0",
                   "www.example.test") == ({address}, "0.0.0.0/0/0")


def test_names_not_routed_answer_ecs_with_scope_zero(setup: Setup) -> None:
    assert dig(setup, "+subnet=127.1.9.0/24", "static.example.test") == \
        ({"192.0.2.1"}, "127.1.9.0/24/0")
    assert dig(setup, "+subnet=127.1.9.0/24", "nothere.example.test") == \
        (set(), "127.1.9.0/24/0")
    assert dig(setup, "+subnet=127.1.9.0/24", "+nsid", "static.example.test")[1] == \
        "127.1.9.0/24/0"  # two options: the slow path echoes it too
    # The pool has no IPv6 addresses: AAAA is NODATA for everyone, scope 0.
    assert dig(setup, "+subnet=127.1.9.0/24", "www.example.test", "AAAA")[1] == \
        "127.1.9.0/24/0"


def raw(setup: Setup, option: bytes, name: str, tcp: bool, nsid: bool = False
        ) -> dns.message.Message:
    options = [dns.edns.GenericOption(8, option)]
    if nsid:
        options.append(dns.edns.GenericOption(3, b""))
    query = dns.message.make_query(name, "A", use_edns=0, options=options)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, "127.0.0.1", port=setup.server.port, timeout=3)


@pytest.mark.parametrize("option", [
    bytes.fromhex("0003 18 00 7f0000"),  # FAMILY 3
    bytes.fromhex("0001 21 00 7f000000"),  # source 33 for IPv4
    bytes.fromhex("0001 18 08 7f0000"),  # a scope in a query
    bytes.fromhex("0001 18 00 7f00"),  # too few address octets
    bytes.fromhex("0001 18 00 7f000001"),  # too many
    bytes.fromhex("0001 17 00 7f0001"),  # a bit set beyond the source length
    bytes.fromhex("0001"),  # shorter than the header
], ids=["family", "source", "scope", "short-address", "long-address", "bits", "header"])
def test_a_malformed_ecs_option_gets_formerr(setup: Setup, option: bytes) -> None:
    for name in ("www.example.test", "static.example.test"):
        for tcp in (False, True):
            for nsid in (False, True):
                response = raw(setup, option, name, tcp, nsid)
                assert response.rcode() == dns.rcode.FORMERR, (name, tcp, nsid)


def test_a_site_going_down_moves_its_clients_to_the_next_site(setup: Setup) -> None:
    europe = ("+subnet=127.0.9.0/24", "www.example.test")
    assert dig(setup, *europe)[0] == {FRA}
    setup.fra.down()
    try:
        setup.server.wait_until(lambda: dig(setup, *europe)[0] == {IAD}, 15,
                                "the European clients moved to iad")
        assert dig(setup, "+subnet=127.3.0.0/24", "www.example.test")[0] == {SIN}
        assert dig(setup, "+subnet=127.1.9.0/24", "www.example.test")[0] == {IAD}
    finally:
        setup.fra.up()
    setup.server.wait_until(lambda: dig(setup, *europe)[0] == {FRA}, 15, "back to fra")


def test_every_variant_validates(setup: Setup) -> None:
    """Each site's answer, asked with DO and ECS, carries an RRSIG that validates with the
    zone's key, the trust anchor (delv 9.18 cannot send ECS: dnspython validates)."""
    zone = dns.name.from_text("example.test")
    anchor = dns.rrset.from_text(zone, 3600, "IN", "DNSKEY", setup.anchor)  # the CSK
    seen = set()
    for subnet in ("127.0.9.0", "127.1.9.0", "127.2.9.0"):
        option = dns.edns.ECSOption(subnet, 24)
        query = dns.message.make_query("www.example.test", "A", want_dnssec=True,
                                       options=[option])
        response = dns.query.udp(query, "127.0.0.1", port=setup.server.port, timeout=3)
        name = dns.name.from_text("www.example.test")
        rrset = response.find_rrset(response.answer, name, dns.rdataclass.IN, dns.rdatatype.A)
        sigs = response.find_rrset(response.answer, name, dns.rdataclass.IN,
                                   dns.rdatatype.RRSIG, dns.rdatatype.A)
        dns.dnssec.validate(rrset, sigs, {zone: anchor})  # raises when it does not
        seen.add(rrset[0].address)
    assert seen == {FRA, IAD, SIN}


def test_axfr_carries_the_default_answer(setup: Setup) -> None:
    out = subprocess.run([need_tool("kdig"), "@127.0.0.1", "-p", str(setup.transfer_port),
                          "-y", f"hmac-sha256:{KEY}:{SECRET}", "example.test", "AXFR"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    www = [line.split() for line in out.splitlines()
           if line.startswith("www.example.test.") and "\tA\t" in line.replace(" ", "\t")]
    assert [r[-1] for r in www if r[3] == "A"] == [FRA], out  # the default order: fra first


def test_a_respawned_responder_gets_the_maps_before_its_snapshot(setup: Setup) -> None:
    """The maps travel apart from the snapshots (only when they change): a responder that
    starts later is sent the latest before its snapshot, and routes at once."""
    responders = [pid for pid, name in setup.server.children().items() if "responder" in name]
    assert len(responders) == 1, setup.server.children()
    os.kill(responders[0], signal.SIGKILL)
    setup.server.wait_until(lambda: any(
        "responder" in name and pid != responders[0]
        for pid, name in setup.server.children().items()), 15, "a new responder")

    def routed() -> bool:
        try:
            return dig(setup, "+subnet=127.2.9.0/24", "www.example.test") == \
                ({SIN}, "127.2.9.0/24/16")
        except subprocess.SubprocessError:
            return False
    setup.server.wait_until(routed, 15, "the new responder routes by the map")
