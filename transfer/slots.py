"""The transfer port's connections: who is let in, and whom a newcomer displaces.

The transfer process holds at most `transfer.max_connections` connections of clients the
transfer rules admit, and at most PER_CLIENT of one address. A configured secondary always
gets a slot: when the port is full it displaces another client's connection (the longest
idle first; one in the middle of a transfer only when none is idle), and when every slot is a
secondary's it is let in over the limit (the per-client limit still bounds it). Any other
newcomer to a full port is turned away, as it always was.

Clients no rule admits never take one of those slots: the transfer process answers their
first query (REFUSED) and closes the connection, and while it waits for that query they sit
in a pool of their own, where a newcomer displaces the oldest.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass

PER_CLIENT = 8  # connections of one address (a secondary opens one or two, per zone at most)


@dataclass
class Holder:
    """One connection: whose it is, and what it is doing."""

    host: str
    secondary: bool
    close: Callable[[], object]  # ends the connection (its task: `Task.cancel`)
    since: float  # when it last finished an answer, or opened
    busy: bool = False  # writing an answer (a transfer) now


class Slots:
    """The connections of one kind; `admit` and `release` them by a key of the caller's."""

    def __init__(self, limit: int, per_client: int = PER_CLIENT, displace: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.per_client = per_client
        self.displace = displace  # when full, any newcomer displaces the oldest (strangers)
        self.clock = clock
        self.held: dict[Hashable, Holder] = {}
        self.per_host: Counter[str] = Counter()
        self.displaced = 0  # counters, never a log line per connection
        self.refused = 0

    def admit(self, key: Hashable, host: str, secondary: bool,
              close: Callable[[], object]) -> bool:
        """Let a new connection in, displacing another if it must; False: turn it away."""
        if self.per_host[host] >= self.per_client:
            self.refused += 1
            return False
        if len(self.held) >= self.limit:
            victim = self._victim(secondary)
            if victim is not None:
                self.displaced += 1
                self.held[victim].close()
                self.release(victim)
            elif not secondary:
                self.refused += 1
                return False
        self.held[key] = Holder(host, secondary, close, self.clock())
        self.per_host[host] += 1
        return True

    def release(self, key: Hashable) -> None:
        holder = self.held.pop(key, None)
        if holder is None:
            return
        self.per_host[holder.host] -= 1
        if not self.per_host[holder.host]:
            del self.per_host[holder.host]

    def busy(self, key: Hashable, busy: bool) -> None:
        """A connection starts (True) or ends (False) writing an answer."""
        holder = self.held.get(key)
        if holder is not None:
            holder.busy = busy
            holder.since = self.clock()

    def _victim(self, secondary: bool) -> Hashable | None:
        """Whom a newcomer displaces from a full port: for a secondary, another client's
        connection, the longest idle first, then the one busy the longest; for a stranger
        (`displace`), the oldest; else no one."""
        if self.displace:
            return min(self.held, key=lambda k: self.held[k].since)
        if not secondary:
            return None
        others = [k for k, h in self.held.items() if not h.secondary]
        if not others:
            return None
        return min(others, key=lambda k: (self.held[k].busy, self.held[k].since))
