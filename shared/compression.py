"""Name compression (RFC 1035 4.1.4) of pre-rendered answers, and moving it with the question.

A response is the header, the question as the client sent it, then records the signer rendered
beforehand. The signer (`Writer`) writes each owner name, and each name in the rdata of the
types RFC 1035 defines with names (NS, CNAME, SOA, PTR, MX: RFC 3597 4 allows no others), as
its labels up to the longest suffix already in the response, then a pointer to that suffix: in
the question, or in an earlier record. Names that may not be compressed (the RRSIG signer, RFC
4034 3.1.7; the NSEC next name, RFC 4034 4.1.1; the SRV target, RFC 2782) are written in full,
and nothing points into them.

An answer for one question name is rendered for it: the name's length fixes every offset after
it, and a pointer into the question stays valid whatever case the client used. What every name
of a zone shares is rendered once, as if the question were the apex itself (a *template*), and
the responder moves its pointers for each question (the apex is the question's last labels,
whatever comes before them): the SOA records of a negative answer (`holes`, `moved`), and each
NSEC (NSEC3) record with its RRSIGs proving an NXDOMAIN (`place`).
"""

from __future__ import annotations

import struct
from collections.abc import Container, Mapping

QUESTION = 12  # the offset of the question name in every message
POINTER = 0xC000  # the two high bits that make a length octet a pointer
LAST_TARGET = 0x3FFF  # a pointer holds 14 bits: nothing written later is pointed to
NS, CNAME, SOA, PTR, MX = 2, 5, 6, 12, 15
# Types whose rdata names may be compressed: (offset of the first name, how many names).
NAMED = {NS: (0, 1), CNAME: (0, 1), PTR: (0, 1), MX: (2, 1), SOA: (0, 2)}
RR = struct.Struct(">HHIH")  # type, class, TTL, rdata length
_POINTER = struct.Struct(">H")
_pack = _POINTER.pack


def pointer(offset: int) -> bytes:
    return _pack(POINTER | offset)


AT_QUESTION = pointer(QUESTION)


def after_question(qname: bytes) -> int:
    """The offset of the first record of an answer to `qname` (type and class follow it)."""
    return QUESTION + len(qname) + 4


def name_end(data: bytes, at: int) -> int:
    """The offset just past the name written at `at` (labels, then the root or a pointer)."""
    while True:
        label = data[at]
        if label >= 0xC0:
            return at + 2
        if label == 0:
            return at + 1
        at += label + 1


class Writer:
    """Records written one after another into a response, from offset `start` on, with names
    compressed against the question `qname` (lower-case wire, at offset 12) and `names`
    (lower-case wire name -> the offset where it is already written)."""

    def __init__(self, qname: bytes, start: int, names: Mapping[bytes, int] | None = None
                 ) -> None:
        self.names: dict[bytes, int] = dict(names) if names else {}
        self.qname = qname
        self.asked = False  # whether `names` holds the question's suffixes yet
        self.offset = start
        self.parts: list[bytes] = []

    def rr(self, owner: bytes, rdtype: int, ttl: int, rdata: bytes) -> None:
        """Write one record of class IN."""
        # Most owners are the question itself: no name to look for (signing 10,000 names
        # renders 60,000 answers).
        head = AT_QUESTION if owner == self.qname else self.name(owner, self.offset)
        named = NAMED.get(rdtype)
        if named is not None:
            rdata = self._rdata(rdata, named, self.offset + len(head) + RR.size)
        self.parts.append(head + RR.pack(rdtype, 1, ttl, len(rdata)) + rdata)
        self.offset += len(head) + RR.size + len(rdata)

    def written(self) -> bytes:
        return b"".join(self.parts)

    def name(self, name: bytes, at: int) -> bytes:
        """`name` as written at offset `at`: its labels up to the longest suffix already
        written, then a pointer to that suffix; the labels it writes can be pointed to."""
        if not self.asked:
            self.asked = True
            self._learn(self.qname, QUESTION, len(self.qname))
        names = self.names
        i = 0
        while name[i]:
            found = names.get(name[i:])
            if found is not None:
                if i:
                    self._learn(name, at, i)
                return name[:i] + pointer(found)
            i += name[i] + 1
        self._learn(name, at, i)
        return name

    def _learn(self, name: bytes, at: int, written: int) -> None:
        """Note the suffixes of `name` whose labels start in its first `written` octets,
        written at `at`."""
        names = self.names
        i = 0
        while i < written and at + i <= LAST_TARGET:
            names.setdefault(name[i:], at + i)
            i += name[i] + 1

    def _rdata(self, rdata: bytes, named: tuple[int, int], at: int) -> bytes:
        """The rdata of a type with names, its names compressed (it is written at `at`)."""
        first, count = named
        out = [rdata[:first]]
        i, at = first, at + first
        for _ in range(count):
            end = name_end(rdata, i)
            written = self.name(rdata[i:end], at)
            out.append(written)
            i, at = end, at + len(written)
        out.append(rdata[i:])
        return b"".join(out)


