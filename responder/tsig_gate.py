"""The gate a signed request passes before dnspython sees it (RFC 8945 5.2).

Checked by dnspython (shared/tsigwire.py), a signed query costs a responder about eight times
what the fast path costs an unsigned one, whether its signature is good or not, so a flood of
signed junk was a cheap way to load a server. Everything that refuses a request without
knowing a key's secret is decided here, on the wire, with `hmac`: a malformed TSIG (FORMERR),
an unknown key or algorithm (NOTAUTH, BADKEY), a MAC of a size outside the algorithm's bounds
(FORMERR), a MAC that does not check (NOTAUTH, BADSIG); the TSIG of those replies (unsigned,
an empty MAC, RFC 8945 5.3.2) is made here too. A request whose MAC checks, whose sender holds
the key, goes on to `tsigwire.verify`, which checks its time and truncation and signs the answer.

Names are read with dnspython's rules (pointers point backwards, below every earlier one and
clear of the name they are in, at most 16 of them; no pointer in the algorithm name), so a
refusal here is the one `tsigwire.verify` makes (tests/test_tsig_gate.py compares their replies).
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass

from healthdns.shared import tsigkeys

FORMERR, NOTAUTH = 1, 9
BADSIG, BADKEY = 16, 17  # TSIG errors (RFC 8945 3)
TSIG, ANY = 250, 255
FUDGE = 300  # as shared/tsigwire.py signs with
MAX_NAME = 255
MAX_POINTERS = 16  # dnspython's MAX_COMPRESSION_POINTER_CHAIN
# The MAC sizes of the HMAC algorithms (RFC 8945 6) by their hashlib names.
MAC_SIZES = {"sha1": 20, "sha224": 28, "sha256": 32, "sha384": 48, "sha512": 64}


@dataclass(frozen=True)
class Key:
    """A TSIG key as the wire shows it: names in lower-case wire form."""

    name: bytes
    algorithm: bytes
    secret: bytes
    digest: str  # hashlib's name: "sha256" for hmac-sha256
    size: int  # octets of a full MAC


@dataclass(frozen=True)
class Refused:
    """A request refused here: FORMERR, or NOTAUTH with a TSIG error."""

    rcode: int
    error: int = 0
    owner: bytes = b""  # the key name as the request wrote it, uncompressed
    algorithm: bytes = b""  # the algorithm name as the request wrote it
    original_id: int = 0

    def finish(self, reply: bytes, now: float) -> bytes:
        """`reply` (the error reply to the request, rcode `self.rcode`) with its TSIG: none
        for FORMERR; for BADKEY and BADSIG unsigned, an empty MAC and our time."""
        if self.rcode != NOTAUTH:
            return reply
        signed = int(now)
        rdata = self.algorithm + struct.pack("!HIHHHHH", signed >> 32 & 0xFFFF,
                                             signed & 0xFFFFFFFF, FUDGE, 0, self.original_id,
                                             self.error, 0)
        record = self.owner + struct.pack("!HHIH", TSIG, ANY, 0, len(rdata)) + rdata
        arcount = (reply[10] << 8 | reply[11]) + 1
        return reply[:10] + arcount.to_bytes(2, "big") + reply[12:] + record


def wire_keys(tsig_keys: list[tsigkeys.Key]) -> dict[bytes, Key]:
    """The keys by the lower-case wire form of their names."""
    out = {}
    for key in tsig_keys:
        digest = key.algorithm.removeprefix("hmac-")
        made = Key(_wire(key.name), _wire(key.algorithm), key.secret, digest, MAC_SIZES[digest])
        out[made.name] = made
    return out


def check(wire: bytes, ring: dict[bytes, Key]) -> Refused | None:
    """The refusal of a request whose TSIG is malformed, names an unknown key, or carries a
    MAC that does not check; None when the MAC checks (or there is no TSIG), for
    `tsigwire.verify` to take on. The checks and their order are `tsigwire.verify`'s."""
    found = _find(wire)
    if found is None:
        return Refused(FORMERR)
    if not found:
        return None
    start, owner, rdata = found
    algorithm, fields, mac, original_id, tail = rdata
    key = ring.get(owner.lower())
    if key is None or key.algorithm != algorithm.lower():  # 5.2.1
        return Refused(NOTAUTH, BADKEY, owner, algorithm, original_id)
    if not max(10, key.size // 2) <= len(mac) <= key.size:  # 5.2.2.1, rules 1 and 3
        return Refused(FORMERR)
    arcount = (wire[10] << 8 | wire[11]) - 1
    digest = hmac.new(key.secret, digestmod=key.digest)
    digest.update(original_id.to_bytes(2, "big") + wire[2:10] + arcount.to_bytes(2, "big"))
    digest.update(memoryview(wire)[12:start])
    # The TSIG variables (RFC 8945 4.3.3): the key's names in canonical form, the request's
    # time and fudge (`fields`), error and other data (`tail`).
    digest.update(key.name + struct.pack("!HI", ANY, 0) + key.algorithm + fields + tail)
    if not hmac.compare_digest(digest.digest()[:len(mac)], mac):  # 5.2.2
        return Refused(NOTAUTH, BADSIG, owner, algorithm, original_id)
    return None


# (algorithm as written, time signed and fudge, MAC, original ID, error and other data)
Rdata = tuple[bytes, bytes, bytes, int, bytes]


def _find(wire: bytes) -> tuple[int, bytes, Rdata] | tuple[()] | None:
    """(offset, owner, rdata) of the TSIG record, () without one, None when the message does
    not parse as dnspython reads it (`tsigwire._find`: FORMERR)."""
    if len(wire) < 12:
        return ()
    qdcount, ancount, nscount, arcount = struct.unpack_from("!HHHH", wire, 4)
    pos = 12
    for _ in range(qdcount):
        name = _name(wire, pos, True)
        if name is None or name[1] + 4 > len(wire):
            return None
        pos = name[1] + 4
    records = ancount + nscount + arcount
    for index in range(records):
        start = pos
        owner = _name(wire, pos, True)
        if owner is None or owner[1] + 10 > len(wire):
            return None
        rtype, rclass, _, length = struct.unpack_from("!HHIH", wire, owner[1])
        pos = owner[1] + 10 + length
        if pos > len(wire):
            return None
        if rtype != TSIG:
            continue
        if index != records - 1 or index < ancount + nscount or rclass != ANY:
            return None
        rdata = _rdata(wire, owner[1] + 10, pos)
        if rdata is None or pos != len(wire):
            return None
        return start, owner[0], rdata
    return ()


def _rdata(wire: bytes, pos: int, end: int) -> Rdata | None:
    """The TSIG rdata between `pos` and `end`, or None when it does not fill them exactly or
    holds a value dnspython refuses."""
    algorithm = _name(wire, pos, False, end)
    if algorithm is None:
        return None
    pos = algorithm[1]
    if pos + 10 > end:
        return None
    fields = wire[pos:pos + 8]  # time signed (48 bits) and fudge
    mac_end = pos + 10 + (wire[pos + 8] << 8 | wire[pos + 9])
    if mac_end + 6 > end:
        return None
    mac = wire[pos + 10:mac_end]
    original_id = wire[mac_end] << 8 | wire[mac_end + 1]
    other = mac_end + 6 + (wire[mac_end + 4] << 8 | wire[mac_end + 5])
    if other != end or wire[mac_end + 2] >= 0x10:  # the error, an rcode: 12 bits at most
        return None
    return algorithm[0], fields, mac, original_id, wire[mac_end + 2:end]


def _name(wire: bytes, pos: int, pointers: bool, end: int = -1) -> tuple[bytes, int] | None:
    """The name at `pos`, uncompressed, as written (case kept), and the offset after it in
    place; None when it is malformed, as dnspython's `from_wire_parser` finds it."""
    limit = len(wire) if end < 0 else end
    parts: list[bytes] = []  # the pieces before each pointer followed
    size, after, lowest, hops, segment = 1, -1, pos, 0, pos
    while True:
        if pos >= limit:
            return None
        count = wire[pos]
        if count == 0:
            break
        if count < 64:
            size += count + 1
            pos += count + 1
            if pos > limit:
                return None
        elif count >= 192 and pointers:
            if pos + 2 > limit:
                return None
            target = (count & 0x3F) << 8 | wire[pos + 1]
            hops += 1
            if target >= lowest or hops > MAX_POINTERS:
                return None
            if after < 0:
                after = pos + 2
            parts.append(wire[segment:pos])
            lowest, limit, pos, segment = target, segment, target, target
        else:
            return None  # another label type, or a pointer where none may be
    if size > MAX_NAME:
        return None
    if after < 0:
        return wire[segment:pos + 1], pos + 1
    parts.append(wire[segment:pos + 1])
    return b"".join(parts), after


def _wire(text: str) -> bytes:
    """The lower-case wire form of a name as the configuration gives it (dnspython's text:
    dots between labels, `\\.` and `\\DDD` escapes, no final dot)."""
    text = text.lower()
    if text in (".", "@"):  # the root, as dnspython writes it with and without its dot
        return b"\x00"
    out, label, i = bytearray(), bytearray(), 0
    while i < len(text):
        char = text[i]
        if char == "\\" and text[i + 1:i + 4].isdigit() and len(text[i + 1:i + 4]) == 3:
            label.append(int(text[i + 1:i + 4]))
            i += 4
            continue
        if char == "\\" and i + 1 < len(text):
            label += text[i + 1].encode()
            i += 2
            continue
        if char == ".":
            if label:
                out += bytes((len(label),)) + label
            label = bytearray()
        else:
            label += char.encode()
        i += 1
    if label:
        out += bytes((len(label),)) + label
    return bytes(out) + b"\x00"
