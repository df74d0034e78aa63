"""DNS over TCP (RFC 7766): framing, pipelining and connection management for one responder.

Each connection is an asyncio Protocol: a read may carry several length-prefixed queries (or
a piece of one); all complete ones are answered from the pre-rendered table and their
responses leave in one write. Connections are kept in an ordered dict by last activity, so
the longest-idle one is always first: a new connection beyond the limit evicts it (as gdnsd
does, rather than locking new clients out), and one periodic sweep closes the idle
ones, with an idle timeout that shrinks as the table fills. Only a complete query counts as
activity: a client that sends half a query and stalls is idle.

A client that sends queries and does not read the answers holds at most UNSENT_MAX octets of
answers and one read (READ_SIZE) of queries in the responder: past the bound its queries wait
unanswered, and the connection is read no more, until the client has read enough of its
answers. Meanwhile it is idle, so the sweep closes it if it never reads again.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from healthdns.responder.wire import TCP, V6
from healthdns.shared.framing import FRAME_MAX, HEADER

log = logging.getLogger("healthdns.responder")
# The idle timeout when the table is full, as a share of the configured one: an operator who
# allows long idle periods keeps proportionally more under pressure (10 s: 1 s).
IDLE_FLOOR = 0.1
PRESSURE = 0.5  # the fraction of the limit above which the idle timeout starts to shrink
SWEEP_PERIOD = 0.1  # seconds between two idle sweeps: one timer per responder, not per client
ACCEPT_BATCH = 64  # connections accepted per wakeup at most (see Tcp.listen)
# Octets of answers a connection may have waiting to be sent: past it, its queries wait. 200
# clients that pipelined queries and read nothing held 1.3 MiB each without it.
UNSENT_MAX = 32 * 1024
READ_SIZE = 16 * 1024  # octets read from a connection at once: the queries one read holds
FD_RESERVE = 64  # descriptors kept for the listeners, the pipe, the UDP thread and logging

Answer = Callable[[bytes, int], "bytes | None"]  # (query, transport: see query.TCP, V6)
Bug = Callable[[bytes], None]
DEFER_ACCEPT = 5  # seconds the kernel holds a connection that has sent nothing
DRAIN_READ_TIMEOUT = 0.2  # a queued connection's query has arrived already
Guarded = Callable[[bytes, int, bytes], "bytes | None"]  # (query, transport, client address)


@dataclass(frozen=True)
class Limits:
    max_connections: int  # per responder
    max_per_client: int  # per responder, per IPv4 address or IPv6 /64
    idle_timeout: float  # seconds, while the table is at most PRESSURE full
    backlog: int  # the listen() queue of each TCP socket


def idle_timeout(count: int, limit: int, full: float) -> float:
    """The idle timeout with `count` of `limit` connections open.

    The full timeout up to PRESSURE of the limit, then linearly down to IDLE_FLOOR of it at
    the limit: idle clients make room for active ones before anyone has to be evicted.
    """
    floor = full * IDLE_FLOOR
    used = count / limit
    if used <= PRESSURE:
        return full
    return max(floor, floor + (full - floor) * (1.0 - used) / (1.0 - PRESSURE))


def client_key(peer: object) -> str:
    """The unit of the per-client limit: the IPv4 address, or the IPv6 /64 (what one site
    usually holds), so that one host cannot spread over its own prefix."""
    host = peer[0] if isinstance(peer, tuple) and peer else ""
    if not isinstance(host, str) or ":" not in host:
        return str(host)
    try:
        return socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0])[:8].hex()
    except OSError:
        return host


def raise_fd_limit(needed: int) -> int:
    """Raise RLIMIT_NOFILE towards `needed` descriptors (up to the hard limit); returns the
    number of connections the limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(hard, want)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:
            log.warning("cannot raise the open files limit to %d: %s", target, e)
    if soft == resource.RLIM_INFINITY:
        return needed
    return max(1, min(needed, soft - FD_RESERVE))


