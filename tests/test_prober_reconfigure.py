"""The prober told that the configuration changed (`Scheduler.reconfigure`), on a simulated clock.

A target id holds a digest of its check settings, so a reconfigure is a set of ids: ids that
stay keep their state, hysteresis, hold-down and schedule phase; new ids are checked at once;
removed ids are never reported again; and one full report of every current target follows the
new targets' first results. The model test drives random reconfigure sequences interleaved
with check results and holds the scheduler to all of that against an independent replay of
each target's results through `TargetState`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthdns.prober.checks import Done
from healthdns.prober.scheduler import TICK, Scheduler
from healthdns.prober.state import TargetState
from healthdns.shared.config import CheckSpec

LATENCY = 0.03  # every check answers this long after it starts


def _spec(interval: float, rise: int, fall: int, hold_down: float = 0.0) -> CheckSpec:
    return CheckSpec(port=80, interval=interval, timeout=interval / 2, rise=rise, fall=fall,
                     hold_down=hold_down)


# The universe of target ids a configuration picks from; the test uses the id as the address.
SPECS = {
    "a": _spec(1.0, 2, 2), "b": _spec(1.0, 1, 1), "c": _spec(0.5, 3, 2),
    "d": _spec(0.5, 1, 3, hold_down=1.2), "e": _spec(2.0, 2, 1), "f": _spec(1.0, 1, 2),
}


class Sim:
    """Discrete-event time: `sleep` waits for its timer, `run_until` fires timers in order and
    lets the loop settle after each, so every event happens at its exact simulated time."""

    def __init__(self) -> None:
        self.t = 0.0
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self.t

    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (when, next(self._seq), action))

    async def sleep(self, delay: float) -> None:
        woken = asyncio.get_running_loop().create_future()
        self.at(self.t + max(delay, 0.0), lambda: woken.done() or woken.set_result(None))
        await woken

    async def run_until(self, end: float) -> None:
        await settle()
        while self._timers and self._timers[0][0] <= end:
            when, _, action = heapq.heappop(self._timers)
            self.t = max(self.t, when)
            action()
            await settle()
        self.t = max(self.t, end)


async def settle() -> None:
    for _ in range(8):
        await asyncio.sleep(0)


@dataclass
class World:
    """Everything that happened, in order: ("start"|"result"|"report"|"reconfigure", ...)."""

    sim: Sim
    results: dict[str, list[bool]]
    events: list[tuple[object, ...]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def check(self, address: str, spec: CheckSpec, done: Done) -> None:
        n = self.counts[address] = self.counts.get(address, 0) + 1
        queue = self.results[address]
        ok = queue[(n - 1) % len(queue)]
        self.events.append(("start", self.sim.t, address))

        def answer() -> None:
            self.events.append(("result", self.sim.t, address, ok))
            done(ok, "connected" if ok else "connection refused")

        self.sim.at(self.sim.t + LATENCY, answer)

    def report(self, states: dict[str, bool], full: bool) -> None:
        self.events.append(("report", self.sim.t, dict(states), full))


def _targets(ids: frozenset[str]) -> dict[str, tuple[str, CheckSpec]]:
    return {t: (t, SPECS[t]) for t in sorted(ids)}


async def _drive(world: World, first: frozenset[str],
                 steps: list[tuple[float, frozenset[str]]], tail: float,
                 **options: object) -> Scheduler:
    sim = world.sim
    options = {"report_spacing": 0.0, "parallel": 100, **options}
    scheduler = Scheduler(_targets(first), world.report, check=world.check, now=sim.now,
                          sleep=sim.sleep, **options)  # type: ignore[arg-type]
    task = asyncio.create_task(scheduler.serve())
    world.events.append(("reconfigure", 0.0, first))
    await sim.run_until(LATENCY)  # the first round
    for delay, ids in steps:
        await sim.run_until(sim.t + delay)
        world.events.append(("reconfigure", sim.t, ids))
        scheduler.reconfigure(_targets(ids))
        await settle()
    await sim.run_until(sim.t + tail)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return scheduler


@dataclass
class Life:
    """One incarnation of a target: from the configuration that added it to the one that
    removed it; the oracle replays its results through a `TargetState` of its own."""

    born: float
    starts: list[float] = field(default_factory=list)
    oracle: TargetState | None = None


def _check_model(world: World, end: float) -> None:
    current: frozenset[str] = frozenset()
    lives: dict[str, Life] = {}
    dead: list[tuple[str, Life]] = []
    told: dict[str, bool] = {}
    pending: set[str] = set()  # new targets without a first result yet
    fulls_since = 0  # full reports since the latest reconfigure
    started = False
    for event in world.events:
        kind, t = event[0], event[1]
        if kind == "reconfigure":
            ids = event[2]
            assert isinstance(ids, frozenset)
            if started:  # one full report per reconfigure, unless the next came first
                assert fulls_since == (0 if pending else 1), (t, pending)
            started = True
            for gone in current - ids:
                dead.append((gone, lives.pop(gone)))
                told.pop(gone, None)
            pending = (pending & ids) | (ids - current)
            for new in ids - current:
                lives[new] = Life(born=t)
            current, fulls_since = ids, 0
        elif kind == "start":
            target = event[2]
            assert isinstance(target, str) and target in current, event
            lives[target].starts.append(t)
        elif kind == "result":
            target, ok = event[2], event[3]
            assert isinstance(target, str) and isinstance(ok, bool)
            life = lives.get(target)
            if life is None or not life.starts or life.starts[0] > t - LATENCY + 1e-9:
                continue  # a removed target's check still in flight: meaningless now
            if life.oracle is None:
                spec = SPECS[target]
                life.oracle = TargetState(spec.rise, spec.fall, ok, "", spec.hold_down)
                pending.discard(target)
            else:
                # Whatever the scheduler told before this result matches the replay so far
                # (a new target may flip before the full report that first tells it).
                if target in told:
                    assert told[target] == life.oracle.up, (t, target)
                life.oracle.record(ok, "", t)
        else:  # a report
            states, full = event[2], event[3]
            assert isinstance(states, dict)
            assert set(states) <= current, (t, set(states) - current)  # removed: never told
            if full:
                assert not pending, (t, pending)  # only after every new target's result
                assert set(states) == current
                fulls_since += 1
            for target, up in states.items():
                oracle = lives[target].oracle
                assert oracle is not None and up == oracle.up, (t, target, up)
            told = dict(states) if full else {**told, **states}
    assert fulls_since == 1 and told == {t: life.oracle.up for t, life in lives.items()
                                         if life.oracle is not None}
    for target, life in lives.items():
        _check_schedule(target, life, end)
    for target, life in dead:
        _check_schedule(target, life, None)


def _check_schedule(target: str, life: Life, end: float | None) -> None:
    """Checked at once when added, then once per interval from a spread phase: never a round
    lost, never an extra check (a burst) when some other target was added or removed."""
    interval = SPECS[target].interval
    starts = life.starts
    assert starts and starts[0] == pytest.approx(life.born), (target, life.born, starts)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    if gaps:
        # (from the first round, the phase starts when the round is over)
        assert 0 < gaps[0] <= interval + LATENCY + TICK + 1e-9, (target, starts)
    for gap in gaps[1:]:
        assert interval - TICK - 1e-9 <= gap <= interval + TICK + 1e-9, (target, starts)
    if end is not None and end - life.born > 2 * interval:
        assert starts[-1] >= end - interval - TICK - 1e-9, (target, starts, end)


subsets = st.frozensets(st.sampled_from(sorted(SPECS)))
steps = st.lists(st.tuples(st.integers(min_value=1, max_value=300).map(lambda n: n / 100),
                           subsets), min_size=1, max_size=8)
results = st.fixed_dictionaries({t: st.lists(st.booleans(), min_size=1, max_size=8)
                                 for t in SPECS})


@settings(max_examples=60, deadline=None)
@given(first=subsets, steps=steps, results=results)
def test_reconfigure_model(first: frozenset[str], steps: list[tuple[float, frozenset[str]]],
                           results: dict[str, list[bool]]) -> None:
    world = World(Sim(), results)
    tail = 3.0
    asyncio.run(_drive(world, first, steps, tail, fence_min_targets=0))
    _check_model(world, world.sim.t)


class Forgetful(Scheduler):
    """The bug the model must catch: a reconfigure that restarts kept targets' streaks."""

    def reconfigure(self, targets: Mapping[str, tuple[str, CheckSpec]], **options: Any) -> None:
        super().reconfigure(targets, **options)
        for state in self._states.values():
            state.restore(state.up, state.since)


