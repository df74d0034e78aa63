"""The prober's pure parts: hysteresis and hold-down, and the schedule run on a fake clock."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Iterable

import pytest

from healthdns.prober.checks import Done
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


# (hold_down, results as (time, ok) after an initial up at t=0, times of the flips)
HOLD_DOWN = [
    (0, [(1, F), (2, T), (3, F), (4, T)], [1, 2, 3, 4]),
    (10, [(1, F), (2, T), (3, F), (4, T)], [1]),  # down at 1: held until 11
    (10, [(1, F), (2, T), (11, T), (12, T)], [1, 11]),  # the rise that stood flips at 11
    (10, [(1, F), (2, T), (10.9, T), (11, F)], [1]),  # the streak broke before the hold ended
    (5, [(1, F), (6, T), (7, F), (11, F), (12, T)], [1, 6, 11, 16.5]),
]


@pytest.mark.parametrize(("hold", "results", "flips"), HOLD_DOWN)
def test_hold_down_keeps_a_new_state_for_a_while(hold: float, results: list[tuple[float, bool]],
                                                 flips: list[float]) -> None:
    state = TargetState(1, 1, True, "first", hold_down=hold)
    if flips and flips[-1] == 16.5:  # one more result, to show a held flip waits for a result
        results = [*results, (16.5, T)]
    seen = [t for t, ok in results if state.record(ok, "r", t)]
    assert seen == flips[:len(seen)] and len(seen) == len(flips)


def test_held_says_when_a_flip_waits_for_the_hold_down() -> None:
    state = TargetState(1, 1, True, "first", hold_down=10)
    assert state.record(False, "refused", 1.0)
    assert not state.record(True, "connected", 2.0)
    assert state.held(2.0) and not state.held(11.0)


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


def _spec(interval: float, rise: int = 2, fall: int = 2, timeout: float | None = None,
          hold_down: float = 0.0) -> CheckSpec:
    return CheckSpec(port=80, interval=interval, rise=rise, fall=fall, hold_down=hold_down,
                     timeout=interval / 2 if timeout is None else timeout)


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
# The scheduler on a fake clock: checks answer on the next loop iteration, sleeps only move
# the clock.


class FakeTime:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    async def sleep(self, delay: float) -> None:
        # Let the checks started at this time, and the reports they trigger, run before time
        # moves on: a result takes one loop iteration, its report one more.
        for _ in range(4):
            await asyncio.sleep(0)
        self.t += max(delay, 0.0)


class Script:
    """A fake check: each target answers from its list of results, repeating the last one.

    None in a list means a check that never answers (the scheduler must not start another).
    """

    def __init__(self, clock: FakeTime, results: dict[str, list[bool | None]],
                 at_once: bool = False) -> None:
        self.clock = clock
        self.results = results
        self.at_once = at_once  # call back before start() returns, as a refused connect does
        self.calls: list[tuple[float, str]] = []
        self.in_flight = 0
        self.most_in_flight = 0

    def __call__(self, address: str, spec: CheckSpec, done: Done) -> None:
        target = address  # the tests use the target id as the address
        self.calls.append((self.clock.t, target))
        queue = self.results[target]
        ok = queue.pop(0) if len(queue) > 1 else queue[0]
        if ok is None:
            return
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)

        def answer() -> None:
            self.in_flight -= 1
            done(ok, "connected" if ok else "connection refused")

        if self.at_once:
            answer()
        else:
            asyncio.get_running_loop().call_soon(answer)

    def times(self, target: str, before: float) -> list[float]:
        # Checks due just as the test stops may or may not start: leave them out.
        return [t for t, name in self.calls if name == target and t < before]


Reports = list[tuple[float, dict[str, bool], bool]]


def _run(targets: dict[str, CheckSpec], results: dict[str, list[bool | None]], until: float,
         **options: object) -> tuple[Script, Reports]:
    clock = FakeTime()
    script = Script(clock, results, at_once=bool(options.pop("at_once", False)))
    reports: Reports = []

    async def serve() -> None:
        scheduler = Scheduler({t: (t, spec) for t, spec in targets.items()},
                              lambda states, full: reports.append((clock.t, states, full)),
                              check=script, now=clock.now, sleep=clock.sleep,
                              **options)  # type: ignore[arg-type]
        task = asyncio.create_task(scheduler.serve())
        while clock.t < until or not reports:
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(serve())
    return script, reports


def _close(actual: Iterable[float], expected: Iterable[float]) -> bool:
    return list(actual) == pytest.approx(list(expected))


def _flips(reports: Reports) -> list[tuple[dict[str, bool], bool]]:
    return [(states, full) for _, states, full in reports]


@pytest.mark.parametrize("at_once", [False, True])
def test_each_target_runs_once_per_interval_with_spread_phases(at_once: bool) -> None:
    targets = {t: _spec(1.0) for t in "abcd"} | {"e": _spec(2.0)}
    script, reports = _run(targets, {t: [True] for t in targets}, until=10.5, at_once=at_once)
    assert reports[0] == (0.0, dict.fromkeys(targets, True), True)
    for i, target in enumerate("abcd"):
        offset = (i + 1) / 5
        expected = [0.0] + [offset + k for k in range(11) if offset + k < 10.5]
        assert _close(script.times(target, 10.5), expected)
    assert _close(script.times("e", 10.5), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0])
    assert len(reports) == 1  # nothing flipped


def test_only_flips_are_reported_after_the_full_report() -> None:
    targets = {"x": _spec(1.0, rise=2, fall=2), "y": _spec(1.0, rise=1, fall=1)}
    results: dict[str, list[bool | None]] = {"x": [T, F, F, T, T], "y": [T, F, T]}
    # x runs at 0 (first round), 0.5, 1.5, 2.5, 3.5; y at 0, 1, 2, 3.
    _, reports = _run(targets, results, until=5.0)
    assert _flips(reports) == [
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


def test_flips_closer_than_the_spacing_share_the_next_report() -> None:
    # Ten targets flip 0.1 s apart; with reports at most every 0.35 s they come in bursts.
    targets = {f"t{i}": _spec(1.0, fall=1) for i in range(10)}
    _, reports = _run(targets, {t: [T, F] for t in targets}, until=2.0,
                      report_spacing=0.35, fence_min_targets=0)
    later = [states for _, states, full in reports if not full]
    assert sum(len(s) for s in later) == 10
    assert 2 <= len(later) <= 4


def test_first_round_alone_decides_and_no_targets_still_reports() -> None:
    targets = {"up": _spec(1.0, rise=5), "down": _spec(1.0, fall=5)}
    _, reports = _run(targets, {"up": [T], "down": [F]}, until=0.1)
    assert reports == [(0.0, {"up": True, "down": False}, True)]
    _, reports = _run({}, {}, until=0.0)
    assert reports == [(0.0, {}, True)]


def test_a_check_still_running_is_not_started_again() -> None:
    script, _ = _run({"t": _spec(1.0)}, {"t": [T, None]}, until=5.0)
    assert script.calls == [(0.0, "t"), (1.0, "t")]


def test_at_most_parallel_checks_run_at_once() -> None:
    targets = {f"t{i:02}": _spec(1.0) for i in range(50)}
    script, reports = _run(targets, {t: [T] for t in targets}, until=2.0, parallel=7)
    assert reports[0][1] == dict.fromkeys(targets, True)
    assert script.most_in_flight == 7
    assert len(script.times("t00", 2.0)) == 3  # the first round, then once per interval


def test_hold_down_delays_the_comeback() -> None:
    targets = {"x": _spec(1.0, rise=1, fall=1, hold_down=5.0)}
    # x: up at 0, down at 1.0; passes from 2.0 on, but the hold-down keeps it down until 6.0.
    _, reports = _run(targets, {"x": [T, F, T]}, until=8.0)
    assert _flips(reports) == [({"x": True}, True), ({"x": False}, False), ({"x": True}, False)]
    assert _close((t for t, _, _ in reports), [0.0, 1.0, 6.0])


# --- self-fencing -------------------------------------------------------------------------------


def _fleet(n: int) -> dict[str, CheckSpec]:
    return {f"t{i:02}": _spec(1.0, rise=1, fall=1) for i in range(n)}


def test_when_every_target_fails_the_last_state_is_kept(
        caplog: pytest.LogCaptureFixture) -> None:
    targets = _fleet(10)
    # Everything fails from the first periodic check on (t=0.1 .. 1.0), then t03 answers again.
    results: dict[str, list[bool | None]] = {t: [T, F] for t in targets}
    results["t03"] = [T, F, F, F, T]
    with caplog.at_level(logging.INFO, "healthdns.prober"):
        _, reports = _run(targets, results, until=6.0)
    assert _flips(reports)[0] == (dict.fromkeys(targets, True), True)
    # Nothing went down before the fence rose; once t03 answered (and fenced itself out),
    # the others' failures count again, from scratch: they go down together.
    later = [states for _, states, full in reports if not full]
    assert all(not up for states in later for up in states.values())
    assert "t03" not in {t for states in later for t in states}
    log = caplog.text
    assert "FENCED: every one of the 10 targets failed its latest check" in log
    assert "Keeping the last state (10 up)" in log
    assert "fence lifted: tcp t03:80 answered" in log


def test_a_single_failure_in_a_healthy_fleet_is_reported_at_once() -> None:
    targets = _fleet(10)
    results: dict[str, list[bool | None]] = {t: [T] for t in targets}
    results["t05"] = [T, F]
    _, reports = _run(targets, results, until=2.0)
    assert _flips(reports)[1] == ({"t05": False}, False)
    # t05 fails at 0.6; told as soon as another check passes (t06, at 0.7), not later.
    assert reports[1][0] == pytest.approx(0.7)


def test_fewer_targets_than_the_minimum_are_never_fenced(
        caplog: pytest.LogCaptureFixture) -> None:
    targets = _fleet(3)
    _, reports = _run(targets, {t: [T, F] for t in targets}, until=2.0)
    assert sum(len(states) for _, states, full in reports if not full) == 3
    assert "FENCED" not in caplog.text


def test_every_target_down_in_the_first_round_is_reported_down(
        caplog: pytest.LogCaptureFixture) -> None:
    targets = _fleet(10)
    _, reports = _run(targets, {t: [F] for t in targets}, until=0.5)
    assert reports == [(0.0, dict.fromkeys(targets, False), True)]
    assert "failed in the first round" in caplog.text


# ---------------------------------------------------------------------------------------------
# Checks that take time: a check that overruns its interval (timeout >= interval, common with
# a-healthy-dns's --test-min-interval 1 --test-timeout 1) delays the next one, never skips it.


class TimedTime(FakeTime):
    """A fake clock that delivers each check's result at its own finishing time."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[tuple[float, int, Done, bool]] = []

    async def sleep(self, delay: float) -> None:
        until = self.t + max(delay, 0.0)
        while True:
            for _ in range(4):
                await asyncio.sleep(0)
            self.pending.sort(key=lambda p: p[:2])
            if not self.pending or self.pending[0][0] > until:
                break
            self.t, _, done, ok = self.pending.pop(0)
            done(ok, "connected" if ok else "timed out")
        self.t = until


