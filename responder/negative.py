"""NXDOMAIN answers kept for a random-subdomain flood: one answer stands for every name one
label under the same parent (`query.Answerer.answer` asks here before its lookup)."""

from __future__ import annotations

from healthdns.responder.counting import TYPE_INDEX, transport_kinds
from healthdns.responder.entry import MAX_LABEL, MAX_NAME, QTYPE_SHIFT, KeptNxdomain
from healthdns.responder.table import Table
from healthdns.responder.wire import NAME_END, NO_EDNS, ONE_AR, OPT_HEAD, PLAIN_LIMIT

ONLY_SOA = b"\x00\x00\x00\x01"  # ANCOUNT 0, NSCOUNT 1: an unsigned negative answer


def kept_nxdomain(table: Table, nxdomains: dict[bytes, KeptNxdomain], data: bytes,
                  transport: int, fast: dict[int, int]) -> bytes | None:
    """The answer for a name one label under a parent whose NXDOMAIN is kept
    (`remember_nxdomain`): that response but for the label, if the name it makes does
    not exist (and with DNSSEC, this name's proofs, if the answer still fits).

    A flood never asks a name twice; a client that does (the same query right after the
    last one under this entry) gets it into the packet cache, as `cache.admit` would."""
    first = data[12]
    kept = nxdomains.get(data[2:13] + data[13 + first:])
    if kept is None or not 0 < first <= kept.room:
        return None
    label = data[12:13 + first]
    name = label.lower() + kept.parent
    if name in table.names:
        return None
    proved = kept.proved
    if proved is None:
        response = b"".join((data[:2], kept.head, label, kept.tail))
    else:
        counts, proofs = table.denial(name, proved)
        response = b"".join((data[:2], kept.head, counts, label, kept.tail, proofs, kept.opt))
        if len(response) > kept.limit:
            return None  # the full path truncates it
    kinds = kept.kinds
    kind = kinds[transport]
    fast[kind] = fast.get(kind, 0) + 1
    if kept.last != label:
        kept.last = label
    elif len(table.cache) < table.cache_size:
        table.cache[data[2:]] = (response[2:], kinds)
    return response


def remember_nxdomain(table: Table, data: bytes, response: bytes, payload_size: int,
                      opt: bytes) -> None:
    """Keep an NXDOMAIN for every name a first label of the same length could make under
    the same parent, where it can stand for them.

    A random-subdomain flood asks a new name each time, one label under a name that
    exists: the packet cache never sees one twice, but the answers differ only in that
    label, and with DNSSEC in the NSEC records that prove the name does not exist. Kept,
    one answer serves the whole flood (`query.Answerer.answer`): a lookup, a membership
    test, a splice, and with DNSSEC the proofs `Table.denial` finds, instead of the full
    path's lookups.

    Kept only for the fast path's query shapes (no EDNS options, no TSIG, only flags it
    takes), whose answer depends on nothing but the bytes in the key and whether the name
    exists; for parents that exist, so that random parents cannot fill it (bounded like the
    cache: full, it keeps what it holds; a new table starts empty). `KeptNxdomain` says what
    an entry holds.
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
    if parent not in table.names or entry is None:
        return
    shape, _, _ = entry
    # Only flags the fast path takes: the slow path answers the others (AA or TC set in a
    # query, another opcode), and counts them as its own.
    if data[2:4] not in shape.flag_map:
        return
    kind = shape.kind | TYPE_INDEX[data[end + 1] << 8 | data[end + 2]] << QTYPE_SHIFT
    # The answers UDP takes (`query.Answerer._lookup`): 512 octets, with EDNS up to the
    # client's size.
    limit = max(PLAIN_LIMIT, min(payload_size, data[end + 8] << 8 | data[end + 9])) \
        if edns else PLAIN_LIMIT
    room = min(MAX_LABEL, MAX_NAME - 1 - len(parent))  # a name is at most 255 octets
    tail = response[13 + first:]
    if response[6:10] == ONLY_SOA:  # no proofs: the answer grows with the label alone
        kept = KeptNxdomain(response[2:12], tail, parent,
                            min(room, limit - len(response) + first), transport_kinds(kind),
                            limit)
    else:
        proved = shape.proved
        if proved is None or not edns or not data[end + 12] & 0x80:  # DO
            return
        counts, proofs = table.denial(name, proved)
        if response[4:12] != counts or not tail.endswith(proofs + opt):
            return  # not the answer the fast path makes (`Answerer._lookup`): kept by no one
        kept = KeptNxdomain(response[2:4], tail[:len(tail) - len(proofs) - len(opt)], parent,
                            room, transport_kinds(kind), limit, proved, opt)
    # Keyed by the label's length too: the answer's pointers count on where it ends.
    table.nxdomains[data[2:13] + data[13 + first:]] = kept
