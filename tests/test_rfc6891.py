"""RFC 6891 EDNS(0), RFC 3225 DO, RFC 5001 NSID, RFC 7873 cookies."""

from __future__ import annotations

import subprocess

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest
from conftest import need_tool
from harness import Server, exchange


def ask(server: Server, name: str = "www.example.test", rdtype: str = "A",
        **edns: object) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, **edns)  # type: ignore[arg-type]
    raw = exchange(server, q.to_wire())
    assert raw is not None
    return dns.message.from_wire(raw)


def test_opt_in_every_response_to_an_edns_query(conformance: Server) -> None:
    for name, rdtype in [("www.example.test", "A"), ("nothere.example.test", "A"),
                         ("www.example.test", "MX"), ("www.example.com", "A")]:
        response = ask(conformance, name, rdtype, use_edns=0)
        assert response.edns == 0, (name, rdtype)
        assert response.payload == 1232


def test_no_opt_without_edns(conformance: Server) -> None:
    assert ask(conformance, use_edns=False).edns == -1


@pytest.mark.parametrize("do", [False, True])
def test_do_bit_is_echoed(conformance: Server, do: bool) -> None:
    response = ask(conformance, use_edns=0, want_dnssec=do)
    assert bool(response.ednsflags & dns.flags.DO) == do
    assert response.rcode() == dns.rcode.NOERROR


def test_version_above_zero_is_badvers(conformance: Server) -> None:
    response = ask(conformance, use_edns=1)
    assert response.rcode() == dns.rcode.BADVERS
    assert response.edns == 0  # we answer with the version we speak
    assert not response.answer


def test_unknown_options_are_ignored(conformance: Server) -> None:
    option = dns.edns.GenericOption(65001, b"\x01\x02")
    response = ask(conformance, use_edns=0, options=[option])
    assert response.rcode() == dns.rcode.NOERROR
    assert [rd.to_text() for rd in response.answer[0]] == ["192.0.2.1", "192.0.2.2"]
    assert not response.options


def test_two_opt_records_are_formerr(conformance: Server) -> None:
    wire = bytearray(dns.message.make_query("www.example.test", "A", use_edns=0).to_wire())
    opt = bytes(wire[-11:])
    wire[11] = 2  # ARCOUNT 2
    raw = exchange(conformance, bytes(wire) + opt)
    assert raw is not None and raw[3] & 0x0F == dns.rcode.FORMERR


def test_truncation_follows_the_client_payload_size(conformance: Server) -> None:
    small = ask(conformance, "big.example.test", "TXT", use_edns=0, payload=512)
    assert small.flags & dns.flags.TC and small.edns == 0
    # Over our own 1232 bytes, whatever the client allows: no fragments (RFC 6891 6.2.5).
    large = ask(conformance, "big.example.test", "TXT", use_edns=0, payload=4096)
    assert large.flags & dns.flags.TC
    fits = ask(conformance, "example.test", "NS", use_edns=0, payload=512)
    assert not fits.flags & dns.flags.TC


def test_nsid_when_asked(conformance: Server) -> None:
    response = ask(conformance, use_edns=0, options=[dns.edns.GenericOption(dns.edns.NSID,
                                                                            b"")])
    (option,) = response.options
    assert option.otype == dns.edns.NSID
    assert option.to_wire() == b"healthdns-test"
    assert not ask(conformance, use_edns=0).options


def test_client_cookie_does_not_break_the_answer(conformance: Server) -> None:
    cookie = dns.edns.GenericOption(dns.edns.COOKIE, b"\x01\x02\x03\x04\x05\x06\x07\x08")
    response = ask(conformance, use_edns=0, options=[cookie])
    assert response.rcode() == dns.rcode.NOERROR
    assert len(response.answer[0]) == 2


def test_kdig_nsid_and_dig_cookie(conformance: Server) -> None:
    kdig = need_tool("kdig")
    out = subprocess.run([kdig, "@" + conformance.host, "-p", str(conformance.port), "+nsid",
                          "www.example.test", "A"], capture_output=True, text=True,
                         timeout=10, check=True).stdout
    assert "healthdns-test" in out and "NOERROR" in out
    dig = need_tool("dig")
    out = subprocess.run([dig, "@" + conformance.host, "-p", str(conformance.port), "+cookie",
                          "+norec", "www.example.test", "A"], capture_output=True, text=True,
                         timeout=10, check=True).stdout
    assert "status: NOERROR" in out and "192.0.2.1" in out
