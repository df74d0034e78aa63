"""When each target is checked, and what its results mean for the rest of healthdns.

The first round checks every target at once, so the supervisor gets a complete picture as soon
as the timeouts allow. After it each target is checked once per interval, start to start, with
the targets' phases spread evenly over their intervals so that a large pool does not connect in
bursts. The clock and the sleep are injected: tests run hours of schedule in milliseconds.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from healthdns.prober import checks
from healthdns.prober.state import TargetState
from healthdns.shared.config import CheckSpec

log = logging.getLogger("healthdns.prober")

Check = Callable[[str, CheckSpec], Awaitable[checks.Result]]
Report = Callable[[dict[str, bool], bool], None]  # (states, full)
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
Targets = Mapping[str, tuple[str, CheckSpec]]  # target id -> (address, spec)

PARALLEL = 512  # checks in flight at once: bounds sockets and SYN bursts, not the schedule


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

    def __init__(self, targets: Targets, report: Report, *, check: Check = checks.probe,
                 now: Clock = time.monotonic, sleep: Sleep = asyncio.sleep,
                 parallel: int = PARALLEL) -> None:
        self._targets = dict(targets)
        self._report = report
        self._check = check
        self._now = now
        self._sleep = sleep
        self._slots = asyncio.Semaphore(parallel)
        self._states: dict[str, TargetState] = {}
        self._busy: set[str] = set()  # targets with a check in flight
        self._changed: dict[str, bool] = {}  # flips not reported yet

    async def serve(self) -> None:
        """Run the first round, send the full report, then check periodically until cancelled."""
        self._report(await self._first_round(), True)
        await self._periodic()

    async def _first_round(self) -> dict[str, bool]:
        async with asyncio.TaskGroup() as group:
            for target in self._targets:
                group.create_task(self._first(target))
        states = {t: self._states[t].up for t in self._targets}
        log.info("first round: %d of %d targets up", sum(states.values()), len(states))
        return states

    async def _first(self, target: str) -> None:
        address, spec = self._targets[target]
        ok, reason = await self._attempt(target)
        self._states[target] = TargetState(spec.rise, spec.fall, ok, reason)
        # Only failures at INFO: a healthy start-up of ten thousand targets is one summary line.
        log.log(logging.DEBUG if ok else logging.INFO, "%s is %s: %s",
                checks.label(address, spec), "up" if ok else "down", reason)

    async def _periodic(self) -> None:
        queue = first_due(self._targets, self._now())
        if not queue:
            await asyncio.Event().wait()  # nothing to check: idle until cancelled
        async with asyncio.TaskGroup() as group:  # a check that raises is a bug: stop with it
            while True:
                now = self._now()
                while queue[0][0] <= now:
                    due, target = heapq.heappop(queue)
                    self._launch(group, target)
                    interval = self._targets[target][1].interval
                    heapq.heappush(queue, (next_due(due, interval, now), target))
                await self._sleep(queue[0][0] - now)

    def _launch(self, group: asyncio.TaskGroup, target: str) -> None:
        if target in self._busy:
            # Only when the semaphore kept the previous check waiting: skip rather than pile up.
            log.debug("%s: previous check still running, skipped", target)
            return
        self._busy.add(target)
        group.create_task(self._check_once(target))

    async def _check_once(self, target: str) -> None:
        try:
            ok, reason = await self._attempt(target)
        finally:
            self._busy.discard(target)
        self._record(target, ok, reason)

    async def _attempt(self, target: str) -> checks.Result:
        address, spec = self._targets[target]
        async with self._slots:
            return await self._check(address, spec)

    def _record(self, target: str, ok: bool, reason: str) -> None:
        state = self._states[target]
        if not state.record(ok, reason):
            return
        address, spec = self._targets[target]
        log.info("%s", describe_flip(checks.label(address, spec), state))
        if not self._changed:
            # The first flip of this loop iteration: flips of checks that finish in the same
            # iteration join it, and none waits longer than one iteration.
            asyncio.get_running_loop().call_soon(self._flush)
        self._changed[target] = state.up

    def _flush(self) -> None:
        changed, self._changed = self._changed, {}
        self._report(changed, False)


def describe_flip(label: str, state: TargetState) -> str:
    """The log line for a state that just flipped."""
    if state.up:
        count = f"{state.streak} success" + ("es" if state.streak != 1 else "")
        return f"{label} is up ({count})"
    count = f"{state.streak} failure" + ("s" if state.streak != 1 else "")
    return f"{label} is down: {state.reason} ({count})"
