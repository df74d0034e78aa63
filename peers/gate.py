"""The peers listener's door: every connection is counted from its accept (a TLS handshake
included) until it is gone, against a total cap and a cap per client address. One over either
is closed at once and counted; a handshake that does not finish within HANDSHAKE is dropped,
and an idle keep-alive connection is closed by the HTTP server (`KEEPALIVE`), so no client
pins a place for long.

The listening socket is accepted here rather than by an asyncio server: the client's address
is known at accept, before any TLS, so a stranger's connections over the cap cost no
handshake."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable

log = logging.getLogger("healthdns.peers")

PER_CLIENT = 8  # connections one address may hold: a peer needs one, a few while one stalls
SPARE = 16  # places over PER_CLIENT per configured peer, in the total cap
HANDSHAKE = 5.0  # seconds a TLS handshake may take
KEEPALIVE = 15.0  # seconds an idle connection is kept: over the peers' interval, so reused


def caps(peers: int) -> tuple[int, int]:
    """The total cap and the cap per client address for `peers` configured peers."""
    return PER_CLIENT * peers + SPARE, PER_CLIENT


class Gate:
    """The connections held, by client address; those refused, all told."""

    def __init__(self, total: int, per_client: int, interval: float,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.total, self.per_client, self.interval, self.now = total, per_client, interval, now
        self.held: Counter[str] = Counter()
        self.refused = 0
        self.said = -1e9

    def admit(self, address: str) -> bool:
        if self.held.total() >= self.total or self.held[address] >= self.per_client:
            self.refused += 1
            self._say("refused a connection from %s: %d held in all, %d from it (caps %d and "
                      "%d); %d refused so far", address, self.held.total(),
                      self.held[address], self.total, self.per_client, self.refused)
            return False
        self.held[address] += 1
        return True

    def _say(self, text: str, *args: object) -> None:
        """Once an interval at most: a flood costs no log storm."""
        now = self.now()
        if now - self.said >= max(1.0, self.interval):
            self.said = now
            log.warning("peers listener: " + text, *args)

    def release(self, address: str) -> None:
        self.held[address] -= 1
        if self.held[address] <= 0:
            del self.held[address]

    async def serve(self, sock: socket.socket, factory: Callable[[], asyncio.Protocol],
                    context: ssl.SSLContext | None) -> None:
        """Accept on `sock` until cancelled; each admitted connection is served by a protocol
        from `factory`, in a task of its own while its handshake runs."""
        loop = asyncio.get_running_loop()
        sock.setblocking(False)
        handshakes: set[asyncio.Task[None]] = set()
        try:
            while True:
                try:
                    conn, peer = await loop.sock_accept(sock)
                except OSError as e:  # out of open files: the listener waits, and goes on
                    self._say("accepting failed: %s", e)
                    await asyncio.sleep(0.1)
                    continue
                address = peer[0]
                if not self.admit(address):
                    conn.close()
                    continue
                task = loop.create_task(self._open(conn, address, factory, context))
                handshakes.add(task)
                task.add_done_callback(handshakes.discard)
        finally:
            for task in list(handshakes):
                task.cancel()

    async def _open(self, conn: socket.socket, address: str,
                    factory: Callable[[], asyncio.Protocol],
                    context: ssl.SSLContext | None) -> None:
        held = Held(factory(), lambda: self.release(address))
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: held, conn, ssl=context,
                ssl_handshake_timeout=HANDSHAKE if context is not None else None)
        except asyncio.CancelledError:
            conn.close()
            held.done()
            raise
        except (OSError, TimeoutError):  # the handshake failed or timed out: the protocol
            conn.close()  # never saw the connection, so never sees it lost
            held.done()


class Held(asyncio.Protocol):
    """The HTTP server's protocol for one connection, and its place given back, once, when
    the connection is gone."""

    def __init__(self, inner: asyncio.Protocol, release: Callable[[], None]) -> None:
        self.inner, self.release = inner, release
        self.released = False

    def done(self) -> None:
        if not self.released:
            self.released = True
            self.release()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.done()
        self.inner.connection_lost(exc)
