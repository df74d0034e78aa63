"""The health of one target: up or down, with rise/fall hysteresis.

Pure bookkeeping: no I/O and no clock. The scheduler feeds results in the order the checks ran,
so tests can drive every threshold with plain lists of booleans.
"""

from __future__ import annotations


class TargetState:
    """Whether one target is up.

    A state exists from the first result on, and that single result decides it: at start-up there
    is no history to weigh, and the supervisor should learn a full picture after one round. From
    then on an up target goes down only after `fall` failures in a row, and a down target comes up
    only after `rise` successes in a row, so one lost SYN does not flap a pool.
    """

    __slots__ = ("fall", "last", "reason", "rise", "streak", "up")

    def __init__(self, rise: int, fall: int, ok: bool, reason: str) -> None:
        self.rise = rise
        self.fall = fall
        self.up = ok
        self.last = ok  # the latest result
        self.streak = 1  # how many results in a row equal `last` (for the log line)
        self.reason = reason  # why the latest check passed or failed

    def record(self, ok: bool, reason: str) -> bool:
        """Add one result; True if it flips the state."""
        self.streak = self.streak + 1 if ok == self.last else 1
        self.last = ok
        self.reason = reason
        if ok == self.up or self.streak < (self.rise if ok else self.fall):
            return False
        self.up = ok
        return True
