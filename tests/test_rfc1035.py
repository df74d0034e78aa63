"""RFC 1035 (with RFC 2181, 6840, 3425): the header, the question, malformed queries."""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import pytest
from harness import Server, exchange


def query_wire(name: str = "www.example.test", rdtype: str = "A", flags: int = 0,
               qid: int = 0x1234) -> bytes:
    q = dns.message.make_query(name, rdtype, use_edns=False)
    q.id, q.flags = qid, flags
    return q.to_wire()


@pytest.mark.parametrize("rd", [0, dns.flags.RD])
@pytest.mark.parametrize("cd", [0, dns.flags.CD])
@pytest.mark.parametrize("ad", [0, dns.flags.AD])
def test_header_bits(conformance: Server, rd: int, cd: int, ad: int) -> None:
    response = exchange(conformance, query_wire(flags=rd | cd | ad, qid=0xBEEF))
    assert response is not None
    qid, flags = struct.unpack_from(">HH", response)
    assert qid == 0xBEEF
    assert flags & dns.flags.QR
    assert flags & dns.flags.AA
    assert not flags & dns.flags.TC
    assert flags & dns.flags.RD == rd  # copied (RFC 1035 4.1.1)
    assert not flags & dns.flags.RA  # no recursion here
    assert flags & dns.flags.CD == cd  # copied (RFC 6840 5.9)
    assert not flags & dns.flags.AD  # we validate nothing
    assert not flags & 0x0040  # Z
    assert (flags >> 11) & 0xF == 0 and flags & 0xF == 0  # opcode QUERY, NOERROR


def test_question_echoed_byte_for_byte(conformance: Server) -> None:
    for name in ("wWw.ExAmPlE.tEsT", "MAIL.EXAMPLE.TEST", "nOsUcH.example.TEST"):
        wire = query_wire(name)
        response = exchange(conformance, wire)
        assert response is not None
        end = wire.index(b"\x00", 12) + 5
        assert response[12:end] == wire[12:end]
        assert struct.unpack_from(">H", response, 4)[0] == 1


def test_answer_owner_follows_the_question_case(conformance: Server) -> None:
    response = dns.message.from_wire(exchange(conformance, query_wire("WWW.example.test")))
    assert response.answer[0].name.to_text() == "WWW.example.test."  # compressed to question


@pytest.mark.parametrize("wire", [
    b"",
    b"\x12\x34",
    b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00",  # 11 bytes
], ids=["empty", "two-bytes", "eleven-bytes"])
def test_short_packets_get_no_reply(conformance: Server, wire: bytes) -> None:
    assert exchange(conformance, wire, timeout=0.3) is None


def test_a_response_gets_no_reply(conformance: Server) -> None:
    wire = bytearray(query_wire())
    wire[2] |= 0x80  # QR=1
    assert exchange(conformance, bytes(wire), timeout=0.3) is None


@pytest.mark.parametrize("opcode", [dns.opcode.IQUERY, dns.opcode.STATUS, dns.opcode.NOTIFY,
                                    dns.opcode.UPDATE, 3, 15])
@pytest.mark.parametrize("bits", [0, dns.flags.RD | dns.flags.CD | dns.flags.AD])
def test_other_opcodes_are_not_implemented(conformance: Server, opcode: int, bits: int) -> None:
    wire = bytearray(query_wire(flags=bits))
    wire[2] |= opcode << 3
    raw = exchange(conformance, bytes(wire))
    assert raw is not None
    _, flags, qdcount, ancount = struct.unpack_from(">HHHH", raw)
    assert flags & 0x0F == dns.rcode.NOTIMP
    assert (flags >> 11) & 0x0F == opcode  # echoed
    assert flags & dns.flags.QR and not flags & dns.flags.AA
    # RD alone is copied: CD and AD are QUERY bits (ISC's EDNS compliance test "opcodeflg").
    assert flags & (dns.flags.RD | dns.flags.CD | dns.flags.AD) == bits & dns.flags.RD
    assert qdcount == 1 and ancount == 0
    assert raw[12:] == bytes(wire[12:])  # the question, as sent


