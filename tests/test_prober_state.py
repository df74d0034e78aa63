"""The prober's pure parts: rise/fall hysteresis, and the schedule run on a fake clock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import pytest
from healthdns.prober.scheduler import Scheduler, describe_flip, first_due, next_due
from healthdns.prober.state import TargetState
from healthdns.shared.config import CheckSpec

T, F = True, False

# (rise, fall, results; the first one sets the initial state, flips: indexes of results that flip)
HYSTERESIS = [
    (2, 2, [T, T, T, T], []),
    (2, 2, [T, F, T, F, T], []),  # isolated failures never count up to `fall`
    (2, 2, [T, F, F, F, F], [2]),
    (2, 2, [T, F, F, T, F, T, T], [2, 6]),  # a failure between successes restarts the rise
    (1, 1, [T, F, T, F], [1, 2, 3]),
    (1, 3, [T, F, F, T, F, F, F, T], [6, 7]),
    (3, 1, [F, T, T, F, T, T, T, T], [6]),
    (2, 2, [F, F, F, T, T], [4]),  # the first result alone decides, even against rise/fall
    (5, 5, [F], []),
]


@pytest.mark.parametrize(("rise", "fall", "results", "flips"), HYSTERESIS)
def test_hysteresis(rise: int, fall: int, results: list[bool], flips: list[int]) -> None:
    state = TargetState(rise, fall, results[0], "first")
    seen = [i for i, ok in enumerate(results[1:], 1) if state.record(ok, f"result {i}")]
    assert seen == flips
    assert state.up == _expected_final(results[0], results, flips)


def _expected_final(initial: bool, results: list[bool], flips: list[int]) -> bool:
    return results[flips[-1]] if flips else initial


def test_streak_and_reason_feed_the_log_line() -> None:
    state = TargetState(2, 3, True, "connected")
    for _ in range(2):
        assert not state.record(False, "connection refused")
    assert state.record(False, "timeout after 2 s")
    assert describe_flip("tcp 192.0.2.1:80", state) == (
        "tcp 192.0.2.1:80 is down: timeout after 2 s (3 failures)")
    state.record(True, "connected")
    assert state.record(True, "connected")
    assert describe_flip("tcp [2001:db8::1]:443", state) == "tcp [2001:db8::1]:443 is up (2 successes)"


def _spec(interval: float, rise: int = 2, fall: int = 2) -> CheckSpec:
    return CheckSpec(port=80, interval=interval, timeout=interval / 2, rise=rise, fall=fall)


def test_first_due_spreads_targets_over_their_interval() -> None:
    targets = {t: ("192.0.2.1", _spec(1.0)) for t in "dcba"}
    targets["e"] = ("192.0.2.1", _spec(10.0))
    due = {target: t for t, target in first_due(targets, 100.0)}
    assert due == pytest.approx({"a": 100.2, "b": 100.4, "c": 100.6, "d": 100.8, "e": 110.0})


def test_next_due_keeps_the_phase_but_never_bursts_to_catch_up() -> None:
    assert next_due(10.0, 2.0, 10.001) == 12.0
    assert next_due(10.0, 2.0, 11.9) == 12.0
    assert next_due(10.0, 2.0, 15.0) == 15.0  # stalled for more than an interval


# ---------------------------------------------------------------------------------------------
# The scheduler on a fake clock: checks return at once, sleeps only move the clock.


class FakeTime:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    async def sleep(self, delay: float) -> None:
        # Let the checks launched at this time, and the reports they trigger, run before time
        # moves on: a check task takes one loop iteration, its report one more.
        for _ in range(3):
            await asyncio.sleep(0)
        self.t += max(delay, 0.0)


class Script:
    """A fake check: each target answers from its list of results, repeating the last one."""

    def __init__(self, clock: FakeTime, results: dict[str, list[bool]]) -> None:
        self.clock = clock
        self.results = results
        self.calls: list[tuple[float, str]] = []

    async def __call__(self, address: str, spec: CheckSpec) -> tuple[bool, str]:
        target = address  # the tests use the target id as the address
        self.calls.append((self.clock.t, target))
        queue = self.results[target]
        ok = queue.pop(0) if len(queue) > 1 else queue[0]
        return ok, "connected" if ok else "connection refused"

    def times(self, target: str, before: float) -> list[float]:
        # Checks due just as the test stops may or may not start: leave them out.
        return [t for t, name in self.calls if name == target and t < before]


Reports = list[tuple[float, dict[str, bool], bool]]


async def _serve(targets: dict[str, CheckSpec], script: Script, clock: FakeTime,
                 until: float) -> Reports:
    reports: Reports = []
    scheduler = Scheduler({t: (t, spec) for t, spec in targets.items()},
                          lambda states, full: reports.append((clock.t, states, full)),
                          check=script, now=clock.now, sleep=clock.sleep)
    task = asyncio.create_task(scheduler.serve())
    while clock.t < until or not reports:
        await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return reports


def _run(targets: dict[str, CheckSpec], results: dict[str, list[bool]],
         until: float) -> tuple[Script, Reports]:
    clock = FakeTime()
    script = Script(clock, results)
    return script, asyncio.run(_serve(targets, script, clock, until))


def _close(actual: Iterable[float], expected: Iterable[float]) -> bool:
    return list(actual) == pytest.approx(list(expected))


def test_each_target_runs_once_per_interval_with_spread_phases() -> None:
    targets = {t: _spec(1.0) for t in "abcd"} | {"e": _spec(2.0)}
    script, reports = _run(targets, {t: [True] for t in targets}, until=10.5)
    assert reports[0] == (0.0, dict.fromkeys(targets, True), True)
    for i, target in enumerate("abcd"):
        offset = (i + 1) / 5
        expected = [0.0] + [offset + k for k in range(11) if offset + k < 10.5]
        assert _close(script.times(target, 10.5), expected)
    assert _close(script.times("e", 10.5), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0])
    assert len(reports) == 1  # nothing flipped


def test_only_flips_are_reported_after_the_full_report() -> None:
    targets = {"x": _spec(1.0, rise=2, fall=2), "y": _spec(1.0, rise=1, fall=1)}
    results = {"x": [T, F, F, T, T], "y": [T, F, T]}
    # x runs at 0 (first round), 0.5, 1.5, 2.5, 3.5; y at 0, 1, 2, 3.
    _, reports = _run(targets, results, until=5.0)
    assert [(states, full) for _, states, full in reports] == [
        ({"x": True, "y": True}, True),
        ({"y": False}, False),
        ({"x": False}, False),
        ({"y": True}, False),
        ({"x": True}, False),
    ]
    assert _close((t for t, _, _ in reports), [0.0, 1.0, 1.5, 2.0, 3.5])


def test_flips_in_the_same_iteration_share_one_report() -> None:
    # Both are first due at 1.0: a at 2.0 * 1/2, b at 1.0 * 2/2.
    targets = {"a": _spec(2.0, fall=1), "b": _spec(1.0, fall=1)}
    _, reports = _run(targets, {"a": [T, F], "b": [T, F]}, until=1.5)
    assert reports[1:] == [(1.0, {"a": False, "b": False}, False)]


def test_first_round_alone_decides_and_no_targets_still_reports() -> None:
    targets = {"up": _spec(1.0, rise=5), "down": _spec(1.0, fall=5)}
    _, reports = _run(targets, {"up": [T], "down": [F]}, until=0.1)
    assert reports == [(0.0, {"up": True, "down": False}, True)]
    _, reports = _run({}, {}, until=0.0)
    assert reports == [(0.0, {}, True)]


def test_a_check_still_running_is_not_started_again() -> None:
    clock = FakeTime()
    first = True

    async def hangs_after_the_first_round(address: str, spec: CheckSpec) -> tuple[bool, str]:
        nonlocal first
        calls.append(clock.t)
        if not first:
            await asyncio.Event().wait()
        first = False
        return True, "connected"

    calls: list[float] = []

    async def serve() -> None:
        scheduler = Scheduler({"t": ("t", _spec(1.0))}, lambda states, full: None,
                              check=hangs_after_the_first_round, now=clock.now, sleep=clock.sleep)
        task = asyncio.create_task(scheduler.serve())
        while clock.t < 5.0:
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(serve())
    assert calls == [0.0, 1.0]
