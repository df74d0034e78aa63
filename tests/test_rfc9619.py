"""RFC 9619: a query must carry exactly one question."""

from __future__ import annotations

import dns.rcode
from harness import Server, exchange

QUESTION = b"\x03www\x07example\x04test\x00\x00\x01\x00\x01"


def header(qdcount: int) -> bytes:
    return b"\x77\x77\x01\x00" + qdcount.to_bytes(2, "big") + b"\x00" * 6


def test_no_question_is_formerr(conformance: Server) -> None:
    raw = exchange(conformance, header(0))
    assert raw is not None and raw[:2] == b"\x77\x77"
    assert raw[3] & 0x0F == dns.rcode.FORMERR
    assert raw[4:6] == b"\x00\x00"


def test_two_questions_are_formerr(conformance: Server) -> None:
    raw = exchange(conformance, header(2) + QUESTION + QUESTION)
    assert raw is not None
    assert raw[3] & 0x0F == dns.rcode.FORMERR


def test_one_question_is_answered(conformance: Server) -> None:
    raw = exchange(conformance, header(1) + QUESTION)
    assert raw is not None and raw[3] & 0x0F == dns.rcode.NOERROR