def test_the_model_sees_a_lost_streak(monkeypatch: pytest.MonkeyPatch) -> None:
    """`a` (fall 2) fails at 0.56, the same config is sent again at 0.63, `a` fails again at
    1.56: down. A scheduler that forgot the first failure keeps it up, and the model says so."""
    results = {"a": [True, False, False, False], "b": [True]}
    steps = [(0.6, frozenset("ab"))]
    world = World(Sim(), results)
    asyncio.run(_drive(world, frozenset("ab"), steps, 3.0, fence_min_targets=0))
    _check_model(world, world.sim.t)
    monkeypatch.setattr(f"{__name__}.Scheduler", Forgetful)
    world = World(Sim(), results)
    asyncio.run(_drive(world, frozenset("ab"), steps, 3.0, fence_min_targets=0))
    with pytest.raises(AssertionError):
        _check_model(world, world.sim.t)


def _run(first: frozenset[str], steps: list[tuple[float, frozenset[str]]],
         results: dict[str, list[bool]], **options: object) -> tuple[World, Scheduler]:
    world = World(Sim(), results)
    scheduler = asyncio.run(_drive(world, first, steps, 2.0, **options))
    return world, scheduler


def _reports(world: World) -> list[tuple[float, dict[str, bool], bool]]:
    return [(e[1], e[2], e[3]) for e in world.events if e[0] == "report"]  # type: ignore[misc]


