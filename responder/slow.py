"""The complete, defensive path: any packet read in full and answered from the same table as
the fast path (`query.Answerer`, which takes this path for anything unusual).

`SlowPath.slow` never raises on any input. It answers what the fast path does not: EDNS with
options (NSID, COOKIE), other EDNS versions, TSIG-signed queries, other opcodes and classes,
meta types, and every malformed packet (FORMERR), each counted in `slow_counts`.
"""

from __future__ import annotations

import struct
import time
from collections import Counter
from typing import TYPE_CHECKING

from healthdns.responder import tsig_gate
from healthdns.responder.counting import counted
from healthdns.responder.entry import (
    SITE_COUNT_SHIFT,
    ZONE_MASK,
    ZONE_SHIFT,
    Entry,
    Shape,
    site_counts,
)
from healthdns.responder.table import GeoKey, Table
from healthdns.responder.wire import (
    BADVERS,
    FORMERR,
    MALFORMED,
    META_QTYPES,
    NEEDS_CLIENT,
    NOERROR,
    NOTIMP,
    NSID,
    OPT,
    OPT_HEAD,
    PLAIN_LIMIT,
    QR,
    REFUSED,
    SERVFAIL,
    TC,
    TCP,
    TCP_LIMIT,
    Edns,
    find_ecs,
    find_opt,
    name_end,
)
from healthdns.shared import ecs
from healthdns.shared.geotable import SCOPE_BITS, SCOPE_MASK
from healthdns.shared.querycounts import OTHER_QTYPE

if TYPE_CHECKING:
    from healthdns.shared import tsigwire as tsig
    from healthdns.shared.tsigkeys import Key


