"""The parallel slots: at most `parallel` checks in flight at once, the others waiting in order.

A target is busy from the moment a check of it is due until that check ends. A target that falls
due again while busy (a check whose timeout is at least its interval) is overdue: its next check
starts as soon as the one in flight ends, never piling up and never losing a round. A check of a
target removed meanwhile is an orphan: its slot is freed when it ends, its result means nothing.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable


class Slots:
    """Which targets have a check in flight or waiting for a slot; `launch` starts one."""

    def __init__(self, launch: Callable[[str], None], parallel: int) -> None:
        self._launch = launch
        self.parallel = parallel
        self.in_flight = 0
        self.busy: set[str] = set()  # targets with a check in flight or waiting for a slot
        self.overdue: set[str] = set()  # busy targets whose next check fell due meanwhile
        self.waiting: collections.deque[str] = collections.deque()
        self.orphans: dict[str, int] = {}  # checks in flight for removed targets
        self.stopped = False  # the checker is closed: nothing starts again
        self._draining = False

    def want(self, target: str) -> None:
        """A check of `target` is due: start it, or queue it for a slot."""
        if self.stopped:
            return
        if target in self.busy:
            self.overdue.add(target)
            return
        self.busy.add(target)
        if self.in_flight < self.parallel:
            self._start(target)
        else:
            self.waiting.append(target)

    def done(self, target: str) -> bool:
        """A check of `target` ended: its slot is free. False for an orphan's."""
        self.in_flight -= 1
        if self.orphans.get(target):
            self.orphans[target] -= 1
            if not self.orphans[target]:
                del self.orphans[target]
            self._drain_soon()
            return False
        if target in self.overdue:
            self.overdue.discard(target)
            self.waiting.append(target)  # still busy: its next check is due already
        else:
            self.busy.discard(target)
        self._drain_soon()
        return True

    def forget(self, removed: set[str]) -> None:
        """Drop `removed`: a check of theirs in flight becomes an orphan, a waiting one goes."""
        waiting = set(self.waiting)
        for target in removed:
            if target in self.busy and target not in waiting:
                self.orphans[target] = self.orphans.get(target, 0) + 1  # in flight
            self.busy.discard(target)
            self.overdue.discard(target)
        self.waiting = collections.deque(t for t in self.waiting if t not in removed)

    def _start(self, target: str) -> None:
        self.in_flight += 1
        self._launch(target)

    def _drain_soon(self) -> None:
        if self.waiting and not self._draining:
            # Started from the loop, not from here: a check may call back before `start`
            # returns, and starting the next one inside it would recurse.
            self._draining = True
            asyncio.get_running_loop().call_soon(self._drain)

    def _drain(self) -> None:
        self._draining = False
        while self.waiting and self.in_flight < self.parallel and not self.stopped:
            self._start(self.waiting.popleft())
