"""The supervisor spells names and types as dnspython did before it stopped importing it.

supervisor/names.py replaces dnspython in the running supervisor (issue #12); what the status
page, the metrics and the control API show must not change, so each helper is checked here
against dnspython on generated names, special bytes and broken wire data included.
"""

from __future__ import annotations

import dns.exception
import dns.name
import dns.rdatatype
from hypothesis import given
from hypothesis import strategies as st

from healthdns.supervisor import metrics, names

LABELS = st.lists(st.binary(min_size=1, max_size=63), min_size=1, max_size=4)
# Bytes that need escapes or look like them, often enough to be drawn.
TRICKY = st.binary(min_size=1, max_size=8).map(lambda b: b + b'.\\"@$ ;\x00\xff'[len(b) % 9:])


def fits(labels: list[bytes]) -> bool:
    return sum(len(label) + 1 for label in labels) + 1 <= 255


def expected_from_wire(wire: bytes) -> str | None:
    try:
        return dns.name.from_wire(wire, 0)[0].to_text(omit_final_dot=True)
    except dns.exception.DNSException:
        return None


@given(st.binary(max_size=300))
def test_any_bytes_read_as_dnspython_reads_them(wire: bytes) -> None:
    assert names.from_wire(wire) == expected_from_wire(wire)


@given(st.lists(st.one_of(st.binary(min_size=1, max_size=63), TRICKY), max_size=6),
       st.binary(max_size=3))
def test_wire_names_read_as_dnspython_reads_them(labels: list[bytes], tail: bytes) -> None:
    wire = b"".join(bytes([len(label)]) + label for label in labels) + b"\x00" + tail
    assert names.from_wire(wire) == expected_from_wire(wire)


def test_long_and_odd_wire_names() -> None:
    for wire in (b"\x3f" + b"a" * 63 + b"\x00", b"\x40" + b"a" * 64 + b"\x00",
                 (b"\x3f" + b"a" * 63) * 4 + b"\x00", (b"\x3e" + b"a" * 62) * 4 + b"\x00",
                 b"\xc0\x00", b"\x03abc\xc0\x00", b"\x00", b"", b"\x03ab", b"\x03abc"):
        assert names.from_wire(wire) == expected_from_wire(wire), wire


@given(st.lists(st.one_of(st.binary(min_size=1, max_size=63), TRICKY), max_size=3), LABELS)
def test_owner_names_spelled_as_dnspython_did(relative: list[bytes], zone: list[bytes]) -> None:
    if not fits(relative + zone):
        return
    # Normalised as shared/config/ normalises: the origin canonical, the owner relative.
    origin = dns.name.Name([*zone, b""]).canonicalize()
    owner = dns.name.Name(relative).to_text() if relative else "@"
    before = dns.name.from_text(owner, origin).to_text(omit_final_dot=True)
    assert names.absolute(owner, origin.to_text()) == before


def test_query_types_are_dnspythons_numbers() -> None:
    for qtype in metrics.QTYPES:
        assert names.QTYPE_NUMBERS[qtype] == dns.rdatatype.from_text(qtype)


@given(st.sampled_from([1, 28, 65280, 0, 300]))
def test_choice_types_spelled_as_dnspython_did(rdtype: int) -> None:
    """The signer reports a pool's choices for A and AAAA; others as RFC 3597 writes them."""
    assert names.type_text(rdtype) == dns.rdatatype.to_text(rdtype)