class SlowPath:
    """Answers any packet from the current table; `query.Answerer` adds the fast path."""

    def __init__(self, payload_size: int, nsid: bytes = b"") -> None:
        self.table: Table | None = None
        self.payload_size = payload_size
        # RFC 5001: sent only to a client whose query carries an (empty) NSID option.
        self.nsid_option = struct.pack(">HH", NSID, len(nsid)) + nsid if nsid else b""
        # Our OPT record, without and with the DO bit echoed (RFC 3225).
        self.opts = (self._opt(0, 0), self._opt(0, 0x8000))
        # (zone id, qtype as `counted`, rcode, transport): rcodes beyond 4 bits (BADVERS,
        # BADCOOKIE) too.
        self.slow_counts: Counter[tuple[int, int, int, int]] = Counter()
        self.site_counts: dict[int, int] = {}  # the slow path's geo answers by `site_key`
        self.truncated = 0
        self.tsig_keys: list[Key] = []  # RFC 8945; the keyring is made at the first signed query
        self._keyring: tsig.Keyring | None = None
        self._gate: dict[bytes, tsig_gate.Key] | None = None  # the keys by wire name

    def _opt(self, ext_rcode: int, flags: int, options: bytes = b"") -> bytes:
        return OPT_HEAD + struct.pack(">HBBHH", self.payload_size, ext_rcode, 0, flags,
                                      len(options)) + options

    def _opt_for(self, edns: Edns | None, room: int, ext_rcode: int = 0) -> bytes:
        """Our OPT in reply to the client's (none without one): DO echoed; NSID if asked,
        configured, and our OPT with it fits in `room` octets (an NSID may be 512 octets)."""
        if edns is None:
            return b""
        _, flags, _, nsid, extra = edns  # extra: our COOKIE, if asked (at most 44 octets)
        options = self.nsid_option if nsid and 11 + len(self.nsid_option) + len(extra) \
            <= room else b""
        options += extra
        if not options and not ext_rcode:
            return self.opts[flags >> 15]
        return self._opt(ext_rcode, flags & 0x8000, options)

    def _truncated(self, data: bytes, qend: int, shape: Shape, opt: bytes) -> bytes:
        """TC=1 with an empty answer: the client retries over TCP (RFC 7766 5)."""
        flags = shape.flags | (data[2] & 0x01) << 8 | (data[3] & 0x10) | TC
        self.truncated += 1
        return self._header(data, flags, 1, 0, 1 if opt else 0) + data[12:qend] + opt

    # --- slow path ------------------------------------------------------------------------------

    def slow(self, data: bytes, transport: int, cookie: bytes = b"",
             rcode: int = NOERROR, reserve: int = 0, client: bytes = b"") -> bytes | None:
        """A complete, defensive reading of any packet.

        `cookie` is an option for our OPT (the server cookie, see `guard`); `rcode`, when set,
        is the error to answer a well-formed query with (FORMERR, BADCOOKIE: RFC 7873 5.2);
        `reserve`: octets an answer leaves free for the TSIG that will sign it; `client`:
        the query's source address, packed, if known (a geo name needs it without ECS).
        """
        if len(data) < 12 or data[2] & 0x80:
            return None  # too short to answer, or a response: never reply (no loops)
        opcode = (data[2] >> 3) & 0x0F
        qdcount, ancount, nscount, arcount = struct.unpack_from(">HHHH", data, 4)
        question, pos = b"", 12
        if qdcount >= 1:
            end = name_end(data, 12, pointers=False)
            if end < 0 or end + 4 > len(data):
                return self._error(data, b"", FORMERR, None, transport)
            question, pos = data[12:end + 4], end + 4
        edns, signed = find_opt(data, pos, qdcount, ancount + nscount, arcount)
        if edns is MALFORMED:
            return self._error(data, question if qdcount == 1 else b"", FORMERR, None, transport)
        if edns is not None and cookie:
            size, flags, version, nsid, _ = edns
            edns = (size, flags, version, nsid, cookie)
        if signed:  # RFC 8945 5.2: the TSIG is checked before anything else
            return self._signed(data, signed, question if qdcount == 1 else b"", edns,
                                transport, cookie, rcode)
        if opcode != 0:
            return self._error(data, question if qdcount == 1 else b"", NOTIMP, edns, transport)
        if qdcount != 1:
            return self._error(data, b"", FORMERR, edns, transport)  # RFC 9619
        if edns is not None:
            _, _, version, _, _ = edns
            if version > 0:
                return self._error(data, question, BADVERS, edns, transport)
        if rcode:
            return self._error(data, question, rcode, edns, transport)
        option = find_ecs(data) if edns is not None else None
        if option is not None and isinstance(ecs.parse(option), str):
            return self._error(data, question, FORMERR, edns, transport)  # RFC 7871 7.1.1
        qtype, qclass = struct.unpack_from(">HH", question, len(question) - 4)
        if qclass != 1:
            return self._error(data, question, REFUSED, edns, transport)
        if qtype == OPT:
            return self._error(data, question, FORMERR, edns, transport)
        if qtype in META_QTYPES:  # AXFR, IXFR, MAILA, MAILB, TKEY, TSIG: not offered
            rcode = NOTIMP if qtype in (253, 254) else REFUSED
            return self._error(data, question, rcode, edns, transport)
        table = self.table
        if table is None:
            return self._error(data, question, SERVFAIL, edns, transport)
        key = question[:-4].lower() + question[-4:]
        entry = table.find(key)
        if entry is None:  # not one of our zones
            return self._error(data, question, REFUSED, edns, transport, zone=0)
        if option is not None or key in table.geo:
            geo = table.geo.get(key)
            chosen = self._located(geo, option, client) if geo is not None else (entry, 0)
            if chosen is None:
                return NEEDS_CLIENT
            entry, scope = chosen
            if option is not None and edns is not None:  # echo it (RFC 7871 7.2.1)
                size, flags, version, nsid, extra = edns
                edns = (size, flags, version, nsid, extra + ecs.answer(option, scope))
        return self._respond(table, data, question, entry, edns, transport, reserve)

    def _located(self, geo: GeoKey, option: bytes | None, client: bytes
                 ) -> tuple[Entry, int] | None:
        """A geo key's entry for the client and the scope of the ECS answer; None when the
        client is the source address and it is not known."""
        parsed = ecs.parse(option) if option is not None else None
        if isinstance(parsed, tuple) and parsed[1]:
            family, _, address = parsed
            block = geo.index.find4(address) if family == ecs.FAMILY_IPV4 \
                else geo.index.find6(address)
            scope = block & SCOPE_MASK
        elif not client:
            return None
        else:
            number = int.from_bytes(client)
            block = geo.index.find4(number) if len(client) == 4 else geo.index.find6(number)
            scope = 0
        rotation, _ = geo.by_order[block >> SCOPE_BITS]
        return next(rotation), scope  # counted by `_respond`, as every answer

    def _signed(self, data: bytes, at: int, question: bytes, edns: Edns | None,
                transport: int, cookie: bytes, rcode: int) -> bytes | None:
        """A query whose last record, at `at`, is a TSIG: refused (NOTAUTH and a TSIG error),
        or answered as the same query unsigned would be, and the answer signed. `answer`
        never caches it: a signed answer is for one query, at one time.

        The gate refuses, without dnspython, what needs no key to refuse (an unknown key, a
        bad MAC, a malformed TSIG): only a request signed with a key we hold costs more."""
        unsigned = data[:10] + struct.pack(">H", (data[10] << 8 | data[11]) - 1) + data[12:at]
        if self._gate is None:
            self._gate = tsig_gate.wire_keys(self.tsig_keys)
        refused = tsig_gate.check(data, self._gate)
        if refused is not None:
            return refused.finish(self._error(unsigned, question, refused.rcode, edns,
                                              transport), time.time())
        from healthdns.shared import tsigwire as tsig  # dnspython: at the first good signature

        if self._keyring is None:
            from healthdns.shared.tsigkeys import keyring
            self._keyring = keyring(self.tsig_keys)
        checked = tsig.verify(data, self._keyring, time.time())
        if not isinstance(checked, tsig.Verified):  # None: dnspython found no TSIG we did
            refusal = checked or tsig.Refusal(FORMERR)
            return refusal.finish(self._error(unsigned, question, refusal.rcode, edns,
                                              transport))
        stream = tsig.Stream(checked)
        response = self.slow(unsigned, transport, cookie, rcode, stream.size)
        if response is NEEDS_CLIENT:
            return response
        return None if response is None else stream.sign(response)

    def _respond(self, table: Table, data: bytes, question: bytes, entry: Entry,
                 edns: Edns | None, transport: int, reserve: int = 0) -> bytes:
        shape, plain, signed = entry
        flags = shape.flags | (data[2] & 0x01) << 8 | (data[3] & 0x10)
        qtype = counted(question[-4] << 8 | question[-3])
        self.slow_counts[(shape.kind >> ZONE_SHIFT & ZONE_MASK, qtype, flags & 0x0F,
                          transport)] += 1
        if shape.kind >> SITE_COUNT_SHIFT:  # a geo answer: its site
            site_counts({shape.kind: 1}, self.site_counts)
        do = 0
        if edns is not None:
            _, edns_flags, _, _, _ = edns
            do = edns_flags & 0x8000  # the client takes DNSSEC records (RFC 3225)
        if edns is None:
            counts, body = shape.counts, table.soas[shape.soa] + plain
        elif not do:
            counts, body = shape.counts_opt, table.soas[shape.soa] + plain
        elif shape.proved is None:
            counts, body = shape.counts_do, table.soas_signed[shape.soa] + signed
        else:  # a signed NXDOMAIN: the NSEC records that prove it
            counts, proofs = table.denial(question[:-4].lower(), shape.proved)
            body = table.soas_signed[shape.soa] + signed + proofs
        response = data[:2] + struct.pack(">H", flags) + counts + question + body
        limit = self._limit(edns, transport & TCP) - reserve
        opt = self._opt_for(edns, limit - len(response))
        if len(response) + len(opt) <= limit:
            return response + opt
        self.truncated += 1
        opt = self._opt_for(edns, limit - 12 - len(question))
        return self._header(data, flags | TC, 1, 0, 1 if opt else 0) + question + opt

    def _limit(self, edns: Edns | None, tcp: int) -> int:
        """The largest response the client takes: 512 octets over UDP without EDNS, else the
        lesser of its size and ours, never under 512 (RFC 1035 4.2.1, RFC 6891 6.2.5)."""
        if tcp:
            return TCP_LIMIT
        if edns is None:
            return PLAIN_LIMIT
        size, _, _, _, _ = edns
        return max(PLAIN_LIMIT, min(self.payload_size, size))

    def _error(self, data: bytes, question: bytes, rcode: int, edns: Edns | None,
               transport: int, zone: int | None = None) -> bytes:
        """An error response; counted under `zone`, or when None under the zone the question
        falls in (the one that would answer it had it no error), as the cache counts it."""
        qtype = counted(question[-4] << 8 | question[-3]) if question else OTHER_QTYPE
        if zone is None:
            zone = self._zone(question)
        self.slow_counts[(zone, qtype, rcode, transport)] += 1
        # QR, the opcode echoed, RD copied; never AA on an error (RFC 1035 4.1.1). CD is a
        # QUERY bit (RFC 6840 5.9): copied for QUERY only, as Knot and gdnsd do.
        cd = data[3] & 0x10 if not data[2] & 0x78 else 0
        flags = QR | (data[2] & 0x79) << 8 | cd | (rcode & 0x0F)
        # At most 12 + 259 + 11 octets without NSID: within every limit (512 at least).
        opt = self._opt_for(edns, self._limit(edns, transport & TCP) - 12 - len(question),
                            rcode >> 4)
        return self._header(data, flags, 1 if question else 0, 0, 1 if opt else 0) \
            + question + opt

    def _zone(self, question: bytes) -> int:
        table = self.table
        if table is None or not question:
            return 0
        return table.zone_of(question[:-4].lower() + question[-4:])

    @staticmethod
    def _header(data: bytes, flags: int, qdcount: int, ancount: int, arcount: int) -> bytes:
        return data[:2] + struct.pack(">HHHHH", flags, qdcount, ancount, 0, arcount)
