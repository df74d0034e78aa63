"""The loop's side of the control endpoint: starting it, applying its write requests between
turns of the loop, and handing it a new readout when anything changed.

The endpoint serves from threads of its own (`control`); it sees nothing of the loop but the
readouts it is handed, and queues its write requests for the loop.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from healthdns.shared.config import format_endpoint
from healthdns.supervisor import catalog
from healthdns.supervisor.control import ControlServer
from healthdns.supervisor.steering import Child

if TYPE_CHECKING:
    from healthdns.supervisor.arbiter import Supervisor

log = logging.getLogger("healthdns.supervisor")

# Write calls of the control endpoint applied in one turn of the loop; the rest wait for the
# next turn, which comes at once: a flood of them cannot keep the loop from its children.
REQUESTS_PER_TURN = 64


class Endpoint:
    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor

    def start(self) -> None:
        self.sup.steering.restore()
        endpoint = self.sup.cfg.control.endpoint()
        if endpoint is None:
            return
        try:
            self.sup.control = ControlServer(self.sup.cfg.control,
                                             catalog.make_catalog(self.sup.cfg),
                                             self.sup.wakeup_w)
        except OSError as e:
            if self.sup.cfg.control.required:
                raise
            # The default address, taken (by another server on this host, say): DNS does not
            # need the endpoint, so serve without it rather than not at all.
            log.warning("control: cannot listen on %s, the default address: %s; serving "
                        "without a control endpoint (no /healthz, /metrics or overrides). Set "
                        "[control] listen (or --control-listen) to a free ADDR:PORT, or \"\" "
                        "to turn it off", format_endpoint(*endpoint), e.strerror or e)
            return
        self.sup.control.start()

    def handle(self) -> None:
        """Apply the endpoint's queued write requests (at most `REQUESTS_PER_TURN`), then
        answer them; a reload is answered when its check is done (`Reloading.handle`)."""
        if self.sup.control is None:
            return
        answered = []
        for _ in range(REQUESTS_PER_TURN):
            if self.sup.control.requests.empty():
                break
            request = self.sup.control.requests.get()
            if request.op == "reload":
                self.sup.reloading.reload_checks.ask(request.done)
                continue
            answered.append((request, self.sup.steering.apply(request)))
        else:
            self.wake()  # more are queued: the next turn takes them, after the children
        if any(answer.get("status", 200) == 200 for _, answer in answered):
            self.overrides_changed()
            self.show()  # a client that reads /status after its write sees the write
        for request, answer in answered:
            request.done.set_result(answer)

    def wake(self) -> None:
        """Make the next wait of the loop return at once."""
        try:
            self.sup.wakeup_w.send(b"w")
        except BlockingIOError:
            pass  # the buffer is full of wake-ups already

    def overrides_changed(self) -> None:
        """Keep the overrides, and send the signer the health as they now make it: a drained
        address leaves the answers with the next generation."""
        self.sup.keeping.save()
        health = self.sup.steering.health()
        if health is not None:
            self.sup.relay.send_health(health, True)

    def show(self) -> None:
        """Give the endpoint a new readout when anything changed (one reference assignment)."""
        if self.sup.control is None:
            return
        now = self.sup.now()
        self.sup.control.heartbeat = now
        if not (self.sup.steering.dirty or self.sup.counters.changed):
            return
        self.sup.steering.dirty = self.sup.counters.changed = False
        children = [Child(r.index, r.state, r.pid) for r in self.sup.responders]
        self.sup.control.readout = self.sup.steering.readout(self.sup.relay.generation, children,
                                                       self.sup.counters, now)
