"""The responder's lookup table, built once per snapshot and swapped in as one reference.

Each entry holds what the per-query path splices around the question it was sent.
"""

from __future__ import annotations

import struct

from healthdns.shared.messages import Answer, Snapshot

Entry = tuple[int, dict[bytes, bytes], bytes, bytes, bytes, bool]
CLASS_IN = b"\x00\x01"
PLAIN_LIMIT = 512  # RFC 1035 4.2.1: UDP without EDNS
_flag_maps: dict[int, dict[bytes, bytes]] = {}


def flag_map(flags: int) -> dict[bytes, bytes]:
    """Query flag bytes -> response flag bytes, for the query flags the fast path takes.

    A standard query (QR=0, opcode QUERY, AA=TC=Z=0, NOERROR) may set RD, AD and CD; the
    response copies RD and CD (RFC 1035 4.1.1, RFC 6840 5.9). Any other query flags miss the
    map and take the slow path. One map per distinct response flags value, shared by entries.
    """
    found = _flag_maps.get(flags)
    if found is None:
        found = {}
        for rd in (0, 0x01):
            for low in (0x00, 0x10, 0x20, 0x30):
                reply = flags | rd << 8 | (low & 0x10)
                found[bytes((rd, low))] = reply.to_bytes(2, "big")
        _flag_maps[flags] = found
    return found


def entry(answer: Answer, question_length: int) -> Entry:
    """(flags, flag map, counts, counts with our OPT, body, fits in 512 bytes)."""
    # QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT: without and with our OPT record.
    counts = struct.pack(">HHHH", 1, answer.ancount, answer.nscount, answer.arcount)
    counts_opt = struct.pack(">HHHH", 1, answer.ancount, answer.nscount, answer.arcount + 1)
    fits = 12 + question_length + len(answer.body) <= PLAIN_LIMIT
    return (answer.flags, flag_map(answer.flags), counts, counts_opt, answer.body, fits)


class Table:
    """Everything one snapshot serves, keyed the way queries are looked up.

    ``answers``: lower-case qname wire + qtype + qclass (IN) -> entry (the fast path).
    ``names``: lower-case name wire -> entry for a type the name lacks (NODATA, CNAME chains).
    ``zones``: origin wire -> NXDOMAIN entry; a name under no origin is not ours (REFUSED).
    """

    __slots__ = ("answers", "names", "zones", "generation", "serials", "cache", "cache_size")

    def __init__(self, snapshot: Snapshot, cache_size: int = 0) -> None:
        self.cache: dict[bytes, bytes] = {}  # query bytes but the ID -> response but the ID
        self.cache_size = cache_size
        self.generation = snapshot.generation
        self.serials = {z.origin: z.serial for z in snapshot.zones}
        self.answers: dict[bytes, Entry] = {}
        self.names: dict[bytes, Entry] = {}
        self.zones: dict[bytes, Entry] = {}
        for zone in snapshot.zones:
            for key, answer in zone.answers.items():
                self.answers[key + CLASS_IN] = entry(answer, len(key) + 2)
            for name, answer in zone.names.items():
                self.names[name] = entry(answer, len(name) + 4)
            self.zones[zone.origin] = entry(zone.nxdomain, 255 + 4)

    def lookup_miss(self, name: bytes) -> tuple[Entry | None, bool]:
        """(entry, ours) for a name with no pre-rendered answer of the asked type."""
        found = self.names.get(name)
        if found is not None:
            return found, True
        i, end = 0, len(name) - 1  # the last byte is the root label
        while i < end:
            i += name[i] + 1
            if i > end:
                break  # not a well-formed name: the slow path says FORMERR
            nxdomain = self.zones.get(name[i:])
            if nxdomain is not None:
                return nxdomain, True
        return None, False
