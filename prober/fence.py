"""Self-fencing: when every target fails at once, the fault is most likely the prober's own.

A prober whose own network is cut sees every backend fail; reporting them all down would turn a
local fault into an outage of every pool. So from `minimum` targets up, when the latest result
of every target is a failure, the prober fences itself: it keeps the state it last reported,
ignores failures and says so loudly, until any target answers again. To keep the last state
truly unchanged, a flip to down is only reported once some check has passed after it, which in
a fleet of any size is a matter of milliseconds.
"""

from __future__ import annotations


class Fence:
    """Which targets' latest result failed, and whether the prober is fenced."""

    __slots__ = ("active", "enabled", "failing", "since", "size")

    def __init__(self, size: int, minimum: int) -> None:
        self.size = size
        self.enabled = minimum > 0 and size >= minimum
        self.failing: set[str] = set()
        self.active = False
        self.since = 0.0  # when it was entered

    def result(self, target: str, ok: bool) -> None:
        if ok:
            self.failing.discard(target)
        else:
            self.failing.add(target)

    @property
    def tripped(self) -> bool:
        """Every target failed its latest check, and the fence is not up yet."""
        return self.enabled and not self.active and len(self.failing) == self.size
