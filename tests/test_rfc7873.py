"""RFC 7873 DNS cookies, with RFC 9018 interoperable server cookies."""

from __future__ import annotations

import struct
import subprocess
import time

import dns.edns
import dns.message
import dns.rcode
import pytest
from conftest import need_tool
from harness import Server, exchange

CLIENT = b"\x11\x22\x33\x44\x55\x66\x77\x88"


def ask(server: Server, cookie: bytes | None, tcp: bool = False,
        nsid: bool = False) -> dns.message.Message:
    options: list[dns.edns.Option] = []
    if cookie is not None:
        options.append(dns.edns.GenericOption(dns.edns.COOKIE, cookie))
    if nsid:
        options.append(dns.edns.GenericOption(dns.edns.NSID, b""))
    q = dns.message.make_query("www.example.test", "A", use_edns=0, options=options)
    raw = exchange(server, q.to_wire(), tcp=tcp)
    assert raw is not None
    return dns.message.from_wire(raw)


def cookie_of(message: dns.message.Message) -> bytes | None:
    for option in message.options:
        if option.otype == dns.edns.COOKIE:
            return option.to_wire()  # type: ignore[no-any-return]
    return None


@pytest.mark.parametrize("tcp", [False, True])
def test_a_client_cookie_gets_our_server_cookie(conformance: Server, tcp: bool) -> None:
    """RFC 7873 5.2.3; the server cookie is RFC 9018's: version 1, reserved, timestamp."""
    response = ask(conformance, CLIENT, tcp=tcp)
    assert response.rcode() == dns.rcode.NOERROR and response.answer
    cookie = cookie_of(response)
    assert cookie is not None and len(cookie) == 24 and cookie[:8] == CLIENT
    assert cookie[8:12] == b"\x01\x00\x00\x00"
    assert abs(struct.unpack_from(">I", cookie, 12)[0] - time.time()) < 60


def test_our_cookie_comes_back_unchanged_and_over_the_other_transport(
        conformance: Server) -> None:
    """RFC 9018 4.3: a valid, recent cookie is kept; it is bound to the address, not the
    transport or the responder."""
    cookie = cookie_of(ask(conformance, CLIENT))
    assert cookie is not None
    assert cookie_of(ask(conformance, cookie)) == cookie
    assert cookie_of(ask(conformance, cookie, tcp=True)) == cookie


def test_a_server_cookie_we_did_not_make_is_replaced(conformance: Server) -> None:
    """RFC 7873 5.2.4: answered normally, with a new server cookie."""
    forged = CLIENT + b"\x01\x00\x00\x00" + struct.pack(">I", int(time.time())) + b"\x00" * 8
    response = ask(conformance, forged)
    assert response.rcode() == dns.rcode.NOERROR and response.answer
    cookie = cookie_of(response)
    assert cookie is not None and cookie[:8] == CLIENT and cookie != forged


@pytest.mark.parametrize("size", [1, 7, 9, 15, 41])
def test_a_malformed_cookie_is_formerr(conformance: Server, size: int) -> None:
    """RFC 7873 5.2.2: an option of a length no cookie has."""
    response = ask(conformance, b"\x01" * size)
    assert response.rcode() == dns.rcode.FORMERR
    assert cookie_of(response) is None and not response.answer


def test_cookie_and_nsid_together(conformance: Server) -> None:
    response = ask(conformance, CLIENT, nsid=True)
    assert {o.otype for o in response.options} == {dns.edns.COOKIE, dns.edns.NSID}


def test_dig_says_the_server_cookie_is_good(conformance: Server) -> None:
    dig = need_tool("dig")
    base = [dig, "@" + conformance.host, "-p", str(conformance.port), "+norec",
            "www.example.test", "A"]
    first = subprocess.run([*base, "+cookie"], capture_output=True, text=True, check=True,
                           timeout=10).stdout
    line = next(line for line in first.splitlines() if line.startswith("; COOKIE:"))
    assert line.endswith("(good)"), first
    sent = line.split()[2]
    assert len(sent) == 48  # client and server cookie, in hex
    second = subprocess.run([*base, f"+cookie={sent}"], capture_output=True, text=True,
                            check=True, timeout=10).stdout
    assert f"; COOKIE: {sent} (good)" in second, second
    assert "status: NOERROR" in second