def test_no_new_target_sends_the_full_report_at_once() -> None:
    world, _ = _run(frozenset("abc"), [(1.0, frozenset("ab"))], {t: [True] for t in SPECS})
    fulls = [(t, states) for t, states, full in _reports(world) if full]
    assert fulls == [(LATENCY, dict.fromkeys("abc", True)), (1.0 + LATENCY,
                                                             dict.fromkeys("ab", True))]


def test_new_targets_wait_for_their_first_result_and_respect_parallel() -> None:
    first = frozenset("a")
    world, _ = _run(first, [(0.5, frozenset("abcdef"))], {t: [True] for t in SPECS},
                    parallel=2)
    fulls = [t for t, _, full in _reports(world) if full]
    # Five new targets, two at a time: three waves of checks after the reconfigure at 0.53.
    assert fulls[1] == pytest.approx(LATENCY + 0.5 + 3 * LATENCY)
    in_flight, most = 0, 0
    for event in world.events:
        in_flight += {"start": 1, "result": -1}.get(str(event[0]), 0)
        most = max(most, in_flight)
    assert most == 2


def test_the_fence_follows_the_new_count(caplog: pytest.LogCaptureFixture) -> None:
    """With a minimum of 6 targets, six failing at once are fenced; cut to five, the same
    failures are plain failures and are reported."""
    every = frozenset(SPECS)
    down = {t: [True] + [False] * 20 for t in SPECS}
    with caplog.at_level(logging.INFO, "healthdns.prober"):
        world, _ = _run(every, [], down, fence_min_targets=6)
    assert "FENCED" in caplog.text
    assert not [s for _, s, full in _reports(world) if not full]
    caplog.clear()
    with caplog.at_level(logging.INFO, "healthdns.prober"):
        world, _ = _run(every, [(0.01, every - {"f"})], down, fence_min_targets=6)
    assert "FENCED" not in caplog.text
    told_down = {t for _, s, full in _reports(world) if not full for t, up in s.items()
                 if not up}
    assert told_down == every - {"f"}


