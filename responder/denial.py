"""The NSEC and NSEC3 records that prove a name does not exist, found per query for a signed
NXDOMAIN (`Denials.denial`), from what each closest encloser shares, found once per table."""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections.abc import Iterator
from typing import Any

from healthdns.responder.entry import Entry
from healthdns.shared import canonical, compression, nsec3

_COUNTS = struct.Struct(">HHHH").pack  # header counts; made per signed NXDOMAIN (`denial`)
# A zone's denial chain (NSEC `canonical.packed` keys or NSEC3 hashes), its proofs by chain
# position (templates, see `compression.place`), whether it is NSEC3, and where the proofs
# start: the apex's length and the octets between the question and them.
Chain = tuple[list[Any], list[bytes], bool, int, int]
# A zone's chain, and what a closest encloser always needs (see `Table.denial`): NSEC3, the
# positions matching it and covering its wildcard; NSEC, the position covering its wildcard,
# its packed key (the start of every name's below it), the encloser itself and the lengths of
# its suffixes (an NSEC owner's labels that end it are written as a pointer into the
# question), and how much of the wildcard's NSEC owner is written. Then the records those
# positions give, as placed for the last length of question name (`Table._placed`).
Proving = tuple[list[Any], list[bytes], bool, int, int, tuple[Any, ...],
                list[tuple[int, bytes]]]


def _suffix_lengths(name: bytes) -> Iterator[int]:
    """The length of each suffix of a wire name, the name's own first."""
    i = 0
    while i < len(name):
        yield len(name) - i
        i += name[i] + 1


class Denials:
    """A table's denial chains (by zone origin) and what their enclosers share."""

    __slots__ = ()
    names: dict[bytes, Entry]
    chains: dict[bytes, Chain]
    enclosers: dict[bytes, Proving]

    def denial(self, name: bytes, base: tuple[int, int, int]) -> tuple[bytes, bytes]:
        """The counts (our OPT included) and the NSEC or NSEC3 records, with their RRSIGs,
        proving that `name` does not exist, from the zone that holds it.

        NSEC: the record covering the name and the one covering the wildcard at its closest
        encloser (RFC 4035 3.1.3.2). NSEC3: the records matching the closest encloser,
        covering the next closer name and covering the wildcard (RFC 5155 7.2.2). What
        depends only on the encloser is found once per table: a random-name flood under one
        encloser costs a walk, a bisect (and one hash with NSEC3) per query.

        The records are written for this question (`compression.place`), those the encloser
        fixes first.
        """
        encloser = canonical.closest_encloser(self.names, name)
        found = self.enclosers.get(encloser)
        if found is None:
            found = self.enclosers[encloser] = self._encloser(name, encloser)
        keys, proofs, hashed, apex_length, after, fixed, _ = found
        an, ns, ar = base
        placed = self._placed(found, len(name))
        apex = compression.QUESTION + len(name) - apex_length
        start = compression.QUESTION + len(name) + 4 + after + len(placed)
        if not hashed:  # one record when the name and the wildcard fall in one gap
            wildcard, packed_encloser, _, suffixes, _ = fixed
            key = canonical.packed_below(packed_encloser, name, len(name) - len(encloser))
            covering = max(0, bisect_right(keys, key) - 1)  # as `canonical.covering`
            if covering == wildcard:
                return _COUNTS(1, an, ns + 2, ar + 1), placed
            proof = proofs[covering]
            # Under the apex itself (a flood's names), an owner shares no more with the name.
            kept = compression.kept_labels(proof, encloser, suffixes, apex_length) \
                if len(encloser) > apex_length else -1
            return _COUNTS(1, an, ns + 4, ar + 1), placed + compression.place(
                proof, apex, start, kept)
        closer = nsec3.next_closer_position(keys, name, encloser)
        matching, wildcard = fixed
        records = 2 if matching == wildcard else 4  # each with its RRSIG
        if closer in (matching, wildcard):
            return _COUNTS(1, an, ns + records, ar + 1), placed
        return _COUNTS(1, an, ns + records + 2, ar + 1), placed + compression.place(
            proofs[closer], apex, start)

    @staticmethod
    def _placed(found: Proving, length: int) -> bytes:
        """The records an encloser's positions give, placed for a question name of `length`
        octets, right after the SOA records: kept for the last length asked (a flood's
        names are of one length), one slot replaced whole (threads may ask at once)."""
        _, proofs, hashed, apex_length, after, fixed, memo = found
        last_length, last_placed = memo[0]
        if last_length == length:
            return last_placed
        apex = compression.QUESTION + length - apex_length
        start = compression.QUESTION + length + 4 + after
        if hashed:
            matching, wildcard = fixed
            placed = compression.place(proofs[matching], apex, start)
            if wildcard != matching:
                placed += compression.place(proofs[wildcard], apex, start + len(placed))
        else:
            wildcard, _, _, _, kept = fixed
            placed = compression.place(proofs[wildcard], apex, start, kept)
        memo[0] = (length, placed)
        return placed

    def _encloser(self, name: bytes, encloser: bytes) -> Proving:
        """The chain of the zone holding `name` (the longest origin above it), with the
        positions its closest encloser `encloser` always needs."""
        i = 0
        while name[i]:
            i += name[i] + 1
            found = self.chains.get(name[i:])
            if found is not None:
                keys, proofs, hashed, apex_length, _ = found
                unplaced = [(0, b"")]  # no name is 0 octets long
                if hashed:
                    return (*found, nsec3.encloser_positions(keys, encloser), unplaced)
                wildcard = canonical.covering(keys, canonical.wildcard(encloser),
                                              canonical.packed)
                suffixes = frozenset(_suffix_lengths(encloser))
                return (*found, (wildcard, canonical.packed(encloser), encloser, suffixes,
                                 compression.kept_labels(proofs[wildcard], encloser, suffixes,
                                                         apex_length)), unplaced)
        raise LookupError(f"no signed zone holds {name!r}: its entry has no NSEC proofs")
