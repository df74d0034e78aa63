"""The health of one target: up or down, with rise/fall hysteresis and an optional hold-down.

Pure bookkeeping: no I/O, and time only as the `now` the caller passes. The scheduler feeds
results in the order the checks ran, so tests can drive every threshold with plain lists.
"""

from __future__ import annotations

import math


class TargetState:
    """Whether one target is up.

    A state exists from the first result on, and that single result decides it: at start-up there
    is no history to weigh, and the supervisor should learn a full picture after one round. From
    then on an up target goes down only after `fall` failures in a row, and a down target comes up
    only after `rise` successes in a row, so one lost SYN does not flap a pool.

    With a hold-down, a state is kept at least `hold_down` seconds after it changed: a flip that
    is due sooner waits, and happens with the first result after the hold-down if the streak
    still stands. The first result is not a change, so a target down at start may come up at once.
    """

    __slots__ = ("fall", "hold_down", "last", "reason", "rise", "since", "streak", "up")

    def __init__(self, rise: int, fall: int, ok: bool, reason: str,
                 hold_down: float = 0.0) -> None:
        self.rise = rise
        self.fall = fall
        self.hold_down = hold_down
        self.up = ok
        self.last = ok  # the latest result
        self.streak = 1  # how many results in a row equal `last` (for the log line)
        self.reason = reason  # why the latest check passed or failed
        self.since = -math.inf  # when `up` last changed

    def record(self, ok: bool, reason: str, now: float = 0.0) -> bool:
        """Add one result; True if it flips the state."""
        self.streak = self.streak + 1 if ok == self.last else 1
        self.last = ok
        self.reason = reason
        if ok == self.up or self.streak < (self.rise if ok else self.fall):
            return False
        if now - self.since < self.hold_down:
            return False  # held down: the streak goes on counting
        self.up = ok
        self.since = now
        return True

    def restore(self, up: bool, since: float) -> None:
        """Go back to a state that was never reported (self-fencing), counting afresh."""
        self.up = self.last = up
        self.since = since
        self.streak = 0

    def left(self) -> int:
        """Checks in a row that flip the state: `fall` (`rise` when down), less the streak
        that already counts toward it; 1 when a flip waits for its hold-down to end."""
        need = self.fall if self.up else self.rise
        if self.last == self.up:
            return need
        return max(need - self.streak, 1)

    def held_until(self) -> float:
        """Until when a hold-down keeps the state (0.0 without one)."""
        return self.since + self.hold_down if self.hold_down else 0.0

    def held(self, now: float) -> bool:
        """True while a flip is due but the hold-down keeps the state."""
        due = self.last != self.up and self.streak >= (self.rise if self.last else self.fall)
        return due and now - self.since < self.hold_down
