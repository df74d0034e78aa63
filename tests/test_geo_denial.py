"""Geo NODATA a validator can prove, on the wire, in a signed zone (NSEC and NSEC3): a client
whose order ends in NODATA (policy `empty`, its only site down) while the default order serves
an address gets an NSEC (NSEC3) record of the name whose bitmap lacks the type, signed; the
client of the default order still gets its address, signed. dnspython validates against the
zone's key, the trust anchor (delv 9.18 cannot send ECS)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dns.dnssec
import dns.edns
import dns.message
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from harness import Backend, Server, config_toml
from test_dnssec import generate

FRA, IAD = "127.0.0.11", "127.0.0.12"  # nothing listens on IAD: its site is down
ZONE, WWW = dns.name.from_text("example.test"), dns.name.from_text("www.example.test")
STRANDED = "127.4.0.0"  # a network whose order is iad alone


@dataclass
class Setup:
    server: Server
    anchor: dns.rrset.RRset
    denial: str


@pytest.fixture(scope="module", params=["nsec", "nsec3"])
def setup(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    denial = request.param
    tmp = tmp_path_factory.mktemp(f"geodenial-{denial}")
    key, anchor = generate(tmp, "ECDSAP256SHA256", "csk")
    fra = Backend(FRA)
    fra.up()
    check = {"port": fra.port, "interval": 0.2, "timeout": 0.15, "rise": 1, "fall": 1}
    pool = {"map": "world", "check": check, "policy": "empty", "sites": {
        "fra": {"addresses": [FRA]}, "iad": {"addresses": [IAD]}}}
    toml = config_toml(
        {"www": {"pool": pool}},
        zone={"dnssec": {"csk": str(key), "denial": denial}},
        sites={"fra": {}, "iad": {}},
        maps={"world": {"default": ["fra", "iad"],
                        "networks": [{"cidrs": [f"{STRANDED}/24"], "sites": ["iad"]}]}})
    server = Server([], tmp, toml).start()
    try:
        yield Setup(server, dns.rrset.from_text(ZONE, 3600, "IN", "DNSKEY", anchor), denial)
    finally:
        assert server.stop() == 0
        fra.close()


def ask(setup: Setup, subnet: str) -> dns.message.Message:
    query = dns.message.make_query(WWW, "A", want_dnssec=True,
                                   options=[dns.edns.ECSOption(subnet, 24)])
    return dns.query.udp(query, "127.0.0.1", port=setup.server.port, timeout=3)


def validated(setup: Setup, section: list[dns.rrset.RRset]) -> list[dns.rrset.RRset]:
    """The RRsets of `section` but RRSIGs, each validated with its RRSIGs (raises if not)."""
    out = []
    for rrset in section:
        if rrset.rdtype == dns.rdatatype.RRSIG:
            continue
        sigs = next(s for s in section if s.rdtype == dns.rdatatype.RRSIG
                    and s.name == rrset.name and s.covers == rrset.rdtype)
        dns.dnssec.validate(rrset, sigs, {ZONE: setup.anchor})
        out.append(rrset)
    return out


def bitmap_types(rdata: Any) -> set[int]:
    """The types of an NSEC or NSEC3 rdata's bitmap."""
    return {window * 256 + i * 8 + bit for window, bits in rdata.windows
            for i, octet in enumerate(bits) for bit in range(8) if octet & (0x80 >> bit)}


def test_a_stranded_clients_nodata_is_proved(setup: Setup) -> None:
    def stranded() -> bool:
        response = ask(setup, STRANDED)
        return not response.answer and response.rcode() == 0
    setup.server.wait_until(stranded, 15, "the stranded client gets NODATA")
    records = validated(setup, ask(setup, STRANDED).authority)
    kind = dns.rdatatype.NSEC3 if setup.denial == "nsec3" else dns.rdatatype.NSEC
    owner = WWW if kind == dns.rdatatype.NSEC else dns.name.from_text(
        dns.dnssec.nsec3_hash(WWW, salt=None, iterations=0, algorithm=1), ZONE)
    proof = [r for r in records if r.rdtype == kind]
    assert [r.name for r in proof] == [owner], records  # the name's own record: it exists
    types = bitmap_types(proof[0][0])
    # A validator's NODATA check (RFC 4035 5.4, RFC 5155 8.5): neither the type nor CNAME.
    assert dns.rdatatype.A not in types and dns.rdatatype.CNAME not in types, types
    # NSEC lists itself and RRSIG; NSEC3 of a name serving nothing has an empty bitmap, as
    # an empty non-terminal's (RFC 5155 3.2.1).
    assert types == ({dns.rdatatype.NSEC, dns.rdatatype.RRSIG} if kind == dns.rdatatype.NSEC
                     else set()), types


def test_the_default_clients_address_still_validates(setup: Setup) -> None:
    response = ask(setup, "127.0.9.0")
    answer = validated(setup, response.answer)
    assert [(r.rdtype, r[0].address) for r in answer] == [(dns.rdatatype.A, FRA)]
