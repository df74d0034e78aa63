"""RFC 8020 and 4592 2.2.2: empty non-terminals exist; below a leaf nothing does.
RFC 3597: unknown types. RFC 8482: minimal ANY."""

from __future__ import annotations

import dns.rcode
import dns.rdatatype
import pytest
from harness import Server


@pytest.mark.parametrize("name", ["b.c.example.test", "c.example.test", "_udp.example.test"])
def test_empty_non_terminal_is_nodata(conformance: Server, name: str) -> None:
    response = conformance.query(name, "A")
    assert response.rcode() == dns.rcode.NOERROR
    assert not response.answer
    assert [r.rdtype for r in response.authority] == [dns.rdatatype.SOA]


@pytest.mark.parametrize("name", ["x.www.example.test", "y.x.www.example.test",
                                  "z.nothere.example.test"])
def test_below_a_leaf_or_nothing_is_nxdomain(conformance: Server, name: str) -> None:
    response = conformance.query(name, "A")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.authority[0].ttl == 60  # min(SOA TTL, MINIMUM)


@pytest.mark.parametrize("rdtype", ["TYPE65280", "TYPE1234", "HINFO", "NSEC", "RRSIG",
                                    "DNSKEY", "DS"])
def test_types_the_name_lacks_are_nodata(conformance: Server, rdtype: str) -> None:
    response = conformance.query("www.example.test", rdtype)
    assert response.rcode() == dns.rcode.NOERROR
    assert not response.answer and response.authority


def test_any_gets_one_rrset(conformance: Server) -> None:
    response = conformance.query("www.example.test", "ANY")
    assert response.rcode() == dns.rcode.NOERROR
    assert len(response.answer) == 1  # www has A and AAAA: one of them (RFC 8482)
    apex = conformance.query("example.test", "ANY")
    assert len(apex.answer) == 1


@pytest.mark.parametrize("rdtype,rcode", [("AXFR", dns.rcode.REFUSED),
                                          ("IXFR", dns.rcode.REFUSED),
                                          ("MAILB", dns.rcode.NOTIMP)])
def test_transfer_and_mail_meta_types(conformance: Server, rdtype: str, rcode: int) -> None:
    response = conformance.query("example.test", rdtype)
    assert response.rcode() == rcode
