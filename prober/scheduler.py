"""When each target is checked, and what its results mean for the rest of healthdns.

The first round checks every target at once (at most `parallel` in flight), so the supervisor
gets a complete picture as soon as the timeouts allow. After it each target is checked once per
interval, start to start, with the targets' phases spread evenly over their intervals so that a
large pool does not connect in bursts. The loop wakes at most once per tick and starts every
check due by then: ten thousand checks a second cost a hundred wake-ups, not ten thousand.

Checks report through a callback (see `checks.Checker`), so a check costs no task of its own.
The clock and the sleep are injected: tests run hours of schedule in milliseconds.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from healthdns.prober import checks, summary
from healthdns.prober.detail import Detail
from healthdns.prober.fence import Fence
from healthdns.prober.reporter import Clock, Counted, Report, Reporter
from healthdns.prober.slots import Slots
from healthdns.prober.state import TargetState
from healthdns.shared.config import CheckSpec

log = logging.getLogger("healthdns.prober")

Check = Callable[[str, CheckSpec, checks.Done], None]  # start one check: (address, spec, done)
Sleep = Callable[[float], Awaitable[None]]
Targets = Mapping[str, tuple[str, CheckSpec]]  # target id -> (checked address, spec)
Names = Mapping[str, Sequence[str]]  # target id -> the names it decides

# Checks in flight at once: bounds sockets and SYN bursts. The prober is given the number the
# configuration sized for its targets (`config.parallel_for`); this is the least it gives.
PARALLEL = 2048
TICK = 0.005  # seconds: checks due within one tick start together
# Checks started in one turn of the loop at most: between two batches the loop reads the
# results that came in, so a first round of ten thousand, or the catch-up after a stall, never
# keeps a completed connect unread until past its deadline.
BATCH = 256
REPORT_SPACING = 0.1  # seconds between two reports at least: a burst of flips is one report
FENCE_MIN_TARGETS = 10
IDLE = 3600.0  # seconds the loop sleeps with nothing to check


def first_due(targets: Targets, start: float) -> list[tuple[float, str]]:
    """The heap of (due time, target id) for the first periodic checks after `start`.

    Target i of n is due at start + interval * (i + 1) / n: evenly spread, and none is checked
    again right after the first round just checked it. Sorted ids make the phases repeatable.
    """
    ids = sorted(targets)
    return [(start + targets[t][1].interval * (i + 1) / len(ids), t) for i, t in enumerate(ids)]


def next_due(due: float, interval: float, now: float) -> float:
    """The next start after one at `due`: one interval later, unless the loop fell behind by
    more than an interval (a stalled process), where catching up would fire a burst."""
    return max(due + interval, now)


class Scheduler:
    """Checks targets forever and reports their health through `report`."""

    def __init__(self, targets: Targets, report: Report, *, names: Names | None = None,
                 zones: summary.Zones | None = None,
                 check: Check | None = None,
                 now: Clock = time.monotonic, sleep: Sleep = asyncio.sleep,
                 parallel: int = PARALLEL, fence_min_targets: int = FENCE_MIN_TARGETS,
                 report_spacing: float = REPORT_SPACING, tick: float = TICK,
                 detail: Detail | None = None, sources: tuple[str, ...] = (),
                 counted: Counted | None = None) -> None:
        self._targets = dict(targets)
        self._sources = sources  # the addresses checks are sent from (`prober.source`)
        self._check = check
        self._now = now
        self._sleep = sleep
        self._tick = tick
        self._states: dict[str, TargetState] = {}
        self._slots = Slots(self._start, parallel)
        self._first_left = 0
        self._first: asyncio.Future[None] | None = None
        self._fence = Fence(len(self._targets), fence_min_targets)
        # Each target's result callback, made once rather than once per check.
        self._callbacks = {t: functools.partial(self._done, t) for t in self._targets}
        # Log labels made once too: at ten thousand targets a first round or a network
        # outage logs a line per target, and none is built per check.
        self._labels = checks.labels(self._targets)
        self._names = names or {}
        self._zones = zones or {}
        self._used = {t: checks.used_by(self._names.get(t, ())) for t in self._targets}
        self._wake = asyncio.Event()  # a report or a new target is due before the loop would wake
        self._reporter = Reporter(report, now, report_spacing, self._wake, counted)
        # Checks left before each target could flip, as last reported (a whole fall, or
        # rise when down, is what the signer assumes of a target never reported).
        self._left: dict[str, int] = {}
        self._detail = detail  # durations and reasons, for the control endpoint
        self._started: dict[str, float] = {}
        self._due: list[tuple[float, str]] = []  # the periodic schedule, a heap
        self._fresh: set[str] = set()  # added by a reconfigure, no result yet
        self._reported = False  # the first round's full report went out

    @property
    def fenced(self) -> bool:
        """Every target failed at once: the results are held, the prober's network suspect."""
        return self._fence.active

    async def serve(self) -> None:
        """Run the first round, send the full report, then check periodically until cancelled."""
        if self._check is not None:
            try:
                await self._serve()
            finally:
                self._slots.stopped = True  # serve() ended: nothing starts again
            return
        checker = checks.Checker(self._sources)
        self._check = checker.start
        try:
            await self._serve()
        finally:
            # Before the checker closes: a drain queued by the last results, or a reconfigure
            # read while the prober stops, would start a check on it.
            self._slots.stopped = True
            await checker.close()

    async def _serve(self) -> None:
        self._reporter.first(await self._first_round())
        self._reported = True
        await self._periodic()

    async def _first_round(self) -> dict[str, bool]:
        self._first = asyncio.get_running_loop().create_future()
        self._first_left = len(self._targets)
        for i, target in enumerate(list(self._targets)):
            if i and not i % BATCH:
                await asyncio.sleep(0)
            if target in self._targets:  # not removed by a reconfigure meanwhile
                self._slots.want(target)
        while self._first_left > 0:  # a reconfigure may add targets to the round meanwhile
            await self._first
            self._first = asyncio.get_running_loop().create_future()
        states = {t: self._states[t].up for t in self._targets}
        log.info("first round: %d of %d targets up", sum(states.values()), len(states))
        summary.log_first_round(states, self._zones)
        if self._fence.tripped:
            self._fence.activate(self._now())
            log.error("every one of the %d targets failed in the first round: is the "
                      "prober's own network down? (fenced; with no earlier state to keep, "
                      "they are reported down)", len(states))
        return states

    async def _periodic(self) -> None:
        # Reconfigure replaces the heap: always read it through self.
        self._due = first_due(self._targets, self._now())
        while True:
            now = self._now()
            for _ in range(BATCH):
                if not self._due or self._due[0][0] > now:
                    break
                due, target = heapq.heappop(self._due)
                self._slots.want(target)
                interval = self._targets[target][1].interval
                heapq.heappush(self._due, (next_due(due, interval, now), target))
            else:  # more are due: start them after the loop has read what came in
                await asyncio.sleep(0)
                continue
            self._fence.remind(now)
            # Nothing to check: idle until a reconfigure (which wakes the loop) adds some.
            wake = self._reporter.send_due(now, self._due[0][0] if self._due else now + IDLE)
            await self._nap(max(wake - now, self._tick))

    async def _nap(self, delay: float) -> None:
        """Sleep `delay`; a long sleep ends early when a report falls due before its end."""
        self._wake.clear()
        if delay <= self._reporter.spacing:
            await self._sleep(delay)  # the common case in a busy prober: no extra tasks
            return
        sleep = asyncio.ensure_future(self._sleep(delay))
        wake = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleep, wake}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleep.cancel()
            wake.cancel()

    # --- running checks, at most `parallel` at once (`Slots`) -----------------------------------

    def _start(self, target: str) -> None:
        address, spec = self._targets[target]
        assert self._check is not None
        if self._detail is not None:
            self._started[target] = self._now()
        self._check(address, spec, self._callbacks[target])

    def _done(self, target: str, ok: bool, reason: str) -> None:
        if not self._slots.done(target):
            return  # a target removed by a reconfigure: its result means nothing
        if self._detail is not None:
            self._detail.record(target, ok, reason, self._now() - self._started[target])
        if target in self._states:
            self._record(target, ok, reason)
        else:
            self._initial(target, ok, reason)

    # --- results ----------------------------------------------------------------------------------

    def _initial(self, target: str, ok: bool, reason: str) -> None:
        spec = self._targets[target][1]
        self._states[target] = TargetState(spec.rise, spec.fall, ok, reason, spec.hold_down)
        self._fence.result(target, ok)
        # Only failures at INFO: a healthy start-up of ten thousand targets is one summary line.
        log.log(logging.DEBUG if ok else logging.INFO, "%s is %s: %s%s",
                self._labels[target], "up" if ok else "down", reason, self._used[target],
                extra=self._fields(target, self._states[target]))
        if target in self._fresh:
            self._joined(target)
            return
        self._first_left -= 1
        if self._first_left == 0 and self._first is not None and not self._first.done():
            self._first.set_result(None)

    def _record(self, target: str, ok: bool, reason: str) -> None:
        now = self._now()
        fence = self._fence
        fence.result(target, ok)
        if fence.active:
            if not ok:
                return  # fenced: a failure proves nothing, the last state stands
            fence.lift(self._labels[target], now)
        state = self._states[target]
        before = state.since
        flipped = state.record(ok, reason, now)
        if flipped:
            self._flipped(target, state, before)
        self._count(target, state, flipped)
        if ok and fence.held:
            fence.release(self._reporter.flip)
        if fence.tripped:
            fence.enter(now, self._states)

    def _count(self, target: str, state: TargetState, flipped: bool) -> None:
        """Report the checks left before `target` could flip when they changed; after a flip
        always, so that no count of the state before outlives it."""
        left = state.left()
        if flipped or left != self._left.get(target, state.fall if state.up else state.rise):
            self._left[target] = left
            self._reporter.count(target, left)

    def _flipped(self, target: str, state: TargetState, before: float) -> None:
        line = describe_flip(self._labels[target], state, self._used[target])
        if target in self._fence.held:  # up before its fall was told: there is nothing to tell
            del self._fence.held[target]
            log.debug("%s (its fall was never reported)", line)
            return
        fields = self._fields(target, state)
        if not state.up and self._fence.enabled:
            self._fence.held[target] = (before, line, fields)  # told once a check passes
            return
        log.info("%s", line, extra=fields)
        self._reporter.flip(target, state.up)

    def _fields(self, target: str, state: TargetState) -> dict[str, object]:
        """A flip line's structured fields, for JSON logs (`extra=`)."""
        return {"target": self._labels[target], "state": "up" if state.up else "down",
                "reason": state.reason, "names": list(self._names.get(target, ()))}

    # --- reconfiguration --------------------------------------------------------------------------

    def reconfigure(self, targets: Targets, *, names: Names | None = None,
                    zones: summary.Zones | None = None, parallel: int | None = None,
                    fence_min_targets: int | None = None) -> None:
        """Check `targets` from now on.

        A target whose id is unchanged keeps its state, hold-down and place in the schedule
        (an id holds a digest of the check's settings, header values aside: a changed check is
        a new target, a check whose header value changed, a rotated token, is not). New
        targets are checked at once, within `parallel`; removed ones are forgotten, and a
        result of theirs still in flight is dropped. Once every new target has a first result,
        one full report of all targets goes out, so that the signer's first generation under
        the new configuration is built from real health; with no new target, at once. A
        reconfigure during the first round just changes what that round checks.
        """
        new = dict(targets)
        removed = self._targets.keys() - new.keys()
        added = [t for t in new if t not in self._targets]
        self._forget(removed)
        self._targets = new
        self._callbacks = {t: self._callbacks.get(t) or functools.partial(self._done, t)
                           for t in new}
        self._labels = checks.labels(new)
        self._names, self._zones = names or {}, zones or {}
        self._used = {t: checks.used_by(self._names.get(t, ())) for t in new}
        self._slots.parallel = self._slots.parallel if parallel is None else parallel
        self._fence.resize(new.keys(), self._fence.minimum if fence_min_targets is None
                           else fence_min_targets)
        log.info("reconfigured: %d targets, %d new, %d removed", len(new), len(added),
                 len(removed))
        if self._first is None:
            return  # not serving yet: the first round will check them all
        if not self._reported:
            self._first_left += len(added)
            for target in added:
                self._slots.want(target)
            if self._first_left == 0 and not self._first.done():
                self._first.set_result(None)
            return
        self._fresh.update(added)
        kept = [(due, t) for due, t in self._due if t in new]
        self._due = kept + first_due({t: new[t] for t in added}, self._now())
        heapq.heapify(self._due)
        for target in added:
            self._slots.want(target)
        self._wake.set()  # the loop may be idle, or asleep until a later due time
        if not self._fresh:
            self._send_full()

    def _forget(self, removed: set[str]) -> None:
        """Drop every trace of `removed`: none of them is ever reported again."""
        self._slots.forget(removed)
        for target in removed:
            if target not in self._states and self._first is not None and not self._reported:
                self._first_left -= 1  # the first round no longer waits for it
            self._fresh.discard(target)
            self._fence.failing.discard(target)
            self._states.pop(target, None)
            self._left.pop(target, None)
            self._fence.held.pop(target, None)
        self._reporter.forget(removed)

    def _joined(self, target: str) -> None:
        self._fresh.discard(target)
        if not self._fresh:
            self._send_full()

    def _send_full(self) -> None:
        # A fall held back by the fence is not told yet: the full report says what was told.
        states = {t: s.up or t in self._fence.held for t, s in self._states.items()}
        log.info("reconfigured: %d of %d targets up, full report sent", sum(states.values()),
                 len(states))
        self._reporter.full(states)


def describe_flip(label: str, state: TargetState, used: str = "") -> str:
    """The log line for a state that just flipped; `used` (from `checks.used_by`) ends it."""
    if state.up:
        count = f"{state.streak} success" + ("es" if state.streak != 1 else "")
        return f"{label} is up ({count}){used}"
    count = f"{state.streak} failure" + ("s" if state.streak != 1 else "")
    return f"{label} is down: {state.reason} ({count}){used}"
