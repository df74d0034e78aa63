"""The prober's detail for the control endpoint: kinds of failure, histogram buckets, chunks."""

from __future__ import annotations

import pytest

from healthdns.prober.detail import CHUNK, Detail, kind
from healthdns.shared import messages


@pytest.mark.parametrize(("reason", "expected"), [
    ("timeout after 2 s", "timeout"),
    ("connection refused", "refused"),
    ("Connection refused", "refused"),
    ("status 503", "status"),
    ("body mismatch: no 'ok'", "body"),
    ("TLS error: wrong version number", "tls"),
    ("certificate error: self-signed certificate", "tls"),
    ("network is unreachable", "other"),
])
def test_failures_are_sorted_by_kind(reason: str, expected: str) -> None:
    assert kind(reason) == expected


def test_durations_fall_in_their_buckets_and_only_changes_are_sent() -> None:
    detail = Detail()
    detail.record("t", True, "connected", 0.0004)
    detail.record("t", False, "timeout after 2 s", 2.0)
    detail.record("t", False, "timeout after 2 s", 99.0)
    [[row]] = detail.changed()
    assert row.buckets[0] == 1  # <= 1 ms
    assert row.buckets[messages.PROBE_BUCKETS.index(2.5)] == 1
    assert row.buckets[-1] == 1  # above every bound
    assert (row.failures, row.reason, row.seconds) == ({"timeout": 2}, "timeout after 2 s",
                                                       pytest.approx(101.0004))
    assert detail.changed() == []  # nothing checked since


def test_large_probers_send_chunks_under_the_frame_limit() -> None:
    detail = Detail()
    for i in range(CHUNK * 2 + 1):
        detail.record(f"https 192.0.2.{i % 250} 443 5/2/2/2 {i:012x}", False,
                      "body mismatch: no match for " + "x" * 500, 1.0)
    chunks = detail.changed()
    assert [len(c) for c in chunks] == [CHUNK, CHUNK, 1]
    assert max(len(messages.encode(messages.Probes(c))) for c in chunks) < 64 << 10
