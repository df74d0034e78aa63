"""From query bytes to response bytes: the per-query path.

`Answerer.answer` is the fast path: it handles the common shape of query (one question, no
EDNS or a bare EDNS OPT) by splicing pre-rendered bytes around the question as sent. Everything
else goes to `Answerer.slow`, a complete parser that never raises on any input. Both consult the
same `Table`, so they agree by construction; a property test compares them anyway.
"""

from __future__ import annotations

import struct
import time
from collections import Counter
from typing import TYPE_CHECKING

from healthdns.responder import tsig_gate
from healthdns.responder.table import (
    MAX_LABEL,
    MAX_NAME,
    QTYPE_SHIFT,
    RCODE_SHIFT,
    ZONE_SHIFT,
    Entry,
    Nxdomain,
    Table,
    flag_map,
    zone_origin,
)
from healthdns.shared.messages import COUNTED_QTYPES, OTHER_QTYPE

if TYPE_CHECKING:
    from healthdns.shared import tsigwire as tsig
    from healthdns.shared.tsigkeys import Key

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
BADVERS = 16  # extended: upper bits travel in the OPT TTL (RFC 6891 6.1.3)
BADCOOKIE = 23  # RFC 7873 8
OPT = 41
ANY = 255
TSIG = 250
NOTAUTH = 9  # RFC 8945 5.2: a TSIG that does not check out
NSID = 3  # EDNS option code (RFC 5001); every other option is ignored (RFC 6891 6.1.2)
TC = 0x0200
QR = 0x8000
PLAIN_LIMIT = 512
TCP_LIMIT = 65535  # the 2-octet length prefix (RFC 1035 4.2.2)
NAME_END = 12 + MAX_NAME  # a question name ending at or after this offset is too long
# Longer queries are answered but not cached: the cache holds entries, not octets, and a
# well-formed query with a few EDNS options is far shorter (a name is at most 255 octets).
CACHE_QUERY_MAX = 512
NO_EDNS = b"\x00\x01\x00\x00\x00\x00\x00\x00"  # QDCOUNT 1, no other records
ONE_AR = b"\x00\x01\x00\x00\x00\x00\x00\x01"  # QDCOUNT 1, one additional (the OPT)
OPT_HEAD = b"\x00\x00\x29"  # root owner, type OPT
ONLY_SOA = b"\x00\x00\x00\x01"  # ANCOUNT 0, NSCOUNT 1: an unsigned negative answer
# The query flags the fast path answers (every entry's flag map has the same keys).
FAST_FLAGS = frozenset(flag_map(0))
# Types a question may not simply be looked up for: the slow path answers them.
META_QTYPES = frozenset({0, OPT, 249, 250, 251, 252, 253, 254})
# The transport a query came by, as the caller passes it: bit 0 TCP, bit 1 IPv6. One small
# int, so that the fast path's counter key takes it with one `|`.
UDP, TCP, V6 = 0, 1, 2
# Counters by transport bits -> (TCP?, address family as CoreDNS labels it: 1 IPv4, 2 IPv6).
TRANSPORTS = {t: (bool(t & TCP), 2 if t & V6 else 1) for t in range(4)}
# (path, TCP?, family, zone origin (wire, b"" for none of ours), qtype as `counted`, rcode)
# -> queries
Counts = Counter[tuple[str, bool, int, bytes, int, int]]


def _type_index() -> bytes:
    index = bytearray(65536)
    for i, qtype in enumerate(COUNTED_QTYPES):
        index[qtype] = i
    return bytes(index)


# A query type's place in COUNTED_QTYPES, which counter keys carry (0: every other type), one
# octet per type: a subscript on the fast path, and at most 21 types in the counters.
TYPE_INDEX = _type_index()
# Counter keys by transport, shared by the cache entries that count alike: bounded by the
# zones, counted types and rcodes, so past KINDS_SHARED something is wrong and an entry gets a
# tuple of its own (bounded by the cache, as the entry is).
KINDS_SHARED = 4096
_kinds: dict[int, tuple[int, ...]] = {}


