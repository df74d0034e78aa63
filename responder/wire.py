"""A query's wire form as the per-query path reads it: the codes, flags and limits it answers
with, and the parsers of its records (the question name's end, the OPT and TSIG records).

Every parser here never raises on any input: it says where a record ends, or that it does not.
"""

from __future__ import annotations

import struct

from healthdns.responder.entry import MAX_NAME

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
BADVERS = 16  # extended: upper bits travel in the OPT TTL (RFC 6891 6.1.3)
BADCOOKIE = 23  # RFC 7873 8
OPT = 41
ANY = 255
TSIG = 250
NOTAUTH = 9  # RFC 8945 5.2: a TSIG that does not check out
NSID = 3  # EDNS option code (RFC 5001); every other option is ignored (RFC 6891 6.1.2)
ECS = 8  # EDNS Client Subnet (RFC 7871), `shared.ecs`
TC = 0x0200
QR = 0x8000
PLAIN_LIMIT = 512
TCP_LIMIT = 65535  # the 2-octet length prefix (RFC 1035 4.2.2)
NAME_END = 12 + MAX_NAME  # a question name ending at or after this offset is too long
NO_EDNS = b"\x00\x01\x00\x00\x00\x00\x00\x00"  # QDCOUNT 1, no other records
ONE_AR = b"\x00\x01\x00\x00\x00\x00\x00\x01"  # QDCOUNT 1, one additional (the OPT)
OPT_HEAD = b"\x00\x00\x29"  # root owner, type OPT
ONLY_SOA = b"\x00\x00\x00\x01"  # ANCOUNT 0, NSCOUNT 1: an unsigned negative answer
# Types a question may not simply be looked up for: the slow path answers them.
META_QTYPES = frozenset({0, OPT, 249, 250, 251, 252, 253, 254})
# The transport a query came by, as the caller passes it: bit 0 TCP, bit 1 IPv6. One small
# int, so that the fast path's counter key takes it with one `|`.
UDP, TCP, V6 = 0, 1, 2
# What the answerer returns for a geo name asked without an ECS address when it was not told
# the client's: the caller asks again with it (`query.Answerer.answer_from`). An object of
# its own, compared by identity: never a response (one octet).
NEEDS_CLIENT = bytes(bytearray(b"?"))


def name_end(data: bytes, pos: int, pointers: bool) -> int:
    """Offset just past the name at `pos`, or -1 if it is malformed (RFC 1035 4.1.4)."""
    length = 0
    while pos < len(data):
        label = data[pos]
        if label == 0:
            return pos + 1
        if label & 0xC0 == 0xC0:
            return pos + 2 if pointers and pos + 2 <= len(data) else -1
        if label & 0xC0 or length + label + 1 > 254:
            return -1  # extended label types, or a name over 255 octets
        length += label + 1
        pos += label + 1
    return -1


# A query's OPT record as the slow path reads it (RFC 6891 6.1.3): (payload size: the largest
# response the client takes over UDP, flags: the OPT TTL's low 16 bits (DO is 0x8000),
# version, whether it asks for our NSID (RFC 5001), options to add to ours: the server COOKIE,
# see `guard`). A tuple, unpacked where it is read: a NamedTuple takes 230 ns more to make, on
# every query with EDNS the slow path answers (every one with a COOKIE).
Edns = tuple[int, int, int, bool, bytes]
MALFORMED: Edns = (-1, -1, -1, False, b"")


def find_opt(data: bytes, pos: int, qdcount: int, skip: int,
              arcount: int) -> tuple[Edns | None, int]:
    """The query's EDNS (None without one, MALFORMED if the records do not parse), and the
    offset of its TSIG record (0 without one)."""
    for _ in range(qdcount - 1):  # extra questions: only to get past them
        end = name_end(data, pos, pointers=True)
        if end < 0 or end + 4 > len(data):
            return MALFORMED, 0
        pos = end + 4
    edns: Edns | None = None
    for index in range(skip + arcount):
        start = pos
        end = name_end(data, pos, pointers=True)
        if end < 0 or end + 10 > len(data):
            return MALFORMED, 0
        rtype, rclass, ttl, rdlength = struct.unpack_from(">HHIH", data, end)
        pos = end + 10 + rdlength
        if pos > len(data):
            return MALFORMED, 0
        if rtype == OPT:
            # RFC 6891 6.1.1: one OPT, in the additional section, owned by the root.
            if index < skip or edns is not None or end != start + 1:
                return MALFORMED, 0
            codes = _option_codes(data, end + 10, pos)
            if codes is None:
                return MALFORMED, 0
            edns = (rclass, ttl & 0xFFFF, (ttl >> 16) & 0xFF, NSID in codes, b"")
        elif rtype == TSIG:
            # RFC 8945 5.1: the last record of the additional section, or FORMERR.
            if index != skip + arcount - 1 or index < skip or pos != len(data):
                return MALFORMED, 0
            return edns, start
    return edns, 0


def fast_shape(data: bytes, qend: int) -> bool:
    """Whether `Answerer._lookup` answers a query of this layout itself, the question ending
    at `qend`: no other record, or one OPT of EDNS version 0 without options (the tests it
    makes)."""
    counts = data[4:12]
    if counts == NO_EDNS:
        return len(data) == qend
    return (counts == ONE_AR and len(data) == qend + 11 and data[qend:qend + 3] == OPT_HEAD
            and not (data[qend + 6] or data[qend + 9] or data[qend + 10]))


def find_ecs(data: bytes) -> bytes | None:
    """The OPTION-DATA of the first ECS option of a query whose records parse (`find_opt`
    read them), None without one."""
    try:
        qdcount, ancount, nscount, arcount = struct.unpack_from(">HHHH", data, 4)
        pos = 12
        for _ in range(qdcount):
            pos = name_end(data, pos, pointers=True) + 4
        for _ in range(ancount + nscount + arcount):
            end = name_end(data, pos, pointers=True)
            rtype, _, _, rdlength = struct.unpack_from(">HHIH", data, end)
            pos = end + 10 + rdlength
            at = end + 10
            while rtype == OPT and at + 4 <= pos:
                code, length = struct.unpack_from(">HH", data, at)
                if code == ECS:
                    return data[at + 4:at + 4 + length]
                at += 4 + length
    except struct.error:
        return None
    return None


def signed_query(data: bytes) -> bool:
    """Whether a query that parses carries a TSIG (its answer is for it alone)."""
    qdcount, ancount, nscount, arcount = struct.unpack_from(">HHHH", data, 4)
    pos = 12
    for _ in range(qdcount):
        pos = name_end(data, pos, pointers=True) + 4
        if pos < 16:
            return False
    return find_opt(data, pos, 1, ancount + nscount, arcount)[1] > 0


def _option_codes(data: bytes, pos: int, end: int) -> list[int] | None:
    """The option codes of an OPT's rdata, None if the options overrun it."""
    codes = []
    while pos < end:
        if pos + 4 > end:
            return None
        code, length = struct.unpack_from(">HH", data, pos)
        pos += 4 + length
        codes.append(code)
    return codes if pos == end else None