class Tcp:
    """Every TCP connection of one responder; `listen` is the entry point."""

    def __init__(self, answer: Answer, bug: Bug, limits: Limits,
                 clock: Callable[[], float] = time.monotonic,
                 guarded: Guarded | None = None) -> None:
        self.answer = answer
        self.guarded = guarded  # cookies (and RRL, which spares TCP): told the client address
        self.bug = bug
        self.limits = limits
        self.max_connections = limits.max_connections
        self.clock = clock
        self.open: OrderedDict[Connection, float] = OrderedDict()  # oldest activity first
        self.per_client: dict[str, int] = {}
        self.evicted = 0  # counters, never a log line per connection
        self.refused = 0
        self.timed_out = 0
        self.errors = 0
        self.servers: list[asyncio.Server] = []
        self._sweeper: asyncio.TimerHandle | None = None
        # Every connection reads into this buffer and copies what it got at once (one event
        # loop): no read buffer per connection, and READ_SIZE at most a read.
        self.read_buffer = memoryview(bytearray(READ_SIZE))

    async def listen(self, sock: socket.socket) -> None:
        """Serve `sock` (bound); the first call also starts the sweep and the fd limit."""
        loop = asyncio.get_running_loop()
        if not self.servers:
            allowed = raise_fd_limit(self.limits.max_connections)
            if allowed < self.limits.max_connections:
                log.warning("server.tcp_max_connections %d exceeds the open files limit: "
                            "%d connections per responder", self.limits.max_connections,
                            allowed)
            self.max_connections = allowed
            self._sweeper = loop.call_later(SWEEP_PERIOD, self._sweep_soon)
        # asyncio uses its `backlog` twice: for listen() (start_server leaves it at 100) and
        # as the number of connections accepted per wakeup. A new connection is read two
        # loop turns after its accept; were more than the limit accepted meanwhile, a
        # reconnecting flood would evict it before its query is read. So: a small batch
        # for asyncio, then listen() again with the real backlog (Linux updates it in place).
        batch = max(1, min(ACCEPT_BATCH, self.max_connections // 4, self.limits.backlog))
        server = await loop.create_server(lambda: Connection(self), sock=sock, backlog=batch)
        sock.listen(self.limits.backlog)
        # As gdnsd does: a connection reaches us only once its first bytes have arrived, so
        # connections that never send anything cannot take a place in the table at all.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, DEFER_ACCEPT)
        self.servers.append(server)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for server in self.servers:
            server.close()
        for conn in list(self.open):
            conn.drop()

    def drain_backlog(self, sock: socket.socket) -> int:
        """Answer the connections still waiting in `sock`'s accept queue, then let it close.

        With SO_REUSEPORT, closing a listener resets the connections queued on it, while the
        other responders (or a new server) take the ones that come after. TCP_DEFER_ACCEPT
        queues a connection only once its query has arrived, so each is read at once: every
        complete query in it is answered, and the connection is closed. Blocking is fine
        here: the responder is stopping. Returns how many connections were drained.
        """
        sock.setblocking(False)
        drained = 0
        while True:
            try:
                conn, peer = sock.accept()
            except OSError:
                return drained  # the queue is empty (or the socket is gone)
            with conn:
                conn.settimeout(DRAIN_READ_TIMEOUT)
                respond = self.answer if self.guarded is None else _told(self.guarded, peer)
                transport = TCP | V6 if sock.family == socket.AF_INET6 else TCP
                try:
                    conn.sendall(b"".join(_answers(conn.recv(65535 + 2), respond, transport)))
                except OSError:
                    pass  # the client went away meanwhile
            drained += 1

    def admit(self, conn: Connection) -> bool:
        """Register a new connection: False when its client already holds its share."""
        count = self.per_client.get(conn.client, 0)
        if count >= self.limits.max_per_client:
            self.refused += 1
            return False
        if len(self.open) >= self.max_connections:
            oldest = next(iter(self.open))
            oldest.drop()  # the longest idle makes room: an idle flood cannot lock clients out
            self.evicted += 1
        # Read again: the evicted connection may have been this client's own.
        self.per_client[conn.client] = self.per_client.get(conn.client, 0) + 1
        self.open[conn] = self.clock()
        return True

    def touch(self, conn: Connection) -> None:
        """A complete query arrived: the connection becomes the most recently active."""
        if conn in self.open:
            self.open[conn] = self.clock()
            self.open.move_to_end(conn)

    def forget(self, conn: Connection) -> None:
        if self.open.pop(conn, None) is None:
            return
        left = self.per_client[conn.client] - 1
        if left:
            self.per_client[conn.client] = left
        else:
            del self.per_client[conn.client]

    def sweep(self) -> int:
        """Close the connections idle past the current timeout; returns how many."""
        timeout = idle_timeout(len(self.open), self.max_connections, self.limits.idle_timeout)
        deadline = self.clock() - timeout
        closed = 0
        while self.open:
            conn, last = next(iter(self.open.items()))
            if last > deadline:
                break  # ordered by activity: every later one is younger
            conn.drop()
            closed += 1
        self.timed_out += closed
        return closed

    def _sweep_soon(self) -> None:
        self.sweep()
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP_PERIOD, self._sweep_soon)


class Connection(asyncio.BufferedProtocol):
    """One client connection: the bytes of the queries not answered yet, and the transport."""

    __slots__ = ("client", "kind", "pending", "respond", "tcp", "transport", "writing")

    def __init__(self, tcp: Tcp) -> None:
        self.tcp = tcp
        self.transport: asyncio.Transport | None = None
        self.client = ""
        self.pending = b""  # an incomplete query, or queries held until answers are read
        self.respond = tcp.answer
        self.kind = TCP  # the transport the answerer counts: | V6 on an IPv6 listener
        self.writing = False  # the transport holds UNSENT_MAX unsent: wait until it drains

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(UNSENT_MAX, UNSENT_MAX // 4)
        peer = transport.get_extra_info("peername")
        self.client = client_key(peer)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # The kernel's share of the unsent answers: UNSENT_MAX (Linux doubles it), not
            # the megabytes send buffers grow to, which a client that never reads would fill
            # with answers made for nothing.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, UNSENT_MAX)
            if sock.family == socket.AF_INET6:
                self.kind = TCP | V6
        guarded = self.tcp.guarded
        if guarded is not None:
            address = socket.inet_pton(socket.AF_INET6 if ":" in peer[0] else socket.AF_INET,
                                       peer[0].split("%", 1)[0])
            self.respond = lambda data, kind: guarded(data, kind, address)
        if not self.tcp.admit(self):
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.tcp.forget(self)
        self.transport = None

    def drop(self) -> None:
        """Close, and stop counting this connection at once (its connection_lost comes later)."""
        self.tcp.forget(self)
        transport = self.transport
        if transport is None:
            return
        if transport.get_write_buffer_size():
            transport.abort()  # a client that does not read would hold a closing socket forever
        else:
            transport.close()

    def pause_writing(self) -> None:
        # UNSENT_MAX octets unsent: no more reads, nor answers, until the client takes them;
        # meanwhile it is idle, so the sweep closes it if it never reads.
        self.writing = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writing = False
        self._answer()  # the queries held meanwhile
        if not self.writing and self.transport is not None \
                and not self.transport.is_closing():
            self.transport.resume_reading()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.tcp.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self.tcp.read_buffer[:nbytes]))

    def data_received(self, data: bytes) -> None:
        self.pending = self.pending + data if self.pending else data
        self._answer()

    def _answer(self) -> None:
        """Answer the complete queries held, in writes of up to the room left under
        UNSENT_MAX, until none is left or the transport holds UNSENT_MAX unsent."""
        while self._answer_some() and not self.writing:
            pass  # the kernel took the answers at once: room for the next ones

    def _answer_some(self) -> bool:
        """Answer what the room left takes, in one write; True when queries are left held."""
        transport = self.transport
        if transport is None:
            return False
        buf, out, size = self.pending, list[bytes](), 0
        room = UNSENT_MAX - transport.get_write_buffer_size()
        pos, end = 0, len(buf)
        answer, kind = self.respond, self.kind
        while end - pos >= 2:
            length = buf[pos] << 8 | buf[pos + 1]
            if length < HEADER:
                self._fail(out)  # 0 or a few octets: no query is that short
                return False
            if end - pos - 2 < length:
                break
            if size >= room and out:
                break  # the rest waits for the client to read these
            query = buf[pos + 2:pos + 2 + length]
            pos += 2 + length
            try:
                response = answer(query, kind)
            except Exception:  # noqa: BLE001 - a bug must cost one connection, never the server
                self.tcp.bug(query)
                self._fail(out)
                return False
            if response is None:
                continue
            if len(response) > FRAME_MAX:  # cannot be framed: never expected (TC comes first)
                self.tcp.errors += 1
                self._fail(out)
                return False
            out.append(len(response).to_bytes(2, "big"))
            out.append(response)
            size += 2 + len(response)
        self.pending = buf[pos:] if pos < end else b""
        if pos:
            self.tcp.touch(self)
        if out:
            transport.write(b"".join(out))  # one write for every answer the room takes
        left = len(self.pending)
        return left >= 2 and left - 2 >= (self.pending[0] << 8 | self.pending[1])

    def _fail(self, out: list[bytes]) -> None:
        """Send what was answered before the bad frame, then close this connection only."""
        self.tcp.errors += 1
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
        self.pending = b""
        self.drop()


def _told(guarded: Guarded, peer: tuple[str, int] | tuple[str, int, int, int]) -> Answer:
    address = socket.inet_pton(socket.AF_INET6 if ":" in peer[0] else socket.AF_INET,
                               peer[0].split("%", 1)[0])
    return lambda data, transport: guarded(data, transport, address)


def _answers(buf: bytes, respond: Answer, transport: int) -> list[bytes]:
    """The framed answers to every complete query in `buf` (a drained connection's)."""
    out: list[bytes] = []
    pos = 0
    while len(buf) - pos >= 2:
        length = buf[pos] << 8 | buf[pos + 1]
        if length < HEADER or len(buf) - pos - 2 < length:
            break
        response = respond(buf[pos + 2:pos + 2 + length], transport)
        pos += 2 + length
        if response is not None and len(response) <= FRAME_MAX:
            out += (len(response).to_bytes(2, "big"), response)
    return out
