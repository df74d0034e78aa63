"""The responder's event loop: UDP drained in batches, TCP (tcp.py), the pipe for snapshots."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import struct
import threading
import time
from multiprocessing.connection import Connection

from healthdns.responder import guard, mmsg, sockets
from healthdns.responder.query import Answerer
from healthdns.responder.sockets import Listener
from healthdns.responder.table import Table, indexes
from healthdns.responder.tcp import Limits, Tcp
from healthdns.responder.wire import NEEDS_CLIENT, PLAIN_LIMIT, UDP, V6
from healthdns.shared import child, heap, messages, querycounts
from healthdns.shared.config import Config, format_endpoint
from healthdns.shared.geotable import GeoIndex
from healthdns.shared.region import Region

log = logging.getLogger("healthdns.responder")
TCP_SETTLE = 0.1  # seconds a stopping responder gives the connections it has accepted
BUG_LOG_PERIOD = 60.0  # seconds between two tracebacks of internal errors: a flood is counted
BUG_LOG_BYTES = 512  # of the query, in hex, in the log line


class Server:
    def __init__(self, slot: int, cfg: Config, listeners: list[Listener],
                 conn: Connection, secret: bytes = b"",
                 rrl_table: Region | None = None) -> None:
        self.slot = slot
        self.cfg = cfg
        self.listeners = listeners
        self.conn = conn
        self.answerer = Answerer(cfg.server.udp_payload_size, cfg.server.nsid.encode())
        self.answerer.tsig_keys = cfg.tsig_keys()
        self.maps: dict[str, GeoIndex] = {}  # the location maps (`messages.Maps`), by name
        self.guard = guard.build(self.answerer, cfg, secret, rrl_table)  # cookies and RRL
        spec = cfg.server
        self.tcp = Tcp(self.answerer.answer, self._bug,
                       Limits(spec.tcp_max_connections, spec.tcp_max_per_client,
                              spec.tcp_idle_timeout, spec.tcp_backlog),
                       # told the client's address: cookies, RRL, geo names
                       guarded=self.guard.answer if self.guard is not None
                       else self.answerer.answer_told)
        self.serving = False
        self.errors = 0
        self.bug_logged = -BUG_LOG_PERIOD  # when the last internal error was logged
        self.stopped: asyncio.Future[None] | None = None
        self.stopping = False
        self.exit_code = 0
        self.threads: list[threading.Thread] = []

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        self.stopped = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, self._stop)
        loop.add_reader(self.conn.fileno(), self._on_pipe)
        if self.answerer.table is not None:  # loaded before binding (see `main.run`)
            settle()
            loop.create_task(self._start_serving())
        try:
            await self.stopped
        finally:
            if self.serving:
                self._withdraw()
            self.stopping = True
            for thread in self.threads:
                thread.join()
            for listener in self.listeners:
                if self.serving:
                    self._drain(listener.udp,
                                V6 if listener.udp.family == socket.AF_INET6 else UDP)
                    listener.udp.close()  # withdrawn and drained: nothing is queued any more
                    loop.remove_reader(listener.tcp.fileno())  # asyncio accepts no more
                    self.tcp.drain_backlog(listener.tcp)
            if self.serving:  # connections asyncio accepted already: let their queries in
                await asyncio.sleep(TCP_SETTLE)
            self.tcp.close()
            for listener in self.listeners:
                listener.close()

    def _stop(self) -> None:
        if self.stopped is not None and not self.stopped.done():
            self.stopped.set_result(None)

    def _on_pipe(self) -> None:
        message = child.received(self.conn, messages.decode_to_responder, self._stop)
        if message is None:
            return
        current = self.answerer.table
        try:
            match message:
                case messages.EncodedSnapshot():
                    self._load(Table(message, self.cfg.server.packet_cache, self.maps))
                case messages.EncodedDelta() if current is not None \
                        and current.generation == message.base:
                    self._load(current.apply(message, self.maps))
                case messages.Maps(tables=tables):
                    self.maps = indexes(tables)  # the next generation answers by them
                case messages.EncodedDelta():
                    log.error("ignoring generation %d: it follows %d, this responder holds %s",
                              message.generation, message.base,
                              current.generation if current else "nothing")
                case messages.Bye():
                    self._stop()
                case _:
                    log.warning("ignoring unexpected %s", type(message).__name__)
        except Exception:
            if current is None:  # nothing to serve: exit; the supervisor respawns or gives up
                log.exception("cannot load the first generation")
                self.exit_code = 1
                self._stop()
                return
            log.exception("cannot load a new generation; still serving generation %d",
                          current.generation)

    def _load(self, table: Table) -> None:
        self.answerer.table = table  # one reference: every query sees one generation
        settle()
        log.debug("generation %d loaded", table.generation)
        if not self.serving:
            asyncio.get_running_loop().create_task(self._start_serving())

    async def _start_serving(self) -> None:
        """Serve once a snapshot is loaded: no query ever meets an empty table."""
        if self.serving:
            return
        self.serving = True
        for listener in self.listeners:
            thread = threading.Thread(target=self._serve_udp, args=(listener.udp,),
                                      name=f"udp {listener.host}:{listener.port}", daemon=True)
            thread.start()
            self.threads.append(thread)
            await self.tcp.listen(listener.tcp)
        messages.send(self.conn, messages.Ready(self.slot))
        asyncio.get_running_loop().create_task(self._report())

    async def _report(self) -> None:
        """Send the counters and the generation served, periodically: metrics, readiness and
        the heartbeat the supervisor watches."""
        paths = {path: i for i, path in enumerate(querycounts.PATHS)}
        while True:
            table = self.answerer.table
            counts = [(paths[path], int(tcp), family, zone, qtype, rcode, n)
                      for (path, tcp, family, zone, qtype, rcode), n
                      in self.answerer.counts_by_label().items()]
            try:
                messages.send(self.conn, messages.Stats(
                    self.slot, table.generation if table else 0, counts,
                    self.answerer.truncated, self.errors, self.answerer.sites_by_label()))
            except OSError:
                return  # the supervisor is gone: EOF on the pipe stops this process
            await asyncio.sleep(messages.STATS_PERIOD)

    def _serve_udp(self, sock: socket.socket) -> None:
        """One thread per UDP socket, blocking in the kernel between batches.

        A blocking receive with a timeout costs no event-loop round trip per batch; the
        timeout only bounds how long a stop takes to be noticed. The GIL is released while
        waiting, so the event loop (TCP, the pipe) runs whenever UDP is idle.
        """
        sock.setblocking(True)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 200_000))
        transport = V6 if sock.family == socket.AF_INET6 else UDP  # counted by family
        batch = self.cfg.server.udp_batch
        if batch and mmsg.available():
            # An answer over UDP is at most our payload size, and 512 without EDNS.
            receiver = mmsg.Batch(sock, batch, max(PLAIN_LIMIT, self.cfg.server.udp_payload_size))
            # Bound once: the answerer and the guard live as long as the server (a new
            # table is swapped inside the answerer), and each call is a wake-up at low load.
            serve, answer, bug = receiver.serve, self.answerer.answer, self._bug
            guarded = self.guard.answer if self.guard is not None else None
            every = self.guard is not None and self.guard.limiter is not None
            located = self.answerer.answer_from
            while not self.stopping:
                serve(answer, bug, guarded, every, transport, located)
        else:
            while not self.stopping:
                self._serve_one(sock, transport)

    def _withdraw(self) -> None:
        """Hand the queries still to come to the other sockets of each SO_REUSEPORT group
        (the other responders, a successor) while this one keeps answering its queue: once
        withdrawn, and once the deliveries the kernel had begun are queued, nothing joins the
        queue any more, so the drain that empties it loses nothing as the socket closes."""
        for listener in self.listeners:
            try:
                sockets.withdraw(listener.udp)
            except OSError as e:
                log.warning("cannot withdraw %s from its SO_REUSEPORT group (%s): a query "
                            "arriving as it closes may be lost",
                            format_endpoint(listener.host, listener.port), e.strerror)
        sockets.settle_deliveries()

    def _drain(self, sock: socket.socket, transport: int) -> None:
        """Answer what the kernel queued on a socket before it is closed (closing drops those
        datagrams). Reads until the queue is empty: withdrawn (`_withdraw`), the socket gets
        no more."""
        sock.setblocking(False)
        answered = 0
        while self._serve_one(sock, transport):
            answered += 1
        log.debug("drained %d queries from %s", answered, sock.getsockname())

    def _serve_one(self, sock: socket.socket, transport: int) -> bool:
        """The portable path: one recvfrom and one sendto per query; False when nothing was
        waiting."""
        try:
            data, peer = sock.recvfrom(65535)
        except BlockingIOError:
            return False
        except OSError:
            return True  # the receive timeout, or an ICMP error queued on the socket
        try:
            if self.guard is None:
                response = self.answerer.answer(data, transport)
                if response is NEEDS_CLIENT:
                    response = self.answerer.answer_from(data, transport,
                                                         guard.address(peer[0]))
            else:
                response = self.guard.answer(data, transport, guard.address(peer[0]))
        except Exception:  # noqa: BLE001 - a bug must cost one query, never the server
            self._bug(data)
            return True
        if response is not None:
            try:
                sock.sendto(response, peer)
            except OSError:
                self.errors += 1  # send buffer full: the client retries
        return True

    def _bug(self, data: bytes) -> None:
        """Count an internal error; log its traceback unless one was logged recently, so a
        query that hits a bug cannot turn a flood of copies into a flood of tracebacks."""
        self.errors += 1
        now = time.monotonic()
        if now - self.bug_logged < BUG_LOG_PERIOD:
            return
        self.bug_logged = now
        log.exception("internal error answering %s (%d internal errors so far)",
                      data[:BUG_LOG_BYTES].hex(), self.errors)


def settle() -> None:
    """Put what is alive now, the table just loaded above all, out of the collector's sight.

    A full collection walks every tracked object while it holds the GIL: with 10,000 signed
    names loaded, some 80,000 objects and 27 ms in which no UDP thread answers (p99 latency).
    A table has no reference cycles, so reference counts free a frozen one when the next
    replaces it; what freezing could keep is cyclic garbage made before this moment, which
    the collection first clears. A delta's table shares its entries with the previous,
    frozen one: that collection walks only what the load made.

    Then the C heap's free pages go back to the system: a load frees large blocks (the
    received message, the dicts it outgrew) that glibc keeps once a 10 MB message has raised
    its thresholds (0.9 MiB of a responder at 10,000 signed names)."""
    gc.collect()
    gc.freeze()
    heap.trim()
