"""TSIG on the wire (RFC 8945): check a signed request, sign its reply or reply stream, sign
a request of our own (NOTIFY) and check the answer to it.

Wire in, wire out, as everywhere on the serving paths: the caller builds the reply as
if the request were unsigned and hands its bytes here to be signed. dnspython computes the
MACs (`dns.tsig.sign`) and parses the TSIG record; this module adds what a server needs and
dnspython leaves to it: the order of the checks of RFC 8945 5.2 with the error each one
answers, truncated MACs (5.2.2.1), and the error replies (5.3.2).

dnspython is imported by this module only: a responder loads it on its first signed query.
"""

from __future__ import annotations

import hmac
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.wire
from dns.rdtypes.ANY.TSIG import TSIG as TsigRdata

from healthdns.shared import tsigkeys

FORMERR, NOTAUTH = 1, 9
BADSIG, BADKEY, BADTIME, BADTRUNC = 16, 17, 18, 22  # TSIG errors (RFC 8945 3)
FUDGE = 300  # seconds of clock skew we allow in what we sign (RFC 8945 10 recommends 300)
# RFC 8945 5.2.4 lets a server refuse a MAC truncated more than its policy allows (BADTRUNC);
# ours: no fewer than 128 bits, which keeps HMAC-SHA1-96 (12 octets) out, as RFC 8945 5.2.2.1
# advises, while the RFC's floor (10 octets, half the hash) makes anything shorter FORMERR.
MIN_TRUNCATED = 16
QR = 0x8000
TSIG_FIXED = 10 + 16  # an RR's type, class, TTL, length + the TSIG rdata's fixed fields

Keyring = Mapping[dns.name.Name, dns.tsig.Key]


@dataclass(frozen=True)
class Verified:
    """A request whose TSIG checked out: what signing the reply needs."""

    key: dns.tsig.Key
    request: TsigRdata  # the request's TSIG: its MAC (as sent, maybe truncated), original ID
    now: float


@dataclass(frozen=True)
class Refusal:
    """A request to refuse (RFC 8945 5.2): NOTAUTH with a TSIG error, or FORMERR."""

    rcode: int  # NOTAUTH, or FORMERR (a TSIG out of place or malformed, a MAC size out of range)
    error: int = 0  # BADKEY, BADSIG, BADTIME or BADTRUNC with NOTAUTH
    owner: dns.name.Name | None = None  # the key name as the request gave it
    request: TsigRdata | None = None
    key: dns.tsig.Key | None = None  # set when the reply is signed (BADTIME, BADTRUNC)
    now: float = 0.0

    def response(self, query: bytes) -> bytes:
        """The whole reply to `query`: its header and question, and our TSIG."""
        return self.finish(error_reply(query, self.rcode))

    def finish(self, reply: bytes) -> bytes:
        """`reply` (the caller's error reply, rcode `self.rcode`) with the TSIG it must carry.

        BADKEY and BADSIG replies are unsigned: MAC empty (RFC 8945 5.3.2), since the key or
        the MAC is what failed. BADTIME and BADTRUNC replies are signed, over the request's
        MAC, which did verify, so the client can trust the server time sent back."""
        request, owner = self.request, self.owner
        if self.rcode != NOTAUTH or request is None or owner is None:
            return reply  # FORMERR: no TSIG to answer with
        now = int(self.now)
        if self.key is None:
            rdata = _rdata(request.algorithm, now, b"", request.original_id, self.error)
            return _append(reply, owner, rdata)
        # BADTIME: the request's time signed, ours in "other data" (RFC 8945 5.2.3).
        other = struct.pack("!HI", now >> 32 & 0xFFFF, now & 0xFFFFFFFF) \
            if self.error == BADTIME else b""
        signed = request.time_signed if self.error == BADTIME else now
        template = _rdata(self.key.algorithm, signed, b"", request.original_id, self.error, other)
        rdata, _ = _sign(reply, self.key, template, signed, request.mac)
        return _append(reply, self.key.name, rdata)


