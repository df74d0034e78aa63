"""Self-fencing: when every target fails at once, the fault is most likely the prober's own.

A prober whose own network is cut sees every backend fail; reporting them all down would turn a
local fault into an outage of every pool. So from `minimum` targets up, when the latest result
of every target is a failure, the prober fences itself: it keeps the state it last reported,
ignores failures and says so loudly, until any target answers again. To keep the last state
truly unchanged, a flip to down is only reported once some check has passed after it, which in
a fleet of any size is a matter of milliseconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet

from healthdns.prober.state import TargetState

log = logging.getLogger("healthdns.prober")

REMINDER = 10.0  # seconds between two "still fenced" lines


class Fence:
    """Which targets' latest result failed, whether the prober is fenced, and the falls it
    holds back until some check passes."""

    __slots__ = ("active", "enabled", "failing", "held", "minimum", "reminded", "since", "size")

    def __init__(self, size: int, minimum: int) -> None:
        self.size = size
        self.minimum = minimum
        self.enabled = minimum > 0 and size >= minimum
        self.failing: set[str] = set()
        self.active = False
        self.since = 0.0  # when it was entered
        self.reminded = 0.0  # when it last said it is still up
        # Falls not told yet: target -> (its state's since before the fall, log line, fields).
        self.held: dict[str, tuple[float, str, dict[str, object]]] = {}

    def result(self, target: str, ok: bool) -> None:
        if ok:
            self.failing.discard(target)
        else:
            self.failing.add(target)

    @property
    def tripped(self) -> bool:
        """Every target failed its latest check, and the fence is not up yet."""
        return self.enabled and not self.active and len(self.failing) == self.size

    def resize(self, targets: AbstractSet[str], minimum: int) -> None:
        """Sized for a new set of targets, keeping what it knew of the others."""
        self.size, self.minimum = len(targets), minimum
        self.enabled = minimum > 0 and self.size >= minimum
        self.failing &= targets
        self.active = self.active and self.enabled

    def activate(self, now: float) -> None:
        self.active, self.since, self.reminded = True, now, now

    def enter(self, now: float, states: Mapping[str, TargetState]) -> None:
        """Every target failed its latest check: keep the state last told (held falls undone,
        failures counting towards a fall start afresh)."""
        self.activate(now)
        for target, (before, _, _) in self.held.items():
            states[target].restore(True, before)
        self.held.clear()
        for state in states.values():
            if state.up and not state.last:
                state.restore(True, state.since)
        up = sum(s.up for s in states.values())
        log.error("FENCED: every one of the %d targets failed its latest check; the prober's "
                  "own network is most likely at fault. Keeping the last state (%d up) until "
                  "a target answers again", self.size, up)

    def lift(self, label: str, now: float) -> None:
        """`label` answered: the prober's network works again."""
        self.active = False
        log.warning("fence lifted: %s answered after %.1f s fenced; checking normally again",
                    label, now - self.since)

    def remind(self, now: float) -> None:
        if self.active and now - self.reminded >= REMINDER:
            self.reminded = now
            log.error("still FENCED for %.0f s: every one of the %d targets is failing; "
                      "keeping the last state", now - self.since, self.size)

    def release(self, tell: Callable[[str, bool], None]) -> None:
        """A check passed: tell the falls held back."""
        for target, (_, line, fields) in self.held.items():
            log.info("%s", line, extra=fields)
            tell(target, False)
        self.held.clear()
