"""The TTL that follows health against a model: random check schedules and results for the
targets of a pool, then the served TTL compared with the earliest flip found by running the
prober's own bookkeeping forward (every result adverse, over the phases the next check may
have). Every TTL is that value rounded down to a rung, never above max, never below min."""

from __future__ import annotations

import copy
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from healthdns.prober.state import TargetState
from healthdns.shared.config import TtlRange
from healthdns.signer import healthttl
from healthdns.signer.healthttl import Decider


def earliest_flip(state: TargetState, interval: float, now: float) -> float:
    """Seconds from `now` to the earliest flip of `state` if every result from now on is
    adverse, over the phases the next check may have: found by running the state forward."""
    phases = {0.0}
    if state.hold_down:
        phases.add((state.since + state.hold_down - now) % interval)
    best = math.inf
    for phase in phases:
        trial = copy.copy(state)
        at = now + phase
        while not trial.record(not trial.up, "adverse", at):
            at += interval
        best = min(best, at - now)
    return best


def decider(state: TargetState, interval: float) -> Decider:
    return Decider("192.0.2.1", state.up, interval, state.left(), state.held_until())


@st.composite
def targets(draw: st.DrawFn) -> tuple[list[tuple[TargetState, float]], float]:
    """Targets after a random schedule of results, and the time it ends at."""
    now = 0.0
    out = []
    for _ in range(draw(st.integers(1, 3))):
        interval = draw(st.sampled_from([1.0, 2.0, 5.0, 30.0]))
        hold = draw(st.sampled_from([0.0, 0.0, 7.0, 60.0, 600.0]))
        state = TargetState(draw(st.integers(1, 5)), draw(st.integers(1, 5)),
                            draw(st.booleans()), "first", hold)
        at = 0.0
        for ok in draw(st.lists(st.booleans(), max_size=12)):
            at += interval
            state.record(ok, "", at)
        now = max(now, at)
        out.append((state, interval))
    return out, now


ranges = st.builds(lambda a, b: TtlRange(max=max(a, b), min=min(a, b)),
                   st.integers(1, 4000), st.integers(1, 4000))


@settings(max_examples=400, deadline=None)
@given(targets(), ranges, st.one_of(st.none(), st.floats(0, 5000)))
def test_served_ttl_is_the_earliest_flip_rounded_down_to_a_rung(
        schedule: tuple[list[tuple[TargetState, float]], float], bounds: TtlRange,
        expiry: float | None) -> None:
    states, now = schedule
    expires = None if expiry is None else now + expiry
    model = min([earliest_flip(s, i, now) for s, i in states]
                + ([expires - now] if expires is not None else []))
    ttl, why = healthttl.served(bounds, [decider(s, i) for s, i in states], now, expires)
    rungs = healthttl.ladder(bounds)
    assert ttl in rungs and bounds.min <= ttl <= bounds.max
    clamped = min(max(model, bounds.min), bounds.max)
    assert ttl == max(r for r in rungs if r <= clamped), (model, why)
    assert why.startswith(f"TTL {ttl}: ")


@given(ranges)
def test_the_ladder_is_min_max_and_the_powers_of_two_between(bounds: TtlRange) -> None:
    rungs = healthttl.ladder(bounds)
    assert rungs[0] == bounds.max and rungs[-1] == bounds.min
    assert list(rungs) == sorted(set(rungs), reverse=True)
    assert all(r & (r - 1) == 0 for r in rungs[1:-1])
    assert len(rungs) <= 33


def test_words() -> None:
    bounds = TtlRange(max=300, min=30)
    up = Decider("127.0.0.2", True, 20.0, 3)
    assert healthttl.served(bounds, [up], 0.0) == (
        32, "TTL 32: 127.0.0.2 is 3 failed checks from down")
    down = Decider("127.0.0.3", False, 60.0, 5)
    assert healthttl.served(bounds, [down], 0.0) == (
        128, "TTL 128: 127.0.0.3 is 5 passed checks from up")
    held = Decider("127.0.0.4", True, 5.0, 2, held_until=100.0)
    assert healthttl.served(bounds, [held], 0.0) == (
        64, "TTL 64: 127.0.0.4 is held up for 100 s more")
    assert healthttl.served(bounds, [], 0.0) == (
        300, "TTL 300: nothing checked decides the answer")
    assert healthttl.served(bounds, [up], 0.0, rotating=True) == (
        30, "TTL 30: the answer rotates: each query may get another")
    assert healthttl.served(bounds, [down], 0.0, expires=50.0) == (
        32, "TTL 32: an override of the name ends then")