class Stream:
    """Signs the reply to a verified request, or each message of a reply stream (AXFR, IXFR):
    the first over the request's MAC, each next one over the MAC before it (RFC 8945 5.3.1).

    The digest is computed here with `hmac` rather than by `dns.tsig.sign`: a 10,000-name AXFR
    is ~46 messages, and dnspython's per-message TSIG objects cost as much CPU as hashing the
    3 MB itself. The octets are the same (tests/test_tsig.py compares them with dnspython's).
    Every message is signed: RFC 8945 5.3.1 allows up to 99 unsigned ones between two, but
    the hashing is the same either way, so skipping saves little and not every client accepts.
    """

    def __init__(self, verified: Verified, clock: Callable[[], float] = time.time) -> None:
        key = verified.key
        self.key = key
        self.original_id = verified.request.original_id
        self.request_mac = verified.request.mac  # as sent: truncated if it was (5.2.2.1)
        self.clock = clock
        self.previous: bytes | None = None  # the MAC of the message before, once one is signed
        # Keyed once; each message hashes on a copy (no re-keying per message).
        self.hmac = hmac.new(key.secret, digestmod=_digest_name(key.algorithm))
        algorithm = _wire(key.algorithm)
        # The TSIG variables (RFC 8945 4.3.3) in canonical form around the time: name, class,
        # TTL, algorithm before it, error and other length after (the first message only).
        self.variables = (_wire(key.name.canonicalize())
                          + struct.pack("!HI", dns.rdataclass.ANY, 0)
                          + _wire(key.algorithm.canonicalize()))
        self.owner = _wire(key.name) + struct.pack("!HHI", dns.rdatatype.TSIG,
                                                   dns.rdataclass.ANY, 0)
        self.algorithm = algorithm
        self.trailer = struct.pack("!HHH", self.original_id, 0, 0)  # original ID, error, other
        # Octets the TSIG adds to a message: the room a reply must leave for it.
        self.size = (len(_wire(self.key.name)) + TSIG_FIXED + len(algorithm)
                     + dns.tsig.mac_sizes[self.key.algorithm])

    def sign(self, message: bytes) -> bytes:
        """`message` (a reply with its ID, without a TSIG) with its TSIG appended."""
        now = int(self.clock())
        timers = struct.pack("!HIH", now >> 32 & 0xFFFF, now & 0xFFFFFFFF, FUDGE)
        digest = self.hmac.copy()
        prior = self.request_mac if self.previous is None else self.previous
        digest.update(struct.pack("!H", len(prior)) + prior
                      + struct.pack("!H", self.original_id))
        digest.update(memoryview(message)[2:])  # the ID as the original ID, then the rest
        if self.previous is None:
            digest.update(self.variables + timers + b"\0\0\0\0")  # error 0, no other data
        else:
            digest.update(timers)
        mac = self.previous = digest.digest()
        rdata = self.algorithm + timers + struct.pack("!H", len(mac)) + mac + self.trailer
        arcount = struct.pack("!H", (message[10] << 8 | message[11]) + 1)
        return b"".join((message[:10], arcount, memoryview(message)[12:], self.owner,
                         struct.pack("!H", len(rdata)), rdata))


def _digest_name(algorithm: dns.name.Name) -> str:
    """hashlib's name for a TSIG HMAC algorithm (hmac-sha256. -> sha256)."""
    text = algorithm.to_text(omit_final_dot=True).lower()
    if not text.startswith("hmac-"):
        raise NotImplementedError(f"TSIG algorithm {text} is not an HMAC")
    return text.removeprefix("hmac-")


