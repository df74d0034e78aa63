"""NXDOMAIN answers kept for a random-subdomain flood: one answer stands for every name one
label under the same parent (`query.Answerer.answer` asks here before its lookup)."""

from __future__ import annotations

from healthdns.responder.counting import TYPE_INDEX, transport_kinds
from healthdns.responder.entry import MAX_LABEL, MAX_NAME, QTYPE_SHIFT, Nxdomain
from healthdns.responder.table import Table
from healthdns.responder.wire import NAME_END, NO_EDNS, ONE_AR, OPT_HEAD, PLAIN_LIMIT

ONLY_SOA = b"\x00\x00\x00\x01"  # ANCOUNT 0, NSCOUNT 1: an unsigned negative answer


def kept_nxdomain(table: Table, nxdomains: dict[bytes, Nxdomain], data: bytes,
                  transport: int, fast: dict[int, int]) -> bytes | None:
    """The answer for a name one label under a parent whose NXDOMAIN is kept
    (`remember_nxdomain`): that response but for the label, if the name it makes does
    not exist (and with DNSSEC, this name's proofs, if the answer still fits).

    A flood never asks a name twice; a client that does (the same query right after the
    last one under this entry) gets it into the packet cache, as `cache.admit` would."""
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
    kinds = found[4]
    kind = kinds[transport]
    fast[kind] = fast.get(kind, 0) + 1
    last = found[8]
    if last[0] != label:
        last[0] = label
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
    # The answers UDP takes (`query.Answerer._lookup`): 512 octets, with EDNS up to the
    # client's size.
    limit = max(PLAIN_LIMIT, min(payload_size, data[end + 8] << 8 | data[end + 9])) \
        if edns else PLAIN_LIMIT
    room = min(MAX_LABEL, MAX_NAME - 1 - len(parent))  # a name is at most 255 octets
    tail = response[13 + first:]
    if response[6:10] == ONLY_SOA:  # no proofs: the answer grows with the label alone
        found: Nxdomain = (response[2:12], tail, parent,
                           min(room, limit - len(response) + first),
                           transport_kinds(kind), None, b"", limit, [b""])
    else:
        proved = entry[0][5]
        if proved is None or not edns or not data[end + 12] & 0x80:  # DO
            return
        counts, proofs = table.denial(name, proved)
        if response[4:12] != counts or not tail.endswith(proofs + opt):
            return  # not the answer the fast path makes (`Answerer._lookup`): kept by no one
        found = (response[2:4], tail[:len(tail) - len(proofs) - len(opt)], parent, room,
                 transport_kinds(kind), proved, opt, limit, [b""])
    # Keyed by the label's length too: the answer's pointers count on where it ends.
    table.nxdomains[data[2:13] + data[13 + first:]] = found
