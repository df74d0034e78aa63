"""Names and types as the control endpoint shows them, in text, without dnspython.

dnspython (with idna) costs the supervisor about 4.7 MiB of memory for good (bench/memory.py), and
the supervisor only needs it to spell names: its configuration comes checked and normalised
from supervisor/validate.py's process (origins absolute and lower-case, owners relative, both
as dnspython writes them), and responders count queries by their zone's wire origin. These
helpers give what dnspython's `to_text(omit_final_dot=True)` gives for those inputs;
tests/test_status_names.py checks them against dnspython.
"""

from __future__ import annotations

# The numbers of the query types that get their own metric label (RFC 1035, 3596, 2782,
# 8659, 4034, 5155, 9460, 1995): every other type is counted as "other".
QTYPE_NUMBERS = {"A": 1, "AAAA": 28, "CNAME": 5, "MX": 15, "NS": 2, "PTR": 12, "SOA": 6,
                 "SRV": 33, "TXT": 16, "CAA": 257, "DS": 43, "DNSKEY": 48, "NSEC": 47,
                 "NSEC3": 50, "RRSIG": 46, "HTTPS": 65, "SVCB": 64, "ANY": 255, "AXFR": 252,
                 "IXFR": 251}
_TYPE_NAMES = {number: name for name, number in QTYPE_NUMBERS.items()}
# Bytes dnspython writes with a backslash before them (RFC 1035 section 5.1 "master files").
_SPECIAL = frozenset(b'"().;\\@$')
_MAX_NAME = 255  # octets, with the length bytes (RFC 1035 section 2.3.4)


def type_text(rdtype: int) -> str:
    """A pool's record type (A or AAAA, as the signer reports its choices) in text; an
    unnamed type in the RFC 3597 form ("TYPE65280")."""
    return _TYPE_NAMES.get(rdtype, f"TYPE{rdtype}")


def bare(origin: str) -> str:
    """A normalised zone origin ("example.test.") without its final dot."""
    return origin.removesuffix(".")


def absolute(owner: str, origin: str) -> str:
    """A record's owner (normalised: relative text, or "@") in its zone `origin`, without the
    final dot ("www", "example.test." -> "www.example.test")."""
    return bare(origin) if owner == "@" else f"{owner}.{bare(origin)}"


def from_wire(wire: bytes) -> str | None:
    """The text of the uncompressed name at the start of `wire`, without the final dot;
    None if there is none (a truncated label, a compression pointer, a bad label type, more
    than 255 octets). What follows the name is ignored, as dnspython does."""
    labels: list[str] = []
    at = 0
    while at < len(wire) and wire[at]:
        length = wire[at]
        if length >= 64 or at + 1 + length > len(wire):
            return None
        labels.append(_escaped(wire[at + 1:at + 1 + length]))
        at += 1 + length
    if at >= len(wire) or at + 1 > _MAX_NAME:
        return None
    return ".".join(labels) if labels else "."


def _escaped(label: bytes) -> str:
    return "".join("\\" + chr(c) if c in _SPECIAL else chr(c) if 0x20 < c < 0x7F
                   else f"\\{c:03d}" for c in label)
