"""Reports to the supervisor: every target's state after the first round and after a reconfigure,
and the flips in between, batched so that a burst of flips is one report.

The first flip after a quiet spell goes out at once (flips of checks that finish in the same loop
iteration join it); in a burst, one report per `spacing` carries them all, sent by the loop,
which wakes for it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

Report = Callable[[dict[str, bool], bool], None]  # (states, full)
Counted = Callable[[dict[str, int]], None]  # checks left before each target could flip
Clock = Callable[[], float]


class Reporter:
    """Flips not reported yet, and when the next report may go."""

    def __init__(self, report: Report, now: Clock, spacing: float, wake: asyncio.Event,
                 counted: Counted | None = None) -> None:
        self._report = report
        self._counted = counted
        self._left: dict[str, int] = {}  # counts not reported yet
        self._now = now
        self.spacing = spacing  # seconds between two reports at least
        self._wake = wake  # set when a report falls due before the loop would wake
        self._changed: dict[str, bool] = {}  # flips not reported yet
        self._flush_at: asyncio.Handle | None = None  # a report coming in this iteration
        self._flushed = -math.inf  # when the latest report went

    def first(self, states: dict[str, bool]) -> None:
        """The first round's full report: the flips after it are spaced from it."""
        self._report(states, True)
        self._flushed = self._now()

    def full(self, states: dict[str, bool]) -> None:
        self._report(states, True)

    def flip(self, target: str, up: bool) -> None:
        self._changed[target] = up
        self._due()

    def count(self, target: str, left: int) -> None:
        """A target's checks left before it could flip changed: reported with the flips."""
        if self._counted is None:
            return
        self._left[target] = left
        self._due()

    def _due(self) -> None:
        if self._flush_at is not None:
            return  # joins the report already due
        if self._now() >= self._flushed + self.spacing:
            self._flush_at = asyncio.get_running_loop().call_soon(self._flush)
        else:
            self._wake.set()

    def send_due(self, now: float, wake: float) -> float:
        """Send the flips that waited for their spacing if it is over; when the loop wakes next
        at the latest, `wake` or the end of that spacing."""
        if (self._changed or self._left) and self._flush_at is None:  # one waits its spacing
            if now >= self._flushed + self.spacing:
                self._flush()
            else:
                return min(wake, self._flushed + self.spacing)
        return wake

    def forget(self, removed: set[str]) -> None:
        """Flips of `removed` are never reported."""
        for target in removed:
            self._changed.pop(target, None)
            self._left.pop(target, None)
        if not self._changed and not self._left and self._flush_at is not None:
            self._flush_at.cancel()  # it would carry only removed targets: nothing to say
            self._flush_at = None

    def _flush(self) -> None:
        self._flush_at = None
        self._flushed = self._now()
        changed, self._changed = self._changed, {}
        left, self._left = self._left, {}
        if changed:
            self._report(changed, False)
        if left and self._counted is not None:  # after the flips, which reset counts
            self._counted(left)
