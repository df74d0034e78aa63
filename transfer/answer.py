"""The answers to the secondaries' queries: AXFR, IXFR and SOA for the zones held, REFUSED
for anything else or any client the rules do not admit, NOTAUTH for a bad signature."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.opcode
import dns.rdatatype

from healthdns.shared import tsigkeys, tsigwire
from healthdns.shared.config import TransferSpec
from healthdns.shared.framing import HEADER
from healthdns.transfer.access import Access
from healthdns.transfer.journal import Store, ZoneState
from healthdns.transfer.packing import QR, RD, pack, pack_axfr

NOERROR, FORMERR, SERVFAIL, REFUSED, NOTAUTH = 0, 1, 2, 5, 9


@dataclass
class TransferCounts:
    """What the transfer process reports (`messages.TransferStats`): answers by kind."""

    axfr: int = 0
    ixfr: int = 0
    fallback: int = 0
    refused: int = 0


class Transfers:
    """The zones held, and the answers to the secondaries' queries."""

    def __init__(self, spec: TransferSpec, tsig_keys: list[tsigkeys.Key],
                 clock: Callable[[], float] = time.time) -> None:
        self.spec = spec
        self.store = Store(spec.journal)
        self.access = Access(spec)
        self.keyring = tsigkeys.keyring(tsig_keys)
        self.clock = clock
        self.counts = TransferCounts()

    def answer(self, wire: bytes, host: str) -> Iterator[bytes]:
        """The messages that answer one query from `host` (none: drop the query), signed
        when the query was (RFC 8945 5.3.1: each message of a stream)."""
        try:
            query = dns.message.from_wire(wire, keyring=False)
        except dns.exception.DNSException:
            if len(wire) >= HEADER and not wire[2] & 0x80:
                yield _header(wire, FORMERR, 0, 0)
            return
        if query.flags & QR:
            return  # a response is never answered
        checked = tsigwire.verify(wire, self.keyring, self.clock())
        if isinstance(checked, tsigwire.Refusal):  # NOTAUTH: unknown key, bad MAC, time (5.2)
            self.counts.refused += 1
            yield checked.response(wire)
            return
        sign = tsigwire.Stream(checked, self.clock).sign if checked is not None else _as_is
        key = "" if checked is None else checked.key.name.to_text(omit_final_dot=True).lower()
        question = _question(wire)
        if key not in self.access.keys(host) or question is None \
                or query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
            self.counts.refused += 1
            yield sign(_error(wire, question, REFUSED))
            return
        for message in self._query(query, wire, question):
            yield sign(message)

    def _query(self, query: dns.message.Message, wire: bytes,
               question: bytes) -> Iterator[bytes]:
        rrset = query.question[0]
        if rrset.rdtype not in (dns.rdatatype.SOA, dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            self.counts.refused += 1
            yield _error(wire, question, REFUSED)
            return
        if self.store.generation == 0:
            yield _error(wire, question, SERVFAIL)  # nothing published yet: try again
            return
        zone = self.store.zones.get(rrset.name.canonicalize().to_wire() or b"")
        if zone is None:
            self.counts.refused += 1
            yield _error(wire, question, NOTAUTH)  # not a zone of ours (RFC 5936 2.2.1)
            return
        if rrset.rdtype == dns.rdatatype.SOA:
            yield from pack(wire, question, [zone.soa])
        elif rrset.rdtype == dns.rdatatype.AXFR:
            self.counts.axfr += 1
            yield from pack_axfr(wire, question, zone)
        else:
            yield from self._ixfr(query, wire, question, zone)

    def _ixfr(self, query: dns.message.Message, wire: bytes, question: bytes,
              zone: ZoneState) -> Iterator[bytes]:
        serials = [rd.serial for rrset in query.authority if rrset.rdtype == dns.rdatatype.SOA
                   for rd in rrset]
        if len(serials) != 1:  # RFC 1995 3: the client's SOA is in the authority section
            yield _error(wire, question, FORMERR)
            return
        records = zone.ixfr(serials[0])
        if records is None:
            self.counts.fallback += 1
            yield from pack_axfr(wire, question, zone)
            return
        self.counts.ixfr += 1
        yield from pack(wire, question, records)


def _as_is(message: bytes) -> bytes:
    return message


def _error(query: bytes, question: bytes | None, rcode: int) -> bytes:
    return _header(query, rcode, 1 if question else 0, 0) + (question or b"")


def _header(query: bytes, rcode: int, qdcount: int, ancount: int) -> bytes:
    flags = QR | (int.from_bytes(query[2:4], "big") & (0x7800 | RD)) | rcode
    return b"".join(v.to_bytes(2, "big") for v in
                    (int.from_bytes(query[0:2], "big"), flags, qdcount, ancount, 0, 0))


def _question(wire: bytes) -> bytes | None:
    """The query's one question as it came (name uncompressed), or None."""
    if int.from_bytes(wire[4:6], "big") != 1:
        return None
    pos = HEADER
    while pos < len(wire):
        length = wire[pos]
        if length & 0xC0:
            return None
        pos += 1 + length
        if length == 0:
            return wire[HEADER:pos + 4] if pos + 4 <= len(wire) else None
    return None