@pytest.mark.parametrize("rdclass", ["CH", "HS", "ANY", "NONE"])
def test_classes_other_than_in_are_refused(conformance: Server, rdclass: str) -> None:
    q = dns.message.make_query("www.example.test", "A", rdclass=rdclass, use_edns=False)
    response = dns.message.from_wire(exchange(conformance, q.to_wire()))
    assert response.rcode() == dns.rcode.REFUSED
    assert not response.flags & dns.flags.AA


@pytest.mark.parametrize("tail", [
    b"\x03www\x07exam",  # the name runs past the packet
    b"\x03www\x00\x00",  # the type runs past the packet
    b"\x41" + b"a" * 65 + b"\x00\x00\x01\x00\x01",  # label type 01 (RFC 6891 obsolete)
    b"\xc0\x0c\x00\x01\x00\x01",  # a compression pointer in the question
    (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01",  # a name of 257 octets
], ids=["name-past-end", "type-past-end", "bad-label-type", "pointer", "name-too-long"])
def test_malformed_question_is_formerr(conformance: Server, tail: bytes) -> None:
    wire = b"\xab\xcd\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00" + tail
    raw = exchange(conformance, wire)
    assert raw is not None
    assert raw[:2] == b"\xab\xcd"
    assert raw[3] & 0x0F == dns.rcode.FORMERR
    assert raw[2] & 0x80  # QR


def test_outside_our_zones_is_refused(conformance: Server) -> None:
    for name in ("www.example.com", "test", ".", "example.test.evil"):
        response = dns.message.from_wire(exchange(conformance, query_wire(name)))
        assert response.rcode() == dns.rcode.REFUSED, name
        assert not response.flags & dns.flags.AA


def test_plain_udp_is_truncated_at_512_to_a_valid_message(conformance: Server) -> None:
    raw = exchange(conformance, query_wire("big.example.test", "TXT"))
    assert raw is not None and len(raw) <= 512
    response = dns.message.from_wire(raw)
    assert response.flags & dns.flags.TC
    assert response.rcode() == dns.rcode.NOERROR
    assert response.question[0].name.to_text() == "big.example.test."


def test_tcp_carries_the_whole_answer(conformance: Server) -> None:
    raw = exchange(conformance, query_wire("big.example.test", "TXT"), tcp=True)
    response = dns.message.from_wire(raw)
    assert not response.flags & dns.flags.TC
    assert len(response.answer[0]) == 40


def test_static_types_are_served(conformance: Server) -> None:
    expected = {
        ("example.test", "MX"): "10 mail.example.test.",
        ("example.test", "CAA"): '0 issue "letsencrypt.org"',
        ("example.test", "TXT"): '"v=spf1 -all"',
        ("_sip._udp.example.test", "SRV"): "10 60 5060 sip.example.test.",
        ("rev.example.test", "PTR"): "www.example.test.",
        ("www.example.org", "AAAA"): "2001:db8::1",
    }
    for (name, rdtype), text in expected.items():
        response = conformance.query(name, rdtype)
        assert [rd.to_text() for rd in response.answer[0]] == [text]
        assert response.answer[0].ttl == 300


ORIGIN = b"\x07example\x04test\x00"


@pytest.mark.parametrize("name", [
    b"\x01a" * 119 + b"\x03aaa" + ORIGIN,  # 256 octets
    b"\x01a" * 1990 + ORIGIN,  # 3,994 octets: its NXDOMAIN was 4,084 octets, without TC
    b"\x7f" + b"a" * 0x7F + ORIGIN,  # label type 01, whose byte read as a length skips to ours
    b"\x81" + b"a" * 0x81 + ORIGIN,  # label type 10, likewise
], ids=["256-octets", "3994-octets", "type-0x40", "type-0x80"])
@pytest.mark.parametrize("edns", [False, True])
def test_malformed_name_in_our_zone_is_formerr_not_nxdomain(conformance: Server, name: bytes,
                                                            edns: bool) -> None:
    arcount, opt = (1, b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00") if edns else (0, b"")
    wire = struct.pack(">HHHHHH", 0xABCD, 0, 1, 0, 0, arcount) + name + b"\x00\x01\x00\x01" + opt
    raw = exchange(conformance, wire)
    assert raw is not None and len(raw) <= 512
    assert raw[:2] == b"\xab\xcd"
    assert raw[3] & 0x0F == dns.rcode.FORMERR