def holes(data: bytes) -> list[int]:
    """The offsets of the pointers in `data`, records as a `Writer` writes them."""
    found: list[int] = []
    i = 0
    while i < len(data):
        i = _name_holes(data, i, found)
        rdtype, _, _, length = RR.unpack_from(data, i)
        i += RR.size
        named = NAMED.get(rdtype)
        if named is not None:
            at = i + named[0]
            for _ in range(named[1]):
                at = _name_holes(data, at, found)
        i += length
    return found


def _name_holes(data: bytes, at: int, found: list[int]) -> int:
    """Past the name at `at`, noting where its pointer is, if it ends with one."""
    while True:
        label = data[at]
        if label >= 0xC0:
            found.append(at)
            return at + 2
        if label == 0:
            return at + 1
        at += label + 1


def moved(data: bytes, at: list[int], by: int) -> bytes:
    """`data` with each pointer at the offsets `at` pointing `by` octets further on."""
    out = bytearray(data)
    for i in at:
        _POINTER.pack_into(out, i, _POINTER.unpack_from(data, i)[0] + by)
    return bytes(out)


def place(piece: bytes, apex_at: int, start: int, kept: int = -1) -> bytes:
    """An NXDOMAIN proof template (an NSEC or NSEC3 record, then its RRSIGs) as it reads at
    offset `start` of a response whose question ends with the apex, at offset `apex_at`.

    The template's owner is its labels below the apex, then a pointer to the apex; each RRSIG's
    owner a pointer to that owner (to the apex, when the owner is the apex). The rdata holds no
    pointer (RFC 4034 3.1.7, 4.1.1; RFC 5155 3.3): only these pointers move. `kept`: how many
    octets of those labels to write (all by default), when the question ends with the others
    too (`kept_labels`): the pointer then goes to them.
    """
    h = 0
    while piece[h] < 0xC0:  # the owner's labels below the apex
        h += piece[h] + 1
    if kept < 0:
        kept = h
    to = pointer(apex_at - h + kept)
    own = pointer(start) if kept else to
    i = h + 12 + (piece[h + 10] << 8 | piece[h + 11])  # past the NSEC (NSEC3) record
    size = len(piece)
    if i < size and i + 12 + (piece[i + 10] << 8 | piece[i + 11]) == size:  # one RRSIG
        return b"".join((piece[:kept], to, piece[h + 2:i], own, piece[i + 2:]))
    parts = [piece[:kept], to, piece[h + 2:i]]
    while i < size:  # each RRSIG: its owner, then the rest of the record
        end = i + 12 + (piece[i + 10] << 8 | piece[i + 11])
        parts += (own, piece[i + 2:end])
        i = end
    return b"".join(parts)


def kept_labels(piece: bytes, encloser: bytes, suffixes: Container[int],
                apex_length: int) -> int:
    """How many octets of a proof template's owner labels to write in an answer whose question
    ends with `encloser` (lower-case wire; `suffixes`: the lengths of its suffixes): those
    before the longest suffix of the owner that the encloser ends with, as Knot writes them."""
    above = len(encloser) - apex_length
    h, starts = 0, []
    while piece[h] < 0xC0:
        starts.append(h)
        h += piece[h] + 1
    for i in starts:  # the longest suffix first
        length = h - i
        if length <= above and length + apex_length in suffixes \
                and encloser.endswith(piece[i:h], 0, above):
            return i
    return h
