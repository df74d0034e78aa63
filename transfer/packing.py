"""An answer's records in DNS messages that fit a TCP frame with room for a TSIG: packed as
they come (`pack`), or an AXFR's with owner names compressed and kept per zone state
(`pack_axfr`)."""

from __future__ import annotations

from collections.abc import Iterator

from healthdns.shared.framing import FRAME_MAX, HEADER
from healthdns.transfer.journal import Group, Sections, ZoneState

QR, AA, RD = 0x8000, 0x0400, 0x0100
# Room left in each message for the TSIG record a signed stream adds to it: a key name of up
# to 255 octets, the algorithm's name and a MAC of up to 64 (HMAC-SHA512) fit in 512.
TSIG_ROOM = 512
MESSAGE_MAX = FRAME_MAX - TSIG_ROOM
POINTER_MAX = 0x3FFF  # a compression pointer's 14-bit offset (RFC 1035 4.1.4)


def pack(query: bytes, question: bytes, records: list[bytes]) -> Iterator[bytes]:
    """The records in messages of at most MESSAGE_MAX octets, the question in the first only
    (RFC 5936 2.2.1 allows it in the others; leaving it out leaves room for records)."""
    body: list[bytes] = []
    size = HEADER + len(question)
    first = True
    for rr in records:
        if body and size + len(rr) > MESSAGE_MAX:
            yield _message(query, question if first else b"", body)
            body, size, first = [], HEADER, False
        body.append(rr)
        size += len(rr)
    yield _message(query, question if first else b"", body)


def pack_axfr(query: bytes, question: bytes, zone: ZoneState) -> Iterator[bytes]:
    """`zone.axfr()` in messages of at most MESSAGE_MAX octets, owner names compressed.

    The answer sections depend only on the zone state and the question's length (pointers
    count from the header and question), so the first AXFR of a state packs them (`_sections`)
    and keeps them on the state once all are made (a client that leaves halfway keeps
    nothing); the next ones write a header and, in the first message, the question.
    """
    kept = zone.packed.get(len(question))
    if kept is not None:
        for answers, count in kept:
            yield _message(query, question, [answers], count)
            question = b""
        return
    made: Sections = []
    for answers, count in _sections(zone, len(question)):
        yield _message(query, question if not made else b"", [answers], count)
        made.append((answers, count))
    zone.keep(len(question), made)


def _sections(zone: ZoneState, asked: int) -> Iterator[tuple[bytes, int]]:
    """Each message's answer section and RR count, the first after a question of `asked` octets.

    Only owner names get pointers (RFC 3597 and RFC 4034 6.2: names inside RRSIG, NSEC and
    types unknown to old servers are never compressed, and other rdata is left as signed). In
    each message the origin is written once in full (by its first RR); an owner's first RR
    there writes the owner's own labels and a pointer to the origin, its other RRs a pointer
    to that owner. A pointer reaches the first 16 KiB only: past it, each RR of an owner
    writes its labels and a pointer to the origin. The work is per owner, one `join` of the
    RRs cut once per zone state (`ZoneState.groups`); an owner that does not fit in the
    message is written RR by RR (`_split`), once a message.
    """
    origin = zone.origin
    apex: Group = (b"", True, [zone.soa[len(origin):]], len(zone.soa) - len(origin))
    made = _Made(asked)
    for group in (apex, *zone.groups, apex):
        labels, under, tails, length = group
        if made.at >= 0 and under:
            name = labels + made.pointer
            sep = _pointer(made.size) if made.size <= POINTER_MAX else name
        elif under:
            name = labels + origin
            sep = _pointer(made.size) if made.size <= POINTER_MAX else name
        else:
            name = labels
            sep = _pointer(made.size) if made.size <= POINTER_MAX else name
        size = len(name) + length + len(sep) * (len(tails) - 1)
        if made.size + size > MESSAGE_MAX:
            yield from _split(made, group, origin)
            continue
        if made.at < 0 and under:
            made.found(made.size + len(labels))
        made.body.append(name + sep.join(tails))
        made.size += size
        made.count += len(tails)
    yield made.section()


def _pointer(offset: int) -> bytes:
    return (0xC000 | offset).to_bytes(2, "big")


class _Made:
    """The section `_sections` is making: its pieces, the message's size so far (header and
    question included, for pointers count from the header), RR count, the origin's offset."""

    def __init__(self, asked: int) -> None:
        self.body: list[bytes] = []
        self.size, self.count = HEADER + asked, 0
        self.at, self.pointer = -1, b""  # the origin's offset, once written where it reaches

    def found(self, at: int) -> None:
        if at <= POINTER_MAX:
            self.at, self.pointer = at, _pointer(at)

    def section(self) -> tuple[bytes, int]:
        return b"".join(self.body), self.count

    def next(self) -> tuple[bytes, int]:
        """This section, done; the next starts empty (no question past the first message)."""
        done = self.section()
        self.body, self.size, self.count = [], HEADER, 0
        self.at, self.pointer = -1, b""
        return done


def _split(made: _Made, group: Group, origin: bytes) -> Iterator[tuple[bytes, int]]:
    """One owner's RRs RR by RR, a new section when the next one does not fit."""
    labels, under, tails, _ = group
    here = -1  # the owner's offset in this message, once written where a pointer reaches
    for tail in tails:
        if here >= 0:
            name = _pointer(here)
        elif under and made.at >= 0:
            name = labels + made.pointer
        else:
            name = labels + origin if under else labels
        if made.body and made.size + len(name) + len(tail) > MESSAGE_MAX:
            yield made.next()
            here, name = -1, labels + origin if under else labels
        if here < 0 and made.size <= POINTER_MAX:
            here = made.size
        if made.at < 0 and under and name.endswith(origin):
            made.found(made.size + len(labels))
        made.body += (name, tail)
        made.size += len(name) + len(tail)
        made.count += 1


def _message(query: bytes, question: bytes, answers: list[bytes],
             count: int | None = None) -> bytes:
    """`count`: how many RRs `answers` holds, when they are pieces rather than one each."""
    flags = QR | AA | (int.from_bytes(query[2:4], "big") & (0x7800 | RD))
    header = b"".join(v.to_bytes(2, "big") for v in
                      (int.from_bytes(query[0:2], "big"), flags, 1 if question else 0,
                       len(answers) if count is None else count, 0, 0))
    return header + question + b"".join(answers)
