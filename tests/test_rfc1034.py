"""RFC 1034 4.3.2: CNAME answers, and chains followed inside our zones."""

from __future__ import annotations

import dns.rcode
import dns.rdatatype
from harness import Server


def answer(server: Server, name: str, rdtype: str = "A") -> list[tuple[str, str, str]]:
    response = server.query(name, rdtype)
    return [(r.name.to_text(), dns.rdatatype.to_text(r.rdtype), rd.to_text())
            for r in response.answer for rd in r]


def test_cname_followed_to_the_target(conformance: Server) -> None:
    assert answer(conformance, "alias.example.test") == [
        ("alias.example.test.", "CNAME", "www.example.test."),
        ("www.example.test.", "A", "192.0.2.1"), ("www.example.test.", "A", "192.0.2.2")]


def test_cname_query_gets_only_the_cname(conformance: Server) -> None:
    assert answer(conformance, "alias.example.test", "CNAME") == [
        ("alias.example.test.", "CNAME", "www.example.test.")]


def test_chain_across_zones(conformance: Server) -> None:
    assert answer(conformance, "chain1.example.test", "AAAA") == [
        ("chain1.example.test.", "CNAME", "chain2.example.test."),
        ("chain2.example.test.", "CNAME", "www.example.org."),
        ("www.example.org.", "AAAA", "2001:db8::1")]


def test_chain_to_nodata_has_the_target_zone_soa(conformance: Server) -> None:
    response = conformance.query("alias.example.test", "MX")
    assert response.rcode() == dns.rcode.NOERROR
    assert [r.rdtype for r in response.answer] == [dns.rdatatype.CNAME]
    assert response.authority[0].rdtype == dns.rdatatype.SOA


def test_dangling_cname_is_nxdomain_with_the_cname(conformance: Server) -> None:
    response = conformance.query("dangling.example.test", "A")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert [r.rdtype for r in response.answer] == [dns.rdatatype.CNAME]


def test_loop_ends(conformance: Server) -> None:
    response = conformance.query("loop1.example.test", "A")
    assert response.rcode() == dns.rcode.NOERROR
    names = [r.name.to_text() for r in response.answer]
    assert names == ["loop1.example.test.", "loop2.example.test."]


def test_out_of_zone_target_is_left_to_the_resolver(conformance: Server) -> None:
    assert answer(conformance, "ext.example.test") == [
        ("ext.example.test.", "CNAME", "www.example.net.")]
