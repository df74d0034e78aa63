"""The EDNS Client Subnet option's parse and answer (RFC 7871 sections 6 and 7.2.1), byte by
byte: every FORMERR case from a table, and random options against a model of the layout."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthdns.shared import ecs


def option(family: int, source: int, scope: int, address: bytes) -> bytes:
    return family.to_bytes(2, "big") + bytes((source, scope)) + address


@pytest.mark.parametrize(("data", "reason"), [
    (b"", ecs.SHORT),
    (b"\x00\x01\x18", ecs.SHORT),
    (option(0, 0, 0, b""), ecs.UNKNOWN_FAMILY),
    (option(3, 8, 0, b"\x0a"), ecs.UNKNOWN_FAMILY),
    (option(0x0100, 8, 0, b"\x0a"), ecs.UNKNOWN_FAMILY),  # 256, not 1: network byte order
    (option(1, 33, 0, bytes(5)), ecs.SOURCE_TOO_LONG),
    (option(2, 129, 0, bytes(17)), ecs.SOURCE_TOO_LONG),
    (option(1, 24, 24, b"\xc0\x00\x02"), ecs.SCOPE_IN_QUERY),
    (option(1, 0, 1, b""), ecs.SCOPE_IN_QUERY),
    (option(1, 24, 0, b"\xc0\x00"), ecs.ADDRESS_LENGTH),  # too few octets
    (option(1, 24, 0, b"\xc0\x00\x02\x00"), ecs.ADDRESS_LENGTH),  # too many
    (option(1, 0, 0, b"\x00"), ecs.ADDRESS_LENGTH),  # /0 carries no octet
    (option(2, 56, 0, bytes(8)), ecs.ADDRESS_LENGTH),
    (option(1, 23, 0, b"\xc0\x00\x03"), ecs.ADDRESS_BITS),  # bit 24 set beyond /23
    (option(1, 1, 0, b"\xc0"), ecs.ADDRESS_BITS),
    (option(2, 127, 0, bytes(15) + b"\x01"), ecs.ADDRESS_BITS),
])
def test_a_malformed_option_gets_formerr_with_its_reason(data: bytes, reason: str) -> None:
    assert ecs.parse(data) == reason


@pytest.mark.parametrize(("data", "expected"), [
    (option(1, 24, 0, b"\xc0\x00\x02"), (1, 24, int(ipaddress.ip_address("192.0.2.0")))),
    (option(1, 32, 0, b"\x7f\x00\x00\x01"), (1, 32, 0x7F000001)),
    (option(1, 0, 0, b""), (1, 0, 0)),
    (option(2, 0, 0, b""), (2, 0, 0)),
    (option(1, 17, 0, b"\xc6\x33\x80"), (1, 17, int(ipaddress.ip_address("198.51.128.0")))),
    (option(2, 56, 0, b"\x20\x01\x0d\xb8\x00\x01\x02"),
     (2, 56, int(ipaddress.ip_address("2001:db8:1:200::")))),
    (option(2, 128, 0, ipaddress.ip_address("::1").packed), (2, 128, 1)),
])
def test_a_valid_option_gives_family_source_and_the_address_at_full_width(
        data: bytes, expected: tuple[int, int, int]) -> None:
    assert ecs.parse(data) == expected


def test_the_answer_echoes_family_source_and_address_with_the_scope() -> None:
    data = option(1, 24, 0, b"\xc0\x00\x02")
    assert ecs.answer(data, 16) == b"\x00\x08\x00\x07" + option(1, 24, 16, b"\xc0\x00\x02")
    six = option(2, 56, 0, b"\x20\x01\x0d\xb8\x00\x01\x02")
    assert ecs.answer(six, 64) == b"\x00\x08\x00\x0b" + option(2, 56, 64, six[4:])
    assert ecs.answer(option(2, 0, 0, b""), 0) == b"\x00\x08\x00\x04\x00\x02\x00\x00"


@st.composite
def valid(draw: st.DrawFn) -> tuple[int, int, int]:
    family = draw(st.sampled_from([1, 2]))
    bits = 32 if family == 1 else 128
    source = draw(st.integers(0, bits))
    address = draw(st.integers(0, (1 << bits) - 1))
    return family, source, address >> (bits - source) << (bits - source) if source else 0


@settings(max_examples=500)
@given(valid(), st.integers(0, 128))
def test_random_valid_options_parse_to_what_they_carry_and_echo_it(
        fields: tuple[int, int, int], scope: int) -> None:
    family, source, address = fields
    bits = 32 if family == 1 else 128
    octets = (source + 7) // 8
    data = option(family, source, 0, (address >> (bits - 8 * octets)).to_bytes(octets, "big")
                  if octets else b"")
    assert ecs.parse(data) == (family, source, address)
    answered = ecs.answer(data, scope)
    assert answered[:4] == b"\x00\x08" + len(data).to_bytes(2, "big")
    assert answered[4:] == data[:3] + bytes((scope,)) + data[4:]


def model(data: bytes) -> tuple[int, int, int] | None:
    """RFC 7871 section 6 read plainly: None where the server answers FORMERR."""
    if len(data) < 4:
        return None
    family, source, scope = int.from_bytes(data[:2], "big"), data[2], data[3]
    width = {1: 32, 2: 128}.get(family)
    if width is None or source > width or scope != 0:
        return None
    address = data[4:]
    if len(address) != -(-source // 8):
        return None
    bits = "".join(f"{byte:08b}" for byte in address)
    if "1" in bits[source:]:
        return None
    return family, source, int(bits.ljust(width, "0"), 2)


@settings(max_examples=1000)
@given(st.one_of(
    st.binary(max_size=24),
    st.builds(option, st.sampled_from([0, 1, 2, 3]), st.integers(0, 255), st.sampled_from(
        [0, 0, 0, 1, 24]), st.binary(max_size=18))))
def test_any_bytes_parse_as_the_model_says_and_never_raise(data: bytes) -> None:
    got = ecs.parse(data)
    expected = model(data)
    if expected is None:
        assert isinstance(got, str)
    else:
        assert got == expected
