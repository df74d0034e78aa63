"""A peer's copy of this instance's view stays in step (peers/sync.py): over random changes
and random fates of the reports (taken, lost on the way, taken but the answer lost, the
peer restarted), every report the peer takes leaves its copy equal to the view the report
was made from; changes and heartbeats stay small; changes that do not apply are never taken."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthdns.peers import sync, wire
from healthdns.peers.book import Peer
from healthdns.peers.sync import Outbox, OutOfStep, Tally
from healthdns.shared.config import PeerSpec

SECRET = b"s" * 32
TARGETS = [f"tcp 127.0.0.{i} 80 1/1/1/1" for i in range(12)]


def receiver() -> Peer:
    spec = PeerSpec(name="a", url="http://127.0.0.1:1", secret=base64.b64encode(SECRET).decode())
    return Peer.of(spec, 100.0)


def deliver(peer: Peer, report: wire.Report) -> int:
    """What the receiving exchange answers: 204 taken, 409 out of step."""
    try:
        peer.accept(report, peer.take(report), 0.0)
    except OutOfStep:
        return sync.RESYNC
    return 204


fates = st.sampled_from(["taken", "taken", "taken", "lost", "answer-lost", "restarted"])
steps = st.lists(st.tuples(st.dictionaries(st.sampled_from(TARGETS), st.booleans(),
                                           max_size=4), fates), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(TARGETS), st.booleans(), min_size=1), steps)
def test_every_copy_taken_is_the_sender_s_view(first: dict[str, bool],
                                               schedule: list[tuple[dict[str, bool], str]]
                                               ) -> None:
    mine, box, peer = Tally.of(first), Outbox(), receiver()
    sent = 0.0
    for changes, fate in schedule:
        box.changed(mine.update({t: up for t, up in changes.items() if t in mine.states}))
        sent += 1
        report, body, taken = box.report("a", sent, mine, False, SECRET)
        assert wire.judge(body, wire.sign(body, SECRET), "a", SECRET, sent, 10.0, 0.0) == report
        if not report.whole:
            assert len(report.states) * 4 <= len(mine.states)
        if fate == "restarted":
            peer = receiver()
        status = 0 if fate == "lost" else deliver(peer, report)
        if status == 204:
            assert peer.view is not None and peer.view.states == mine.states
            assert peer.view.sum == sync.digest(mine.states)
        if box.answered(report, taken, 0 if fate in ("lost", "answer-lost") else status):
            report, body, taken = box.report("a", sent + 0.5, mine, False, SECRET)
            assert report.whole
            assert box.answered(report, taken, deliver(peer, report)) is False
        if fate == "taken":
            assert peer.view is not None and peer.view.states == mine.states


def test_a_heartbeat_is_small_whatever_the_view() -> None:
    mine = Tally.of({f"tcp 10.0.{i >> 8}.{i & 255} 443 1/1/2/2": i % 3 > 0 for i in range(10_000)})
    box = Outbox()
    whole, body, _ = box.report("site-a", 1.8e9, mine, False, SECRET)
    assert whole.whole and len(body) > 250_000
    box.answered(whole, {}, 204)
    beat, body, _ = box.report("site-a", 1.8e9 + 1, mine, False, SECRET)
    assert not beat.whole and beat.states == {} and len(body) < 120
    box.changed(mine.update({"tcp 10.0.0.1 443 1/1/2/2": False}))
    change, body, _ = box.report("site-a", 1.8e9 + 2, mine, False, SECRET)
    assert change.states == {"tcp 10.0.0.1 443 1/1/2/2": False} and len(body) < 160


def test_changes_to_another_view_or_making_another_are_out_of_step() -> None:
    held = Tally.of({"t": True, "u": True})
    other = sync.to_bytes(sync.digest({"t": False}))
    with pytest.raises(OutOfStep):
        held.apply({"t": False}, other, other)
    with pytest.raises(OutOfStep):
        held.apply({"t": False}, sync.to_bytes(held.sum), sync.to_bytes(held.sum))
    with pytest.raises(OutOfStep):
        held.apply({}, sync.to_bytes(held.sum), other)
    assert held.states == {"t": True, "u": True}  # untouched by what was refused
    good = held.apply({"t": False}, sync.to_bytes(held.sum),
                      sync.to_bytes(sync.digest({"t": False, "u": True})))
    assert good.states == {"t": False, "u": True}


def test_the_digest_is_the_same_whatever_order_and_path() -> None:
    one = Tally.of({"a": True, "b": False})
    one.update({"c": True})
    one.update({"a": False})
    assert one.sum == sync.digest({"c": True, "b": False, "a": False})