def counted(qtype: int) -> int:
    """The query type as counted: itself if it is one of COUNTED_QTYPES, else OTHER_QTYPE."""
    return COUNTED_QTYPES[TYPE_INDEX[qtype]]


def transport_kinds(kind: int) -> tuple[int, ...]:
    """A counter key for each transport (`UDP`, `TCP`, `| V6`), indexed by it."""
    found = _kinds.get(kind)
    if found is None:
        found = tuple(kind | transport for transport in range(4))
        if len(_kinds) < KINDS_SHARED:
            _kinds[kind] = found
    return found


class Answerer:
    """Answers queries from the current table; one per responder process."""

    def __init__(self, payload_size: int, nsid: bytes = b"") -> None:
        self.table: Table | None = None
        self.payload_size = payload_size
        # RFC 5001: sent only to a client whose query carries an (empty) NSID option.
        self.nsid_option = struct.pack(">HH", NSID, len(nsid)) + nsid if nsid else b""
        # Our OPT record, without and with the DO bit echoed (RFC 3225).
        self.opts = (self._opt(0, 0), self._opt(0, 0x8000))
        # Queries answered, by path (no logging per query). The fast path and the cache key
        # theirs as zone id << ZONE_SHIFT | type index << QTYPE_SHIFT | rcode << RCODE_SHIFT
        # | transport (the type index: `TYPE_INDEX`): the entry holds all but the type and
        # transport, so counting stays one dict increment. Zone ids and type indexes are
        # translated only when read (`counts_by_label`).
        self.fast_counts: dict[int, int] = {}
        self.cache_counts: dict[int, int] = {}
        # (zone id, qtype as `counted`, rcode, transport): rcodes beyond 4 bits (BADVERS,
        # BADCOOKIE) too.
        self.slow_counts: Counter[tuple[int, int, int, int]] = Counter()
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
        extra = edns[4]  # our COOKIE, when the query carried one (at most 44 octets)
        options = self.nsid_option if edns[3] and 11 + len(self.nsid_option) + len(extra) \
            <= room else b""
        options += extra
        if not options and not ext_rcode:
            return self.opts[edns[1] >> 15]
        return self._opt(ext_rcode, edns[1] & 0x8000, options)

    # --- fast path ------------------------------------------------------------------------------

    def answer(self, data: bytes, transport: int) -> bytes | None:
        """The response to `data`, or None when no response must be sent.

        `transport`: UDP or TCP, | V6 when the socket is IPv6 (a bool works for IPv4).

        The packet cache comes first (as PowerDNS's does): one table answers the same query
        bytes, the ID aside, with the same response bytes, so a UDP response is kept by the
        query it answered. Each table has its own cache: a new snapshot starts empty.
        """
        table = self.table
        if table is None or transport & 1:  # TCP (a literal: this test is on every query)
            return self._lookup(table, data, transport)
        key = data[2:]
        cached = table.cache.get(key)
        if cached is not None:
            # IPv4 and IPv6 sockets share the cache: the entry holds its counter key per
            # transport, made once, so a hit allocates nothing to count (as before families).
            kind, counts = cached[1][transport], self.cache_counts
            counts[kind] = counts.get(kind, 0) + 1
            return data[:2] + cached[0]
        nxdomains = table.nxdomains
        if nxdomains and len(data) > 12:
            response = self._kept_nxdomain(table, nxdomains, data, transport)
            if response is not None:
                return response
        response = self._lookup(table, data, transport)
        if response is None or not table.cache_size:
            return response
        if response[3] & 0x0F == NXDOMAIN and response[6:8] == b"\x00\x00" \
                and len(nxdomains) < table.cache_size:  # no CNAME chain: the name alone
            self._remember_nxdomain(table, data, response)
        if len(table.cache) >= table.cache_size:
            return response
        # A first miss only adds a hash to `seen` (see `_admit`): inline, as a flood's every
        # query is one, and one probe of the set (`add`; the size tells whether it was new).
        seen = table.seen
        known = len(seen)
        seen.add(hash(key))  # the hash is the one the cache lookup computed
        if len(seen) > known:
            if known >= table.cache_size:  # bounded: start again with this one
                seen.clear()
                seen.add(hash(key))
        elif len(data) <= CACHE_QUERY_MAX:
            self._admit(table, key, data, response)
        return response

    def _kept_nxdomain(self, table: Table, nxdomains: dict[bytes, Nxdomain], data: bytes,
                       transport: int) -> bytes | None:
        """The answer for a name one label under a parent whose NXDOMAIN is kept
        (`_remember_nxdomain`): that response but for the label, if the name it makes does
        not exist (and with DNSSEC, this name's proofs, if the answer still fits).

        A flood never asks a name twice; a client that does (the same query right after the
        last one under this entry) gets it into the packet cache, as `_admit` would."""
        first = data[12]
        found = nxdomains.get(data[2:13] + data[13 + first:])
        if found is None or not 0 < first <= found[3]:
            return None
        label = data[12:13 + first]
        name = label.lower() + found[2]
        if name in table.names:
            return None
        proved = found[5]
        if proved is None:
            response = b"".join((data[:2], found[0], label, found[1]))
        else:
            counts, proofs = table.denial(name, proved)
            response = b"".join((data[:2], found[0], counts, label, found[1], proofs, found[6]))
            if len(response) > found[7]:
                return None  # the full path truncates it
        kinds, fast = found[4], self.fast_counts
        kind = kinds[transport]
        fast[kind] = fast.get(kind, 0) + 1
        last = found[8]
        if last[0] != label:
            last[0] = label
        elif len(table.cache) < table.cache_size:
            table.cache[data[2:]] = (response[2:], kinds)
        return response

    def _remember_nxdomain(self, table: Table, data: bytes, response: bytes) -> None:
        """Keep an NXDOMAIN for every name a first label of the same length could make under
        the same parent, where it can stand for them.

        A random-subdomain flood asks a new name each time, one label under a name that
        exists: the packet cache never sees one twice, but the answers differ only in that
        label, and with DNSSEC in the NSEC records that prove the name does not exist. Kept,
        one answer serves the whole flood (`answer`): a lookup, a membership test, a splice,
        and with DNSSEC the proofs `Table.denial` finds, instead of the full path's lookups.

        Kept only for the fast path's query shapes (no EDNS options, no TSIG, only flags it
        takes), whose answer depends on nothing but the bytes in the key and whether the name
        exists; for parents that exist, so that random parents cannot fill it (bounded like the
        cache: full, it keeps what it holds; a new table starts empty). `Nxdomain` says what an
        entry holds.
        """
        first = data[12]
        end = data.find(0, 12, NAME_END)
        counts = data[4:12]
        edns = counts == ONE_AR and len(data) == end + 16 and data[end + 5:end + 8] == OPT_HEAD
        if not (0 < first <= MAX_LABEL and end > 12 + first and response[2] & 0x02 == 0) \
                or not (edns or counts == NO_EDNS and len(data) == end + 5):
            return
        parent = data[13 + first:end + 1].lower()
        name = data[12:end + 1].lower()
        entry = table.lookup_miss(name)
        # Only flags the fast path takes: the slow path answers the others (AA or TC set in a
        # query, another opcode), and counts them as its own.
        if parent not in table.names or entry is None or data[2:4] not in entry[0][1]:
            return
        kind = entry[0][7] | TYPE_INDEX[data[end + 1] << 8 | data[end + 2]] << QTYPE_SHIFT
        # The answers UDP takes (`_lookup`): 512 octets, with EDNS up to the client's size.
        limit = max(PLAIN_LIMIT, min(self.payload_size, data[end + 8] << 8 | data[end + 9])) \
            if edns else PLAIN_LIMIT
        room = min(MAX_LABEL, MAX_NAME - 1 - len(parent))  # a name is at most 255 octets
        tail = response[13 + first:]
        if response[6:10] == ONLY_SOA:  # no proofs: the answer grows with the label alone
            found: Nxdomain = (response[2:12], tail, parent,
                               min(room, limit - len(response) + first),
                               transport_kinds(kind), None, b"", limit, [b""])
        else:
            proved, opt = entry[0][5], self.opts[1]
            if proved is None or not edns or not data[end + 12] & 0x80:  # DO
                return
            counts, proofs = table.denial(name, proved)
            if response[4:12] != counts or not tail.endswith(proofs + opt):
                return  # not the answer the fast path makes (`_lookup`): kept by no one
            found = (response[2:4], tail[:len(tail) - len(proofs) - len(opt)], parent, room,
                     transport_kinds(kind), proved, opt, limit, [b""])
        # Keyed by the label's length too: the answer's pointers count on where it ends.
        table.nxdomains[data[2:13] + data[13 + first:]] = found

    @staticmethod
    def _admit(table: Table, key: bytes, data: bytes, response: bytes) -> None:
        """Cache a response on the second miss of its query, not the first.

        A random-name flood asks each name once: it only churns the small `seen` set of
        hashes (`answer` adds them), never the cache, so legitimate names keep their entries
        (a full cache keeps what it holds; a new table starts empty). A miss answered on the
        fast path costs little more than a hit, so waiting for the second costs little.
        """
        if table.rotations and _turns(table, key, data):
            return  # a rotating answer is made anew each time: each one steps the rotation
        if data[11] | data[10] and _signed_query(data):  # RFC 8945: never a signed answer
            return
        if response[2] & 0x02:  # TC: every truncated answer is made, so that it is counted
            return
        end = _name_end(data, 12, pointers=False) - 1  # the name's last octet, as `slow` reads
        zone = qtype = 0
        if 12 <= end < len(data) - 4 and data[4:6] == b"\x00\x01":  # as `slow` counts it
            qtype = data[end + 1] << 8 | data[end + 2]
            zone = table.zone_of(data[12:end + 1].lower() + data[end + 1:end + 5])
        kind = zone << ZONE_SHIFT | TYPE_INDEX[qtype] << QTYPE_SHIFT \
            | (response[3] & 0x0F) << RCODE_SHIFT
        table.cache[key] = (response[2:], transport_kinds(kind))

    def _lookup(self, table: Table | None, data: bytes, transport: int) -> bytes | None:
        """Locate the question, look up its entry, splice; anything unusual goes slow."""
        # The end of the question name, when it is well formed and at most 255 octets: a
        # longer one goes slow (FORMERR) before any lookup; a miss checks its labels.
        end = data.find(0, 12, NAME_END)
        qend = end + 5
        if table is None or end < 12 or len(data) < qend:
            return self.slow(data, transport)
        name = data[12:end + 1].lower()
        qtype = data[end + 1] << 8 | data[end + 2]
        key = name + data[end + 1:qend]
        entry = table.answers.get(key)
        if entry is None:  # rotating pools; NODATA, CNAME chains and NXDOMAIN
            if data[end + 3] or data[end + 4] != 1 or qtype in META_QTYPES:  # IN: 0x0001
                return self.slow(data, transport)
            rotation = table.rotations.get(key)
            if rotation is not None:  # every answer steps to the next variant: one made here
                if data[2:4] not in FAST_FLAGS or not _fast_shape(data, qend):
                    return self.slow(data, transport)  # which steps it there instead
                entry = next(rotation)
            else:  # ANY (RFC 8482): its lowest type's entry, derived rather than held
                entry = table.any_entry(name) if qtype == ANY else table.lookup_miss(name)
                if entry is None:
                    return self.slow(data, transport)
        shape, body, signed = entry
        flags = shape[1].get(data[2:4])  # None for responses, other opcodes, odd bits
        if flags is None:
            return self.slow(data, transport)
        # Counted truncated or not, as `slow` counts; one dict increment (see `__init__`).
        kind, fast = shape[7] | TYPE_INDEX[qtype] << QTYPE_SHIFT | transport, self.fast_counts
        counts = data[4:12]
        if counts == NO_EDNS and len(data) == qend:
            fast[kind] = fast.get(kind, 0) + 1
            response = b"".join((data[:2], flags, shape[2], data[12:], table.soas[shape[6]],
                                 body))
            if len(response) > PLAIN_LIMIT and not transport & TCP:
                return self._truncated(data, qend, entry, b"")
            return response
        if (counts != ONE_AR or len(data) != qend + 11 or data[qend:qend + 3] != OPT_HEAD
                or data[qend + 6] or data[qend + 9] or data[qend + 10]):
            return self.slow(data, transport)  # EDNS version > 0, options, or another shape
        fast[kind] = fast.get(kind, 0) + 1
        if data[qend + 7] & 0x80:  # DO: the signed variant (RFC 3225)
            counts, soa, body, opt = shape[4], table.soas_signed[shape[6]], signed, self.opts[1]
            if shape[5] is not None:  # NXDOMAIN: add the proofs for this name
                counts, proofs = table.denial(name, shape[5])
                body += proofs
        else:
            counts, soa, opt = shape[3], table.soas[shape[6]], self.opts[0]
        response = b"".join((data[:2], flags, counts, data[12:qend], soa, body, opt))
        if len(response) > PLAIN_LIMIT and not transport & TCP:
            # RFC 6891 6.2.5: the lesser of the client's payload size and ours, at least 512.
            limit = min(self.payload_size, data[qend + 3] << 8 | data[qend + 4])
            if len(response) > limit:
                return self._truncated(data, qend, entry, opt)
        return response

    def counts(self) -> Counter[tuple[str, int, int]]:
        """(path, qtype, rcode) -> queries answered."""
        out: Counter[tuple[str, int, int]] = Counter()
        for (path, _, _, _, qtype, rcode), n in self.counts_by_label().items():
            out[(path, qtype, rcode)] += n
        return out

    def counts_by_label(self) -> Counts:
        """(path, TCP?, family, zone origin, qtype, rcode) -> queries answered: for metrics.

        Read from another thread than the UDP threads that count: each dict is copied first
        (one C call under the GIL) so that none changes size while it is read. Zone ids are
        translated here, at most once a second, never per query."""
        out: Counts = Counter()
        for path, counts in (("fast", self.fast_counts), ("cache", self.cache_counts)):
            for kind, n in dict(counts).items():
                out[(path, *TRANSPORTS[kind & 3], zone_origin(kind >> ZONE_SHIFT),
                     COUNTED_QTYPES[kind >> QTYPE_SHIFT & 0xFFFF],
                     kind >> RCODE_SHIFT & 0x0F)] += n
        for (zone, qtype, rcode, transport), n in dict(self.slow_counts).items():
            out[("slow", *TRANSPORTS[transport], zone_origin(zone), qtype, rcode)] += n
        return out

    def _truncated(self, data: bytes, qend: int, entry: Entry, opt: bytes) -> bytes:
        """TC=1 with an empty answer: the client retries over TCP (RFC 7766 5)."""
        flags = entry[0][0] | (data[2] & 0x01) << 8 | (data[3] & 0x10) | TC
        self.truncated += 1
        return self._header(data, flags, 1, 0, 1 if opt else 0) + data[12:qend] + opt

    # --- slow path ------------------------------------------------------------------------------

    def slow(self, data: bytes, transport: int, cookie: bytes = b"",
             rcode: int = NOERROR, reserve: int = 0) -> bytes | None:
        """A complete, defensive reading of any packet.

        `cookie` is an option for our OPT (the server cookie, see `guard`); `rcode`, when set,
        is the error to answer a well-formed query with (FORMERR, BADCOOKIE: RFC 7873 5.2);
        `reserve`: octets an answer leaves free for the TSIG that will sign it.
        """
        if len(data) < 12 or data[2] & 0x80:
            return None  # too short to answer, or a response: never reply (no loops)
        opcode = (data[2] >> 3) & 0x0F
        qdcount, ancount, nscount, arcount = struct.unpack_from(">HHHH", data, 4)
        question, pos = b"", 12
        if qdcount >= 1:
            end = _name_end(data, 12, pointers=False)
            if end < 0 or end + 4 > len(data):
                return self._error(data, b"", FORMERR, None, transport)
            question, pos = data[12:end + 4], end + 4
        edns, signed = _find_opt(data, pos, qdcount, ancount + nscount, arcount)
        if edns is MALFORMED:
            return self._error(data, question if qdcount == 1 else b"", FORMERR, None, transport)
        if edns is not None and cookie:
            edns = (*edns[:4], cookie)
        if signed:  # RFC 8945 5.2: the TSIG is checked before anything else
            return self._signed(data, signed, question if qdcount == 1 else b"", edns,
                                transport, cookie, rcode)
        if opcode != 0:
            return self._error(data, question if qdcount == 1 else b"", NOTIMP, edns, transport)
        if qdcount != 1:
            return self._error(data, b"", FORMERR, edns, transport)  # RFC 9619
        if edns is not None and edns[2] > 0:
            return self._error(data, question, BADVERS, edns, transport)
        if rcode:
            return self._error(data, question, rcode, edns, transport)
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
        return self._respond(table, data, question, entry, edns, transport, reserve)

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
        return None if response is None else stream.sign(response)

    def _respond(self, table: Table, data: bytes, question: bytes, entry: Entry,
                 edns: Edns | None, transport: int, reserve: int = 0) -> bytes:
        shape, plain, signed = entry
        flags = shape[0] | (data[2] & 0x01) << 8 | (data[3] & 0x10)
        qtype = counted(question[-4] << 8 | question[-3])
        self.slow_counts[(shape[7] >> ZONE_SHIFT, qtype, flags & 0x0F, transport)] += 1
        if edns is None:
            counts, body = shape[2], table.soas[shape[6]] + plain
        elif not edns[1] & 0x8000:
            counts, body = shape[3], table.soas[shape[6]] + plain
        elif shape[5] is None:
            counts, body = shape[4], table.soas_signed[shape[6]] + signed
        else:  # a signed NXDOMAIN: the NSEC records that prove it
            counts, proofs = table.denial(question[:-4].lower(), shape[5])
            body = table.soas_signed[shape[6]] + signed + proofs
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
        return max(PLAIN_LIMIT, min(self.payload_size, edns[0]))

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


