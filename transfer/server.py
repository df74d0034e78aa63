"""The transfer process's event loop: its listeners and their connections, the pipe from the
supervisor, NOTIFY and the heartbeat."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from multiprocessing.connection import Connection

from healthdns.shared import child, messages, tsigkeys, tsigwire
from healthdns.shared.config import Config
from healthdns.shared.framing import HEADER
from healthdns.transfer import notify
from healthdns.transfer.answer import NOTAUTH, REFUSED, Transfers
from healthdns.transfer.slots import Slots

log = logging.getLogger("healthdns.transfer")
STRANGER_WAIT = 2.0  # seconds a client no rule admits has to send its query (at most)


class Server:
    """The event loop: listeners, the pipe, NOTIFY, the heartbeat."""

    def __init__(self, slot: int, cfg: Config, listeners: list[socket.socket],
                 conn: Connection) -> None:
        self.slot = slot
        self.spec = cfg.transfer
        self.listeners = listeners
        self.conn = conn
        self.transfers = Transfers(cfg.transfer, cfg.tsig_keys())
        self.notifier = notify.Notifier(cfg.transfer, *_notify_signing(cfg.tsig_keys()))
        self.open: set[asyncio.Task[None]] = set()  # every connection's task
        self.slots = Slots(cfg.transfer.max_connections)  # of the clients the rules admit
        self.strangers = Slots(cfg.transfer.max_connections, displace=True)  # of the others
        self.ready = False
        self.stopped: asyncio.Future[None] | None = None

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        self.stopped = loop.create_future()
        loop.add_reader(self.conn.fileno(), self._on_pipe)
        self.notifier.start()
        servers = [await asyncio.start_server(self._client, sock=sock)
                   for sock in self.listeners]
        try:
            await self.stopped
        finally:
            for server in servers:
                server.close()
            for task in list(self.open):
                task.cancel()
            self.notifier.close()
            loop.remove_reader(self.conn.fileno())

    def stop(self) -> None:
        if self.stopped is not None and not self.stopped.done():
            self.stopped.set_result(None)

    def _on_pipe(self) -> None:
        message = child.received(self.conn, messages.decode_to_child, self.stop)
        if message is None:
            return
        store = self.transfers.store
        match message:
            case messages.Records():
                changed = store.load(message)
            case messages.RecordsDelta():
                found = store.apply(message)
                if found is None:
                    log.error("ignoring records of generation %d: they follow %d, this "
                              "process holds %d", message.generation, message.base,
                              store.generation)
                    return
                changed = found
            case messages.Bye():
                self.stop()
                return
            case _:
                log.warning("ignoring unexpected %s", type(message).__name__)
                return
        for zone in changed:
            self.notifier.changed(zone.origin, zone.serial, zone.soa)
        if not self.ready:
            self.ready = True
            messages.send(self.conn, messages.Ready(self.slot))
            asyncio.get_running_loop().create_task(self._report())

    async def _report(self) -> None:
        """The counters, periodically: metrics and the heartbeat the supervisor watches."""
        while True:
            c, n = self.transfers.counts, self.notifier.counts
            try:
                messages.send(self.conn, messages.TransferStats(
                    self.slot, self.transfers.store.generation, c.axfr, c.ixfr, c.fallback,
                    c.refused, n.sent, n.answered, n.failed))
            except OSError:
                return  # the supervisor is gone: EOF on the pipe stops this process
            await asyncio.sleep(messages.STATS_PERIOD)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        host = writer.get_extra_info("peername")[0]
        access = self.transfers.access
        self.open.add(task)
        try:
            if not access.admits(host):
                await self._refuse(reader, writer, host, task)
            elif self.slots.admit(task, host, access.is_secondary(host), task.cancel):
                try:
                    await self._converse(reader, writer, host, task)
                finally:
                    self.slots.release(task)
            else:
                self.transfers.counts.refused += 1  # the port, or its share of it, is full
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the client went away, stalled or sent half a message: its loss only
        finally:
            self.open.discard(task)
            writer.close()

    async def _refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      host: str, task: asyncio.Task[None]) -> None:
        """A client no rule admits: its first query answered (REFUSED), then the connection
        closed. It waits for that query among its own kind, never in a slot of the port."""
        if not self.strangers.admit(task, host, False, task.cancel):
            self.transfers.counts.refused += 1
            return
        try:
            wait = min(STRANGER_WAIT, self.spec.idle_timeout)
            wire = await _read_query(reader, wait)
            if wire is not None:
                await _write(writer, self.transfers.answer(wire, host), wait)
        finally:
            self.strangers.release(task)

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        host: str, task: asyncio.Task[None]) -> None:
        idle = self.spec.idle_timeout
        while True:
            wire = await _read_query(reader, idle)
            if wire is None:
                return
            self.slots.busy(task, True)
            try:
                rcode = await _write(writer, self.transfers.answer(wire, host), idle)
            finally:
                self.slots.busy(task, False)
            if rcode in (REFUSED, NOTAUTH):
                return  # refused: the connection makes room for others


async def _read_query(reader: asyncio.StreamReader, idle: float) -> bytes | None:
    """The next query of a connection, each part within `idle` seconds; None when the client
    closed it between two queries or framed one shorter than a header."""
    try:
        prefix = await asyncio.wait_for(reader.readexactly(2), idle)
    except asyncio.IncompleteReadError as e:
        if e.partial:
            raise
        return None  # closed between two queries
    length = int.from_bytes(prefix, "big")
    if length < HEADER:
        return None
    return await asyncio.wait_for(reader.readexactly(length), idle)


async def _write(writer: asyncio.StreamWriter, replies: Iterator[bytes],
                 idle: float) -> int | None:
    """Each reply framed and written as the client reads: a reader that reads nothing for
    `idle` seconds loses its connection; one that reads slowly holds this task only. The loop
    turns between two messages. One deadline moved on per message, not a `wait_for` each: that
    makes a task per message, a tenth of the transfer process's CPU in an AXFR loop. Returns
    the rcode of the first reply (None: there was none)."""
    loop = asyncio.get_running_loop()
    rcode = None
    async with asyncio.timeout(idle) as deadline:
        for reply in replies:
            if rcode is None:
                rcode = reply[3] & 0x0F
            writer.write(len(reply).to_bytes(2, "big") + reply)
            await writer.drain()
            await asyncio.sleep(0)
            deadline.reschedule(loop.time() + idle)
    return rcode


def _notify_signing(tsig_keys: list[tsigkeys.Key]) -> tuple[notify.Sign, notify.Check]:
    """How a NOTIFY is signed with its secondary's key, and its answer checked."""
    by_name = {k.name: k for k in tsig_keys}

    def sign(wire: bytes, key: str) -> tuple[bytes, object]:
        return tsigwire.sign_request(wire, by_name[key]) if key else (wire, None)

    def check(wire: bytes, state: object) -> bool:
        return state is None or tsigwire.check_reply(wire, state)

    return sign, check
