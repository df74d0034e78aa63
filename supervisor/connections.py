"""Which connections the control endpoint serves: a total and a per-client cap, and the
longest-idle connection closed first when a new one needs its place.

A connection is *idle* while it waits for the first byte of a request: kept alive after an
answer, or accepted more than `grace` seconds ago (a client sends its first request at once;
a connection whose thread has not run yet, on a busy process, is not idle for that). Idle
connections cost a thread each and nothing else, and a client reconnects at once, so when the
table is full a new connection takes the place of the one idle the longest, as the responders'
TCP does and as nginx reuses its keep-alive connections: a client that holds connections open
between requests (one request every 8 s on each of 128) cannot keep anyone out. A connection
that is reading or answering a request is never closed for another; its request has a
deadline (`httpd.Limits.request_timeout`), so a client that trickles its bytes holds its place
that long at most, and at most `per_client` places.

Clients are counted by IPv4 address or IPv6 /64 (one host's privacy addresses are one client).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(eq=False)
class Connection:
    """One accepted connection, as the table knows it."""

    sock: socket.socket
    client: str  # its `client_key`
    idle_since: float | None = None  # None: a request is being read or answered
    gone: bool = False  # closed for another, or done: its thread stops at its next read


def client_key(address: str) -> str:
    """The client a peer address counts as: itself for IPv4 (mapped or not), its /64 for IPv6."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class Connections:
    """The table of served connections; every method is safe from any thread."""

    def __init__(self, limit: int, per_client: int, grace: float = 0.0,
                 clock: Callable[[], float] = time.monotonic, oldest: bool = False) -> None:
        self.limit = limit
        self.per_client = per_client
        self.grace = grace  # a new connection is idle this long after its admission
        # Make room by closing the oldest connection, idle or not: for connections that
        # may take a second at most anyway (the overflow of `httpd`).
        self.oldest = oldest
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[Connection, None] = {}  # in the order they came
        self._clients: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, new: Connection) -> tuple[bool, list[Connection]]:
        """Whether `new` is served (idle once its grace is over), and the idle connections
        closed to make room: the client's own longest-idle when it is at its cap, else the
        longest-idle of all when the table is full. Not served: no connection that could make
        room is idle."""
        with self._lock:
            closed: list[Connection] = []
            for mine in (True, False):
                full = (self._clients[new.client] >= self.per_client if mine
                        else len(self._open) >= self.limit)
                if not full:
                    continue
                victim = self._longest_idle(new.client if mine else None)
                if victim is None:
                    new.gone = True  # as far as this table knows
                    return False, closed
                self._drop(victim)
                closed.append(victim)
            new.idle_since = self._clock() + self.grace
            new.gone = False
            self._open[new] = None
            self._clients[new.client] += 1
            return True, closed

    def idle(self, conn: Connection) -> bool:
        """`conn` waits for its next request; False: it was closed for another."""
        with self._lock:
            if conn.gone:
                return False
            conn.idle_since = self._clock()
            return True

    def busy(self, conn: Connection) -> bool:
        """`conn` reads a request; False: it was closed for another first."""
        with self._lock:
            if conn.gone:
                return False
            conn.idle_since = None
            return True

    def remove(self, conn: Connection) -> None:
        """`conn` is done: its place is free."""
        with self._lock:
            if conn in self._open:
                self._drop(conn)

    def _longest_idle(self, client: str | None) -> Connection | None:
        mine = (c for c in self._open if client is None or c.client == client)
        if self.oldest:
            return next(mine, None)  # the table keeps the order they came in
        now = self._clock()
        idle = [c for c in mine if c.idle_since is not None and c.idle_since <= now]
        return min(idle, key=lambda c: c.idle_since or 0.0, default=None)

    def _drop(self, conn: Connection) -> None:
        conn.gone = True
        del self._open[conn]
        self._clients[conn.client] -= 1
        if not self._clients[conn.client]:
            del self._clients[conn.client]
