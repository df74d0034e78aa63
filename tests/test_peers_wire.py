"""A peer's report is believed only when signed with the shared secret, fresh, newer than the
latest from that peer, and well formed; and one peer's rate is bounded."""

from __future__ import annotations

import pytest

from healthdns.peers import wire
from healthdns.peers.book import Bucket
from healthdns.peers.wire import Refused, Report

SECRET = b"s" * 32
NOW = 1_800_000_000.0


def judged(body: bytes, signature: str, latest: float = 0.0, now: float = NOW) -> Report:
    return wire.judge(body, signature, "b", SECRET, now, 10.0, latest)


def reason(body: bytes, signature: str, latest: float = 0.0, now: float = NOW) -> str:
    with pytest.raises(Refused) as raised:
        judged(body, signature, latest, now)
    return raised.value.reason


def test_a_signed_fresh_report_is_believed() -> None:
    report = Report("b", NOW - 1, {"tcp 127.0.0.1 80 5/2/2/2": False})
    assert judged(*wire.encode(report, SECRET)) == report


def test_a_signature_under_another_secret_or_of_another_body_is_refused() -> None:
    body, signature = wire.encode(Report("b", NOW, {"t": True}), SECRET)
    assert reason(body, wire.sign(body, b"x" * 32)) == "signature"
    tampered = wire.encode(Report("b", NOW, {"t": False}), SECRET)[0]
    assert reason(tampered, signature) == "signature"
    assert reason(body, "") == "signature"


def test_a_report_outside_the_window_or_not_newer_is_a_replay() -> None:
    for sent in (NOW - 11, NOW + 11):
        assert reason(*wire.encode(Report("b", sent, {}), SECRET)) == "replay"
    body, signature = wire.encode(Report("b", NOW - 1, {}), SECRET)
    assert reason(body, signature, latest=NOW - 1) == "replay"  # the same report again
    assert judged(body, signature, latest=NOW - 2).sent == NOW - 1


def test_a_signed_body_that_does_not_decode_or_names_another_sender_is_malformed() -> None:
    junk = b"\x93\x01\x02"
    assert reason(junk, wire.sign(junk, SECRET)) == "malformed"
    assert reason(*wire.encode(Report("c", NOW, {}), SECRET)) == "malformed"


def test_the_bucket_holds_a_flood_to_its_rate() -> None:
    bucket = Bucket(rate=5.0, tokens=5.0)
    taken = sum(bucket.take(0.0) for _ in range(100))
    assert taken == 5
    assert sum(bucket.take(1.0) for _ in range(100)) == 5  # a second later: five more