def verify(wire: bytes, keyring: Keyring, now: float) -> Verified | Refusal | None:
    """Check the TSIG of a request at time `now`; None when it carries none.

    The checks come in the order of RFC 8945 5.2 (key, MAC, time, truncation), each with its
    own refusal."""
    try:
        found = _find(wire)
    except (dns.exception.DNSException, ValueError):
        return Refusal(FORMERR)
    if found is None:
        return None
    start, owner, request = found
    key = keyring.get(owner)
    if key is None or key.algorithm != request.algorithm:  # 5.2.1: unknown key or algorithm
        return Refusal(NOTAUTH, BADKEY, owner, request, None, now)
    full = dns.tsig.mac_sizes[key.algorithm]
    floor = max(10, full // 2)
    if not floor <= len(request.mac) <= full:  # 5.2.2.1, rules 1 and 3
        return Refusal(FORMERR)
    arcount = struct.unpack_from("!H", wire, 10)[0]
    unsigned = wire[:10] + struct.pack("!H", arcount - 1) + wire[12:start]
    expected, _ = _sign(unsigned, key, request, request.time_signed)
    if not hmac.compare_digest(expected.mac[:len(request.mac)], request.mac):
        return Refusal(NOTAUTH, BADSIG, owner, request, None, now)
    if abs(request.time_signed - now) > request.fudge:  # 5.2.3
        return Refusal(NOTAUTH, BADTIME, owner, request, key, now)
    if len(request.mac) < max(MIN_TRUNCATED, floor):  # 5.2.4: shorter than our policy
        return Refusal(NOTAUTH, BADTRUNC, owner, request, key, now)
    return Verified(key, request, now)


def sign_request(wire: bytes, key: dns.tsig.Key | tsigkeys.Key,
                 now: float | None = None) -> tuple[bytes, Any]:
    """`wire` (a request such as a NOTIFY) signed with `key`, and what `check_reply` needs."""
    if isinstance(key, tsigkeys.Key):
        key = dns.tsig.Key(key.name, key.secret, key.algorithm)
    template = _rdata(key.algorithm, 0, b"", struct.unpack_from("!H", wire)[0], 0)
    signed = int(time.time() if now is None else now)
    rdata, _ = _sign(wire, key, template, signed)
    return _append(wire, key.name, rdata), (key, rdata.mac)


def check_reply(wire: bytes, state: Any) -> bool:
    """Whether `wire` is a reply signed by the key the request was (`sign_request`'s state),
    over that request, in time, and without a TSIG error."""
    key, request_mac = state
    try:  # dnspython checks it all, and insists on a TSIG when given the request's MAC
        dns.message.from_wire(wire, keyring=key, request_mac=request_mac)
    except (dns.exception.DNSException, ValueError):
        return False
    return True


def error_reply(query: bytes, rcode: int) -> bytes:
    """The header and question of an error reply to `query`: ID, opcode and RD copied."""
    flags = QR | (query[2] & 0x79) << 8 | rcode
    question = _question(query)
    return query[:2] + struct.pack("!HHHHH", flags, 1 if question else 0, 0, 0, 0) + question


def _question(query: bytes) -> bytes:
    """The question of `query` in wire form, b"" unless it has exactly one that parses."""
    if query[4:6] != b"\x00\x01":
        return b""
    parser = dns.wire.Parser(query, 12)
    try:
        name = parser.get_name(decompress=True)
        qtype, qclass = parser.get_struct("!HH")
    except dns.exception.DNSException:
        return b""
    return _wire(name) + struct.pack("!HH", qtype, qclass)


def _find(wire: bytes) -> tuple[int, dns.name.Name, TsigRdata] | None:
    """(offset, owner, rdata) of the TSIG record; None without one. Raises FormError when
    it is not the last record of the additional section (RFC 8945 5.1) or malformed."""
    if len(wire) < 12:
        return None
    parser = dns.wire.Parser(wire)
    _, _, qdcount, ancount, nscount, arcount = parser.get_struct("!HHHHHH")
    for _ in range(qdcount):
        parser.get_name(decompress=True)
        parser.get_struct("!HH")
    records = ancount + nscount + arcount
    for index in range(records):
        start = parser.current
        owner = parser.get_name(decompress=True)
        rtype, rclass, _, length = parser.get_struct("!HHIH")
        if rtype != dns.rdatatype.TSIG:
            parser.seek(parser.current + length)
            continue
        if index != records - 1 or index < ancount + nscount or rclass != dns.rdataclass.ANY:
            raise dns.exception.FormError(  # type: ignore[no-untyped-call]
                "a TSIG record must be the last one, of class ANY")
        with parser.restrict_to(length):
            rdata = dns.rdata.from_wire_parser(rclass, rtype, parser)
        if parser.remaining():
            raise dns.exception.FormError(  # type: ignore[no-untyped-call]
                "octets after the TSIG record")
        assert isinstance(rdata, TsigRdata)
        return start, owner, rdata
    return None


def _rdata(algorithm: dns.name.Name, signed: int, mac: bytes, original_id: int, error: int,
           other: bytes = b"") -> TsigRdata:
    return TsigRdata(dns.rdataclass.ANY, dns.rdatatype.TSIG,  # type: ignore[no-untyped-call]
                     algorithm, signed, FUDGE, mac, original_id, error, other)


def _sign(wire: bytes, key: dns.tsig.Key, template: TsigRdata, signed: int,
          request_mac: bytes | None = None, context: Any = None) -> tuple[TsigRdata, Any]:
    """dnspython's signing: `template`'s fields with the MAC over `wire` at time `signed`;
    with `context` (a stream's running digest), the next message of a stream."""
    rdata, context = dns.tsig.sign(  # type: ignore[no-untyped-call]
        wire, key, template, signed, request_mac, context, True)
    return rdata, context


def _wire(name: dns.name.Name) -> bytes:
    data = name.to_wire()
    assert data is not None  # None only when given a file to write to
    return data


def _append(message: bytes, owner: dns.name.Name, rdata: TsigRdata) -> bytes:
    """`message` with a TSIG record added last, uncompressed, and its ARCOUNT one more."""
    data = rdata.to_wire()
    assert data is not None
    record = _wire(owner) + struct.pack("!HHIH", dns.rdatatype.TSIG, dns.rdataclass.ANY, 0,
                                           len(data)) + data
    arcount = struct.unpack_from("!H", message, 10)[0] + 1
    return message[:10] + struct.pack("!H", arcount) + message[12:] + record
