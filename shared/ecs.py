"""The EDNS Client Subnet option (RFC 7871): reading a query's, writing the answer's.

`parse` takes the OPTION-DATA of an option with code 8 and returns ``(family, source prefix
length, address)`` with the address as an integer of the family's full width (IPv4 32 bits,
IPv6 128), or the reason the query gets FORMERR (section 7.2.1: a wrongly formatted option,
e.g. an unknown FAMILY, is rejected with FORMERR; section 6: so are too few or too many ADDRESS
octets and ADDRESS bits set beyond SOURCE PREFIX-LENGTH; SCOPE PREFIX-LENGTH is 0 in queries).

How an authoritative server answers (section 7.2.1 and 7.3):

* the answer's option echoes FAMILY, SOURCE PREFIX-LENGTH and ADDRESS and sets SCOPE
  PREFIX-LENGTH (`answer`); a query without the option gets none;
* a SOURCE PREFIX-LENGTH of 0 asks that no client address be used: the answer is chosen by the
  query's source address, and its scope is 0 (the option carries no network it could apply to);
* the scope is the prefix length of the block of the map that holds ADDRESS: shorter than the
  source when the block is wider (the answer holds for the whole block), longer when the source
  prefix spans blocks with other answers (section 7.2.1 allows it: the source "was not specific
  enough", and a resolver asks again with the longer prefix for other parts of its network).
  The answer is the one for the ADDRESS as sent, i.e. the first address of the source prefix,
  as gdnsd does. Names whose answer does not depend on the client get scope 0.

Both functions are pure and allocate only their result; the parse's errors are constants.
"""

from __future__ import annotations

from typing import Final

OPTION_CODE: Final = 8
FAMILY_IPV4: Final = 1  # IANA address family numbers
FAMILY_IPV6: Final = 2
_BITS: Final = {FAMILY_IPV4: 32, FAMILY_IPV6: 128}
HEADER: Final = 4  # FAMILY (2), SOURCE PREFIX-LENGTH (1), SCOPE PREFIX-LENGTH (1)

SHORT: Final = "the option is shorter than its 4-byte header"
UNKNOWN_FAMILY: Final = "the option's FAMILY is neither 1 (IPv4) nor 2 (IPv6)"
SOURCE_TOO_LONG: Final = "SOURCE PREFIX-LENGTH is longer than an address of its FAMILY"
SCOPE_IN_QUERY: Final = "SCOPE PREFIX-LENGTH is not 0 in a query"
ADDRESS_LENGTH: Final = "ADDRESS does not have exactly the octets SOURCE PREFIX-LENGTH needs"
ADDRESS_BITS: Final = "ADDRESS has bits set beyond SOURCE PREFIX-LENGTH"

# The answer's option header per OPTION-DATA length (4 to 20 bytes), and the scope octets.
_HEADS: Final = tuple(
    OPTION_CODE.to_bytes(2, "big") + length.to_bytes(2, "big") for length in range(HEADER + 17))
SCOPES: Final = tuple(bytes((scope,)) for scope in range(129))


def _shapes() -> dict[bytes, tuple[int, int, int, int, int]]:
    """The valid heads of an OPT record's RDATA holding one ECS option and nothing else."""
    out = {}
    for family, bits in _BITS.items():
        for source in range(bits + 1):
            octets = (source + 7) >> 3
            head = (HEADER + octets + 4).to_bytes(2, "big") + OPTION_CODE.to_bytes(2, "big") \
                + (HEADER + octets).to_bytes(2, "big") + family.to_bytes(2, "big") \
                + bytes((source, 0))
            out[head] = (family, source, octets, bits - octets * 8,
                         (1 << (octets * 8 - source)) - 1)
    return out


# An OPT record whose RDATA is one well-formed ECS option (what resolvers send), by its first
# ten octets (RDLENGTH, OPTION-CODE, OPTION-LENGTH, FAMILY, SOURCE, SCOPE 0): (family, source
# prefix length, address octets, the shift that widens the address to the family's width,
# the mask of the last octet's bits beyond the source). One dict lookup checks every field
# but the address's bits (`parse` checks the same, one field at a time).
SHAPES: Final = _shapes()
SHAPE_SIZE: Final = 10


def parse(data: bytes) -> tuple[int, int, int] | str:
    """``(family, source, address)`` of a query's option, or why the query gets FORMERR."""
    if len(data) < HEADER:
        return SHORT
    family = data[0] << 8 | data[1]
    bits = _BITS.get(family)
    if bits is None:
        return UNKNOWN_FAMILY
    source = data[2]
    if source > bits:
        return SOURCE_TOO_LONG
    if data[3]:
        return SCOPE_IN_QUERY
    octets = (source + 7) >> 3
    if len(data) != HEADER + octets:
        return ADDRESS_LENGTH
    address = int.from_bytes(data[HEADER:], "big")
    if address & ((1 << (octets * 8 - source)) - 1):
        return ADDRESS_BITS
    return family, source, address << (bits - octets * 8)


def answer(data: bytes, scope: int) -> bytes:
    """The whole option (code, length, data) answering a query's valid OPTION-DATA `data`."""
    return _HEADS[len(data)] + data[:3] + SCOPES[scope] + data[HEADER:]

