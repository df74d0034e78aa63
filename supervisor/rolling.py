"""Rolling the responders: after a reload that changes what they serve with, every responder is
replaced, one at a time, so that the service never has fewer of them ready than before.

A new process (the successor) binds next to the old one (SO_REUSEPORT) and loads the snapshot;
only once it is ready is the old one told to stop (`Bye`), and that one drains its sockets
before it closes them (it retires).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from healthdns.shared import messages
from healthdns.supervisor import ports
from healthdns.supervisor.roles import RESPONDER
from healthdns.supervisor.slot import STOP_DEADLINE, Slot

log = logging.getLogger("healthdns.supervisor")

class Rolling:
    def __init__(self, responders: list[Slot], spawn: Callable[[Slot], None],
                 send: Callable[[Slot, bytes], None], retired: Callable[[Slot], None],
                 now: Callable[[], float], stopping: Callable[[], bool]) -> None:
        """`responders`: the supervisor's list of the serving slots, changed in place;
        `retired`: called with a slot whose process stops serving (its totals are kept)."""
        self.responders = responders
        self.spawn, self.send, self.retired = spawn, send, retired
        self.now, self.stopping = now, stopping
        self.pending: list[int] = []  # responder slots still to replace, in order
        self.successor: Slot | None = None  # the new process of the slot being replaced
        self.retiring: list[Slot] = []  # replaced responders, draining before they exit
        self.handover_warned = False  # see `ports.tcp_handover`

    def roll(self, count: int) -> None:
        """Replace every responder, and keep `count` of them."""
        for slot in self.responders[count:]:
            self.retire(slot)
        del self.responders[count:]
        self.pending = list(range(count))
        if not self.handover_warned:  # once: the reason holds for every later roll too
            self.handover_warned = ports.warn_tcp_handover()
        if self.successor is None:
            self._next()

    def _next(self) -> None:
        if not self.pending or self.stopping():
            return
        self.successor = Slot(RESPONDER, self.pending.pop(0))
        self.spawn(self.successor)

    def promote(self, slot: Slot) -> None:
        """The successor is ready: it takes its slot, the one it replaces stops."""
        self.successor = None
        log.info("%s (pid %s) ready, taking over", slot.name, slot.pid)
        if slot.index < len(self.responders):
            self.retire(self.responders[slot.index])
            self.responders[slot.index] = slot
        elif slot.index == len(self.responders):
            self.responders.append(slot)
        else:  # a slot a later reload removed
            self.retire(slot)
        self._next()

    def retire(self, slot: Slot) -> None:
        """Tell a replaced responder to stop; it is reaped, not respawned."""
        self.retired(slot)
        slot.state, slot.restart_at = "retiring", self.now() + STOP_DEADLINE
        self.send(slot, messages.encode(messages.Bye()))
        self.retiring.append(slot)
        log.info("%s (pid %s) replaced; it drains its sockets and stops", slot.name, slot.pid)

    def watch(self) -> None:
        """Kill a retiring responder that did not stop in time."""
        now = self.now()
        for slot in self.retiring:
            if slot.restart_at <= now and slot.process is not None:
                log.warning("%s (pid %d) did not stop in time; killing it", slot.name,
                            slot.process.pid)
                slot.process.kill()
                slot.restart_at = now + STOP_DEADLINE

    def reaped(self, slot: Slot, code: int | None) -> bool:
        """Whether an ended process was a retiring one: then it is done with."""
        if slot not in self.retiring:
            return False
        self.retiring.remove(slot)
        log.info("%s exited with code %s, replaced", slot.name, code)
        return True
