"""What the state file is given, and when: the health while a running prober vouches for it,
every `SAVE_PERIOD` (never per report: reports may come many a second), and the serials of
each generation; and the health a previous process kept, taken at start (the warm start).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from healthdns.supervisor import warm

if TYPE_CHECKING:
    from healthdns.supervisor.arbiter import Supervisor

log = logging.getLogger("healthdns.supervisor")

# The health is written to the state file this often (and at stop), changed or not: its time
# stamp says how current it is, and health that stayed the same for an hour is current too.
SAVE_PERIOD = 1.0


class Keeping:
    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor
        self.saved_at = -SAVE_PERIOD  # when the state file was last written
        self.serials_unsaved = False  # a generation's serials are not in the state file yet

    def next_save(self) -> float | None:
        """When the state file is next to be written; None while nothing is to be kept."""
        return self.saved_at + SAVE_PERIOD if self.due() else None

    def warm_start(self) -> None:
        """Take the health a previous process kept, when young enough: the signer is sent it
        when it starts, before the prober's first round (see `warm`)."""
        kept, path = self.sup.steering.kept_health, self.sup.cfg.control.state_file
        if path is None or kept is None:
            log.info("cold start: %s", "no control.state_file to keep health in"
                     if path is None else self.sup.steering.cold)
            return
        restored, why = warm.load(kept, path, time.time(), warm.max_age(self.sup.cfg),
                                  self.sup.views.signer_ids.keys())
        log.info("%s", why)
        if restored:
            self.sup.steering.warm(restored)
            self.sup.relay.health = self.sup.steering.health()

    def _keeps_health(self) -> bool:
        """Whether the health is worth keeping: a running prober vouches for it."""
        return self.sup.steering.state is not None and bool(self.sup.steering.probed) \
            and self.sup.prober.state == "running"

    def due(self) -> bool:
        """Whether the state file is to be written: the health, or serials not kept yet."""
        return self._keeps_health() or \
            (self.serials_unsaved and self.sup.steering.state is not None)

    def save(self) -> None:
        """Write the overrides, the health and the serials (periodically, never per report:
        reports may come many a second)."""
        self.sup.steering.save()
        self.saved_at = self.sup.now()
        self.serials_unsaved = False

    def keep_serials(self, serials: list[int]) -> None:
        """Keep a generation's serials for the next process. A serial ahead of the clock (more
        than a change a second) is written at once: a process started from the clock would go
        below it even after a crash; others within `SAVE_PERIOD`, when the clock has passed
        them."""
        self.serials_unsaved = True
        if self.sup.steering.state is not None and max(serials, default=0) > time.time():
            self.save()
