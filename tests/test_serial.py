"""RFC 1982 serial number arithmetic, and how the signer picks the next serial."""

from __future__ import annotations

import pytest

from healthdns.signer.serial import next_serial, serial_gt


@pytest.mark.parametrize("a,b,greater", [
    (1, 0, True),
    (0, 1, False),
    (5, 5, False),
    (0, 2**32 - 1, True),  # wraps around
    (2**31 - 1, 0, True),
    (2**31 + 1, 0, False),  # more than half the space ahead means behind
    (100, 2**31 + 100, False),  # exactly half apart: undefined, never greater
    (2**31 + 100, 100, False),
])
def test_serial_gt(a: int, b: int, greater: bool) -> None:
    assert serial_gt(a, b) is greater


def test_first_serial_is_the_clock() -> None:
    assert next_serial(None, 1_700_000_000.7) == 1_700_000_000


def test_serial_follows_the_clock_when_it_moves_ahead() -> None:
    assert next_serial(1_700_000_000, 1_700_000_050.0) == 1_700_000_050


def test_serial_increments_when_changes_come_faster_than_the_clock() -> None:
    assert next_serial(1_700_000_000, 1_700_000_000.0) == 1_700_000_001
    assert next_serial(1_700_000_005, 1_700_000_001.0) == 1_700_000_006  # clock stepped back


def test_serial_wraps() -> None:
    assert next_serial(2**32 - 1, 10.0) == 10  # 10 is "greater" than 2**32-1
    assert next_serial(2**32 - 1, 2**32 - 1) == 0