class Timed:
    """Checks that last `duration` (failures) or 0.01 s (successes) of fake time."""

    def __init__(self, clock: TimedTime, duration: float, results: list[bool]) -> None:
        self.clock, self.duration, self.results = clock, duration, results
        self.starts: list[float] = []
        self.running = 0
        self.most_running = 0

    def __call__(self, address: str, spec: CheckSpec, done: Done) -> None:
        self.starts.append(self.clock.t)
        ok = self.results.pop(0) if len(self.results) > 1 else self.results[0]
        self.running += 1
        self.most_running = max(self.most_running, self.running)

        def finish(ok: bool, reason: str) -> None:
            self.running -= 1
            done(ok, reason)

        if len(self.starts) == 1:  # the first round: no sleep runs until it is over
            asyncio.get_running_loop().call_soon(finish, ok, "connected")
            return
        took = 0.01 if ok else self.duration
        self.clock.pending.append((self.clock.t + took, len(self.starts), finish, ok))


@pytest.mark.parametrize(("interval", "timeout"), [(1.0, 1.0), (1.0, 1.5), (1.0, 0.8)])
def test_a_check_that_overruns_its_interval_is_followed_at_once(interval: float,
                                                                timeout: float) -> None:
    clock = TimedTime()
    # The check times out a hair after its timeout, as a real connect does.
    script = Timed(clock, timeout + 0.001, [T] + [F] * 100)
    reports: Reports = []

    async def serve() -> None:
        scheduler = Scheduler({"t": ("t", _spec(interval, fall=2, timeout=timeout))},
                              lambda states, full: reports.append((clock.t, states, full)),
                              check=script, now=clock.now, sleep=clock.sleep,
                              fence_min_targets=0)
        task = asyncio.create_task(scheduler.serve())
        while clock.t < 30.0:
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(serve())
    starts = [t for t in script.starts if t < 29.0]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # Start to start: the interval, or the check's own duration when that is longer; no
    # round is ever lost, and no two checks of one target ever overlap.
    bound = max(interval, timeout + 0.001) + 0.006  # plus one scheduler tick
    assert max(gaps) <= bound, gaps
    assert script.most_running == 1
    # Down after `fall` failures: the first periodic check fails, the second one ends the
    # streak, within interval x fall + timeout (+ ticks) of the first failure's start.
    down = next(t for t, states, full in reports if not full and states == {"t": False})
    assert down - starts[1] <= interval * 2 + timeout + 0.02


def test_counts_of_checks_left_are_reported_when_they_change() -> None:
    """What the TTL that follows health counts with: each failed check of an up target
    brings it a check nearer its fall; a pass gives the whole fall back; a flip always says
    the new state's count. A steady target says nothing."""
    clock = FakeTime()
    script = Script(clock, {"x": [T, F, F, T, F, F, F, T], "y": [T]})
    counts: list[tuple[float, dict[str, int]]] = []

    async def serve() -> None:
        scheduler = Scheduler({t: (t, _spec(1.0, rise=2, fall=3)) for t in "xy"},
                              lambda states, full: None, check=script, now=clock.now,
                              sleep=clock.sleep, counted=lambda left: counts.append(
                                  (clock.t, left)))
        task = asyncio.create_task(scheduler.serve())
        while clock.t < 8.0:
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(serve())
    # x: F F (2, 1 left), T (the whole fall), F F (2, 1), F flips it down (rise: 2 left),
    # T (1 left), then its last result repeats: T flips it up (the whole fall).
    assert [left for _, left in counts] == [
        {"x": 2}, {"x": 1}, {"x": 3}, {"x": 2}, {"x": 1}, {"x": 2}, {"x": 1}, {"x": 3}]