def _name_end(data: bytes, pos: int, pointers: bool) -> int:
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


# (payload size, flags, version, NSID asked, options to add to ours)
Edns = tuple[int, int, int, bool, bytes]
MALFORMED: Edns = (-1, -1, -1, False, b"")


def _find_opt(data: bytes, pos: int, qdcount: int, skip: int,
              arcount: int) -> tuple[Edns | None, int]:
    """The query's EDNS (None without one, MALFORMED if the records do not parse), and the
    offset of its TSIG record (0 without one)."""
    for _ in range(qdcount - 1):  # extra questions: only to get past them
        end = _name_end(data, pos, pointers=True)
        if end < 0 or end + 4 > len(data):
            return MALFORMED, 0
        pos = end + 4
    edns: Edns | None = None
    for index in range(skip + arcount):
        start = pos
        end = _name_end(data, pos, pointers=True)
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


def _turns(table: Table, key: bytes, data: bytes) -> bool:
    """Whether a query (`key`: its bytes but the ID) asks for a rotating key. Asked at every
    miss after the first (`Answerer._admit`), so such a query is remembered: a set lookup the
    next time (bounded like the cache: full, it starts again)."""
    if key in table.turning:
        return True
    end = data.find(0, 12, NAME_END)  # a rotating name has no 0 octet in a label
    if data[12:end + 1].lower() + data[end + 1:end + 5] not in table.rotations:
        return False
    if len(table.turning) >= table.cache_size:
        table.turning.clear()
    table.turning.add(key)
    return True


def _fast_shape(data: bytes, qend: int) -> bool:
    """Whether `_lookup` answers a query of this layout itself, the question ending at `qend`:
    no other record, or one OPT of EDNS version 0 without options (the tests it makes)."""
    counts = data[4:12]
    if counts == NO_EDNS:
        return len(data) == qend
    return (counts == ONE_AR and len(data) == qend + 11 and data[qend:qend + 3] == OPT_HEAD
            and not (data[qend + 6] or data[qend + 9] or data[qend + 10]))


def _signed_query(data: bytes) -> bool:
    """Whether a query that parses carries a TSIG (its answer is for it alone)."""
    qdcount, ancount, nscount, arcount = struct.unpack_from(">HHHH", data, 4)
    pos = 12
    for _ in range(qdcount):
        pos = _name_end(data, pos, pointers=True) + 4
        if pos < 16:
            return False
    return _find_opt(data, pos, 1, ancount + nscount, arcount)[1] > 0


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