def test_labels_and_used_by_follow_the_new_config(caplog: pytest.LogCaptureFixture) -> None:
    world = World(Sim(), {"b": [True, False]})

    async def run() -> None:
        sim = world.sim
        scheduler = Scheduler({}, world.report, check=world.check, now=sim.now,
                              sleep=sim.sleep, report_spacing=0.0, fence_min_targets=0)
        task = asyncio.create_task(scheduler.serve())
        await sim.run_until(0.5)
        scheduler.reconfigure({"b": ("b", SPECS["b"])}, names={"b": ["www.example.test"]})
        await sim.run_until(2.0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.INFO, "healthdns.prober"):
        asyncio.run(run())
    # An empty prober idles, then checks what a reconfigure gave it.
    assert [s for _, s, full in _reports(world) if full] == [{}, {"b": True}]
    assert "tcp b:80 is down: connection refused (1 failure); used by www.example.test" \
        in caplog.text
    down = next(r for r in caplog.records if r.getMessage().startswith("tcp b:80 is down"))
    assert down.names == ["www.example.test"]  # type: ignore[attr-defined]  # JSON field


# --- in a process, over a real pipe ---------------------------------------------------------------


def _prober_view(ports: dict[str, int]) -> bytes:
    from healthdns.shared import config
    from healthdns.supervisor import views

    records = {name: {"pool": {"addresses": ["127.0.0.1"],
                               "check": {"port": port, "interval": 0.2, "timeout": 0.1}}}
               for name, port in ports.items()}
    cfg = config.from_mapping({"zones": [{"origin": "example.test",
                                          "nameservers": ["ns1.example.net"],
                                          "records": records}]})
    return views.split(cfg).prober


def test_a_prober_process_reports_in_full_after_a_reconfigure() -> None:
    import multiprocessing
    import socket

    from healthdns.shared import child, messages

    def full_report(conn: Any) -> dict[str, bool]:
        while conn.poll(10):
            message = messages.decode_from("prober", conn.recv_bytes())
            if isinstance(message, messages.Probes):
                continue  # the per-target detail for the control endpoint
            assert isinstance(message, messages.HealthReport)
            if message.full:
                return message.states
        raise AssertionError("no full report within 10 s")

    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(3)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        sockets[0].listen()
        sockets[2].listen()  # sockets[1] is bound, not listening: refused
        up, refused, added = (s.getsockname()[1] for s in sockets)
        ctx = multiprocessing.get_context("spawn")
        parent, child_end = ctx.Pipe()
        messages.send(parent, messages.Start(0, _prober_view({"up": up, "down": refused})))
        process = ctx.Process(target=child.enter, args=("prober", child_end))
        process.start()
        child_end.close()
        try:
            first = full_report(parent)
            assert sorted(first.values()) == [False, True]
            messages.send(parent, messages.Reconfigure(
                _prober_view({"up": up, "down": refused, "new": added})))
            second = full_report(parent)
            assert len(second) == 3 and {k: second[k] for k in first} == first
            assert second[next(k for k in second if k not in first)] is True
            messages.send(parent, messages.Reconfigure(_prober_view({"up": up})))
            third = full_report(parent)  # no new target: at once
            assert third == {k: v for k, v in first.items() if v}
        finally:
            messages.send(parent, messages.Bye())
            process.join(5)
            if process.exitcode is None:
                process.kill()
        assert process.exitcode == 0
