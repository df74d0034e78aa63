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
import collections
import functools
import heapq
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from healthdns.prober import checks, summary
from healthdns.prober.detail import Detail
from healthdns.prober.fence import Fence
from healthdns.prober.state import TargetState
from healthdns.shared.config import CheckSpec

log = logging.getLogger("healthdns.prober")

Check = Callable[[str, CheckSpec, checks.Done], None]  # start one check: (address, spec, done)
Report = Callable[[dict[str, bool], bool], None]  # (states, full)
Clock = Callable[[], float]
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
FENCE_REMINDER = 10.0  # seconds between two "still fenced" lines
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
                 detail: Detail | None = None) -> None:
        self._targets = dict(targets)
        self._report = report
        self._check = check
        self._now = now
        self._sleep = sleep
        self._parallel = parallel
        self._spacing = report_spacing
        self._tick = tick
        self._states: dict[str, TargetState] = {}
        self._busy: set[str] = set()  # targets with a check in flight or waiting for a slot
        self._overdue: set[str] = set()  # busy targets whose next check fell due meanwhile
        self._waiting: collections.deque[str] = collections.deque()
        self._in_flight = 0
        self._draining = False
        self._first_left = 0
        self._first: asyncio.Future[None] | None = None
        self._fence = Fence(len(self._targets), fence_min_targets)
        self._fence_min = fence_min_targets
        # Each target's result callback, made once rather than once per check.
        self._callbacks = {t: functools.partial(self._done, t) for t in self._targets}
        # Log labels made once too: at ten thousand targets a first round or a network
        # outage logs a line per target, and none is built per check.
        self._labels = checks.labels(self._targets)
        self._names = names or {}
        self._zones = zones or {}
        self._used = {t: checks.used_by(self._names.get(t, ())) for t in self._targets}
        # Down flips not told yet: (since, log line, its fields).
        self._held: dict[str, tuple[float, str, dict[str, object]]] = {}
        self._reminded = 0.0
        self._changed: dict[str, bool] = {}  # flips not reported yet
        self._flush_at: asyncio.Handle | None = None  # a report coming in this iteration
        self._flushed = -math.inf  # when the latest report went
        self._wake = asyncio.Event()  # a report falls due before the loop would wake
        self._detail = detail  # durations and reasons, for the control endpoint
        self._started: dict[str, float] = {}
        self._due: list[tuple[float, str]] = []  # the periodic schedule, a heap
        self._fresh: set[str] = set()  # added by a reconfigure, no result yet
        self._orphans: dict[str, int] = {}  # checks in flight for removed targets
        self._reported = False  # the first round's full report went out
        self._stopped = False  # serve() ended: its checker is closed, nothing starts again

    async def serve(self) -> None:
        """Run the first round, send the full report, then check periodically until cancelled."""
        if self._check is not None:
            try:
                await self._serve()
            finally:
                self._stopped = True
            return
        checker = checks.Checker()
        self._check = checker.start
        try:
            await self._serve()
        finally:
            # Before the checker closes: a drain queued by the last results, or a reconfigure
            # read while the prober stops, would start a check on it.
            self._stopped = True
            await checker.close()

    async def _serve(self) -> None:
        self._report(await self._first_round(), True)
        self._reported = True
        self._flushed = self._now()
        await self._periodic()

    async def _first_round(self) -> dict[str, bool]:
        self._first = asyncio.get_running_loop().create_future()
        self._first_left = len(self._targets)
        for i, target in enumerate(list(self._targets)):
            if i and not i % BATCH:
                await asyncio.sleep(0)
            if target in self._targets:  # not removed by a reconfigure meanwhile
                self._want(target)
        while self._first_left > 0:  # a reconfigure may add targets to the round meanwhile
            await self._first
            self._first = asyncio.get_running_loop().create_future()
        states = {t: self._states[t].up for t in self._targets}
        log.info("first round: %d of %d targets up", sum(states.values()), len(states))
        summary.log_first_round(states, self._zones)
        if self._fence.tripped:
            self._fence.active, self._fence.since = True, self._now()
            self._reminded = self._fence.since
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
                self._want(target)
                interval = self._targets[target][1].interval
                heapq.heappush(self._due, (next_due(due, interval, now), target))
            else:  # more are due: start them after the loop has read what came in
                await asyncio.sleep(0)
                continue
            self._remind(now)
            # Nothing to check: idle until a reconfigure (which wakes the loop) adds some.
            wake = self._due[0][0] if self._due else now + IDLE
            if self._changed and self._flush_at is None:  # a report waits for its spacing
                if now >= self._flushed + self._spacing:
                    self._flush()
                else:
                    wake = min(wake, self._flushed + self._spacing)
            await self._nap(max(wake - now, self._tick))

    async def _nap(self, delay: float) -> None:
        """Sleep `delay`; a long sleep ends early when a report falls due before its end."""
        self._wake.clear()
        if delay <= self._spacing:
            await self._sleep(delay)  # the common case in a busy prober: no extra tasks
            return
        sleep = asyncio.ensure_future(self._sleep(delay))
        wake = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleep, wake}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleep.cancel()
            wake.cancel()

    # --- running checks, at most `parallel` at once -----------------------------------------------

    def _want(self, target: str) -> None:
        if self._stopped:
            return
        if target in self._busy:
            # The previous check overran its interval (a timeout >= the interval): the next
            # one starts as soon as it ends, never piling up and never losing a round.
            self._overdue.add(target)
            return
        self._busy.add(target)
        if self._in_flight < self._parallel:
            self._start(target)
        else:
            self._waiting.append(target)

    def _start(self, target: str) -> None:
        address, spec = self._targets[target]
        self._in_flight += 1
        assert self._check is not None
        if self._detail is not None:
            self._started[target] = self._now()
        self._check(address, spec, self._callbacks[target])

    def _done(self, target: str, ok: bool, reason: str) -> None:
        self._in_flight -= 1
        if self._orphans.get(target):
            self._orphan_done(target)
            return
        if self._detail is not None:
            self._detail.record(target, ok, reason, self._now() - self._started[target])
        if target in self._overdue:
            self._overdue.discard(target)
            self._waiting.append(target)  # still busy: its next check is due already
        else:
            self._busy.discard(target)
        if self._waiting and not self._draining:
            # Started from the loop, not from here: a check may call back before `start`
            # returns, and starting the next one inside it would recurse.
            self._draining = True
            asyncio.get_running_loop().call_soon(self._drain)
        if target in self._states:
            self._record(target, ok, reason)
        else:
            self._initial(target, ok, reason)

    def _drain(self) -> None:
        self._draining = False
        while self._waiting and self._in_flight < self._parallel and not self._stopped:
            self._start(self._waiting.popleft())

    def _orphan_done(self, target: str) -> None:
        """A check of a target removed by a reconfigure ended: its slot is free, its result
        means nothing."""
        self._orphans[target] -= 1
        if not self._orphans[target]:
            del self._orphans[target]
        if self._waiting and not self._draining:
            self._draining = True
            asyncio.get_running_loop().call_soon(self._drain)

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
            self._unfence(target, now)
        state = self._states[target]
        before = state.since
        if state.record(ok, reason, now):
            self._flipped(target, state, before)
        if ok and self._held:
            self._release()
        if fence.tripped:
            self._enter_fence(now)

    def _flipped(self, target: str, state: TargetState, before: float) -> None:
        line = describe_flip(self._labels[target], state, self._used[target])
        if target in self._held:  # back up before its fall was told: there is nothing to tell
            del self._held[target]
            log.debug("%s (its fall was never reported)", line)
            return
        fields = self._fields(target, state)
        if not state.up and self._fence.enabled:
            self._held[target] = (before, line, fields)  # told once some check passes after it
            return
        log.info("%s", line, extra=fields)
        self._queue(target, state.up)

    def _fields(self, target: str, state: TargetState) -> dict[str, object]:
        """A flip line's structured fields, for JSON logs (`extra=`)."""
        return {"target": self._labels[target], "state": "up" if state.up else "down",
                "reason": state.reason, "names": list(self._names.get(target, ()))}

    def _release(self) -> None:
        for target, (_, line, fields) in self._held.items():
            log.info("%s", line, extra=fields)
            self._queue(target, False)
        self._held.clear()

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
        self._parallel = self._parallel if parallel is None else parallel
        self._refence(self._fence_min if fence_min_targets is None else fence_min_targets)
        log.info("reconfigured: %d targets, %d new, %d removed", len(new), len(added),
                 len(removed))
        if self._first is None:
            return  # not serving yet: the first round will check them all
        if not self._reported:
            self._first_left += len(added)
            for target in added:
                self._want(target)
            if self._first_left == 0 and not self._first.done():
                self._first.set_result(None)
            return
        self._fresh.update(added)
        kept = [(due, t) for due, t in self._due if t in new]
        self._due = kept + first_due({t: new[t] for t in added}, self._now())
        heapq.heapify(self._due)
        for target in added:
            self._want(target)
        self._wake.set()  # the loop may be idle, or asleep until a later due time
        if not self._fresh:
            self._send_full()

    def _forget(self, removed: set[str]) -> None:
        """Drop every trace of `removed`: none of them is ever reported again."""
        waiting = set(self._waiting)
        for target in removed:
            if target in self._busy and target not in waiting:
                self._orphans[target] = self._orphans.get(target, 0) + 1  # in flight
            if target not in self._states and self._first is not None and not self._reported:
                self._first_left -= 1  # the first round no longer waits for it
            for holder in (self._busy, self._overdue, self._fresh, self._fence.failing):
                holder.discard(target)
            self._states.pop(target, None)
            self._held.pop(target, None)
            self._changed.pop(target, None)
        self._waiting = collections.deque(t for t in self._waiting if t not in removed)
        if not self._changed and self._flush_at is not None:
            self._flush_at.cancel()  # it would carry only removed targets: nothing to say
            self._flush_at = None

    def _refence(self, minimum: int) -> None:
        """A fence sized for the new targets, keeping what the old one knew of the others."""
        old, self._fence_min = self._fence, minimum
        self._fence = Fence(len(self._targets), minimum)
        self._fence.failing = old.failing & self._targets.keys()
        self._fence.active = old.active and self._fence.enabled
        self._fence.since = old.since

    def _joined(self, target: str) -> None:
        self._fresh.discard(target)
        if not self._fresh:
            self._send_full()

    def _send_full(self) -> None:
        # A fall held back by the fence is not told yet: the full report says what was told.
        states = {t: s.up or t in self._held for t, s in self._states.items()}
        log.info("reconfigured: %d of %d targets up, full report sent", sum(states.values()),
                 len(states))
        self._report(states, True)

    # --- self-fencing -----------------------------------------------------------------------------

    def _enter_fence(self, now: float) -> None:
        fence = self._fence
        fence.active, fence.since, self._reminded = True, now, now
        for target, (before, _, _) in self._held.items():
            self._states[target].restore(True, before)
        self._held.clear()
        for state in self._states.values():
            if state.up and not state.last:  # failures counting towards a fall start afresh
                state.restore(True, state.since)
        up = sum(s.up for s in self._states.values())
        log.error("FENCED: every one of the %d targets failed its latest check; the prober's "
                  "own network is most likely at fault. Keeping the last state (%d up) until "
                  "a target answers again", fence.size, up)

    def _unfence(self, target: str, now: float) -> None:
        self._fence.active = False
        log.warning("fence lifted: %s answered after %.1f s fenced; checking normally again",
                    self._labels[target], now - self._fence.since)

    def _remind(self, now: float) -> None:
        if self._fence.active and now - self._reminded >= FENCE_REMINDER:
            self._reminded = now
            log.error("still FENCED for %.0f s: every one of the %d targets is failing; "
                      "keeping the last state", now - self._fence.since, self._fence.size)

    # --- reports ----------------------------------------------------------------------------------

    def _queue(self, target: str, up: bool) -> None:
        self._changed[target] = up
        if self._flush_at is not None:
            return  # joins the report already due
        # The first flip after a quiet spell goes out at once (flips of checks that finish in
        # the same loop iteration join it); in a burst, one report per spacing carries them
        # all, sent by the loop, which wakes for it.
        if self._now() >= self._flushed + self._spacing:
            self._flush_at = asyncio.get_running_loop().call_soon(self._flush)
        else:
            self._wake.set()

    def _flush(self) -> None:
        self._flush_at = None
        self._flushed = self._now()
        changed, self._changed = self._changed, {}
        self._report(changed, False)


def describe_flip(label: str, state: TargetState, used: str = "") -> str:
    """The log line for a state that just flipped; `used` (from `checks.used_by`) ends it."""
    if state.up:
        count = f"{state.streak} success" + ("es" if state.streak != 1 else "")
        return f"{label} is up ({count}){used}"
    count = f"{state.streak} failure" + ("s" if state.streak != 1 else "")
    return f"{label} is down: {state.reason} ({count}){used}"
