"""The transfer process: the hidden primary that standard secondaries transfer zones from.

One process, spawned by the supervisor only when `[transfer]` has a listen address. It binds
its own TCP listeners (as the responders bind theirs), holds every zone's records as the
signer publishes them (`journal.Store`, relayed by the supervisor), and serves on them:

* AXFR (RFC 5936): the whole zone at one serial, in messages of up to 64 KiB;
* IXFR (RFC 1995): the journalled diffs from the client's serial, or the whole zone when the
  journal does not reach back to it, or the SOA alone when the client is up to date;
* SOA queries (a secondary asks for the serial before it transfers);
* anything else REFUSED, and every query from a client no secondary entry or allow rule
  admits, or not signed with the key that entry names (RFC 8945: unknown keys get NOTAUTH).

A client no rule admits is answered once and its connection closed, without ever taking one
of the port's slots; a configured secondary always gets one (`slots`). A refused query (an
address, key or type not allowed, a zone not ours) ends its connection too.

It sends NOTIFY to the secondaries on every serial change (`notify`). Writing is asyncio with
backpressure: a slow reader holds its own connection only, and the loop turns between two
messages of a transfer, so a new generation from the pipe is never held up by a big AXFR
(that one carries on with the serial it started with: zone states are never changed).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection

import dns.exception
import dns.message
import dns.opcode
import dns.rdatatype

from healthdns.responder import tsig
from healthdns.responder.sockets import bind_tcp
from healthdns.responder.tcp import FRAME_MAX, HEADER
from healthdns.shared import child, messages, privilege
from healthdns.shared import tsig as keys
from healthdns.shared.config import Config, TransferSpec, format_endpoint
from healthdns.shared.errors import BindError
from healthdns.transfer import notify
from healthdns.transfer.journal import Group, Sections, Store, ZoneState
from healthdns.transfer.slots import Slots

log = logging.getLogger("healthdns.transfer")
EXIT_BIND_FAILED = 3
# The transfer process's priority: background work beside the responders (`_background`).
NICE = 19
QR, AA, RD = 0x8000, 0x0400, 0x0100
NOERROR, FORMERR, SERVFAIL, REFUSED, NOTAUTH = 0, 1, 2, 5, 9
STRANGER_WAIT = 2.0  # seconds a client no rule admits has to send its query (at most)
# Room left in each message for the TSIG record a signed stream adds to it: a key name of up
# to 255 octets, the algorithm's name and a MAC of up to 64 (HMAC-SHA512) fit in 512.
TSIG_ROOM = 512
MESSAGE_MAX = FRAME_MAX - TSIG_ROOM


@dataclass
class Counts:
    axfr: int = 0
    ixfr: int = 0
    fallback: int = 0
    refused: int = 0


class Access:
    """Who may transfer: a secondary's address or an allow rule's network, each with the key
    (if any) its queries must be signed with."""

    def __init__(self, spec: TransferSpec) -> None:
        self.rules: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = []
        self.secondaries: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        for secondary in spec.secondaries:
            host = secondary.address.rsplit(":", 1)[0].strip("[]")
            self.rules.append((ipaddress.ip_network(host), secondary.key))
            self.secondaries.add(ipaddress.ip_address(host))
        for rule in spec.allow:
            self.rules += [(ipaddress.ip_network(n), rule.key) for n in rule.networks]

    def keys(self, host: str) -> set[str]:
        """The keys a client at `host` may sign with ("": unsigned allowed); empty: none."""
        address = _address(host)
        if address is None:
            return set()
        return {key for network, key in self.rules if address in network}

    def admits(self, host: str) -> bool:
        """Whether any secondary entry or allow rule admits the address `host`."""
        return bool(self.keys(host))

    def is_secondary(self, host: str) -> bool:
        """Whether `host` is the address of a configured secondary."""
        return _address(host) in self.secondaries


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A peer's address; an IPv4-mapped IPv6 one as the IPv4 address; None if not one."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class Transfers:
    """The zones held, and the answers to the secondaries' queries."""

    def __init__(self, spec: TransferSpec, tsig_keys: list[keys.Key],
                 clock: Callable[[], float] = time.time) -> None:
        self.spec = spec
        self.store = Store(spec.journal)
        self.access = Access(spec)
        self.keyring = keys.keyring(tsig_keys)
        self.clock = clock
        self.counts = Counts()

    def answer(self, wire: bytes, host: str) -> Iterator[bytes]:
        """The messages that answer one query from `host` (none: drop the query), signed
        when the query was (RFC 8945 5.3.1: each message of a stream)."""
        try:
            query = dns.message.from_wire(wire, keyring=False)
        except dns.exception.DNSException:
            if len(wire) >= HEADER and not wire[2] & 0x80:
                yield _header(wire, FORMERR, 0, 0)
            return
        if query.flags & QR:
            return  # a response is never answered
        checked = tsig.verify(wire, self.keyring, self.clock())
        if isinstance(checked, tsig.Refusal):  # NOTAUTH: unknown key, bad MAC, time (5.2)
            self.counts.refused += 1
            yield checked.response(wire)
            return
        sign = tsig.Stream(checked, self.clock).sign if checked is not None else _as_is
        key = "" if checked is None else checked.key.name.to_text(omit_final_dot=True).lower()
        question = _question(wire)
        if key not in self.access.keys(host) or question is None \
                or query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
            self.counts.refused += 1
            yield sign(_error(wire, question, REFUSED))
            return
        for message in self._query(query, wire, question):
            yield sign(message)

    def _query(self, query: dns.message.Message, wire: bytes,
               question: bytes) -> Iterator[bytes]:
        rrset = query.question[0]
        if rrset.rdtype not in (dns.rdatatype.SOA, dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            self.counts.refused += 1
            yield _error(wire, question, REFUSED)
            return
        if self.store.generation == 0:
            yield _error(wire, question, SERVFAIL)  # nothing published yet: try again
            return
        zone = self.store.zones.get(rrset.name.canonicalize().to_wire() or b"")
        if zone is None:
            self.counts.refused += 1
            yield _error(wire, question, NOTAUTH)  # not a zone of ours (RFC 5936 2.2.1)
            return
        if rrset.rdtype == dns.rdatatype.SOA:
            yield from _pack(wire, question, [zone.soa])
        elif rrset.rdtype == dns.rdatatype.AXFR:
            self.counts.axfr += 1
            yield from pack_axfr(wire, question, zone)
        else:
            yield from self._ixfr(query, wire, question, zone)

    def _ixfr(self, query: dns.message.Message, wire: bytes, question: bytes,
              zone: ZoneState) -> Iterator[bytes]:
        serials = [rd.serial for rrset in query.authority if rrset.rdtype == dns.rdatatype.SOA
                   for rd in rrset]
        if len(serials) != 1:  # RFC 1995 3: the client's SOA is in the authority section
            yield _error(wire, question, FORMERR)
            return
        records = zone.ixfr(serials[0])
        if records is None:
            self.counts.fallback += 1
            yield from pack_axfr(wire, question, zone)
            return
        self.counts.ixfr += 1
        yield from _pack(wire, question, records)


def _as_is(message: bytes) -> bytes:
    return message


def _pack(query: bytes, question: bytes, records: list[bytes]) -> Iterator[bytes]:
    """The records in messages of at most MESSAGE_MAX octets, the question in the first only
    (RFC 5936 2.2.1 allows it in the others; leaving it out leaves room for records)."""
    body: list[bytes] = []
    size = HEADER + len(question)
    first = True
    for rr in records:
        if body and size + len(rr) > MESSAGE_MAX:
            yield _message(query, question if first else b"", body)
            body, size, first = [], HEADER, False
        body.append(rr)
        size += len(rr)
    yield _message(query, question if first else b"", body)


POINTER_MAX = 0x3FFF  # a compression pointer's 14-bit offset (RFC 1035 4.1.4)


def pack_axfr(query: bytes, question: bytes, zone: ZoneState) -> Iterator[bytes]:
    """`zone.axfr()` in messages of at most MESSAGE_MAX octets, owner names compressed.

    The answer sections depend only on the zone state and the question's length (pointers
    count from the header and question), so the first AXFR of a state packs them (`_sections`)
    and keeps them on the state once all are made (a client that leaves halfway keeps
    nothing); the next ones write a header and, in the first message, the question.
    """
    kept = zone.packed.get(len(question))
    if kept is not None:
        for answers, count in kept:
            yield _message(query, question, [answers], count)
            question = b""
        return
    made: Sections = []
    for answers, count in _sections(zone, len(question)):
        yield _message(query, question if not made else b"", [answers], count)
        made.append((answers, count))
    zone.keep(len(question), made)


def _sections(zone: ZoneState, asked: int) -> Iterator[tuple[bytes, int]]:
    """Each message's answer section and RR count, the first after a question of `asked` octets.

    Only owner names get pointers (RFC 3597 and RFC 4034 6.2: names inside RRSIG, NSEC and
    types unknown to old servers are never compressed, and other rdata is left as signed). In
    each message the origin is written once in full (by its first RR); an owner's first RR
    there writes the owner's own labels and a pointer to the origin, its other RRs a pointer
    to that owner. A pointer reaches the first 16 KiB only: past it, each RR of an owner
    writes its labels and a pointer to the origin. The work is per owner, one `join` of the
    RRs cut once per zone state (`ZoneState.groups`); an owner that does not fit in the
    message is written RR by RR (`_split`), once a message.
    """
    origin = zone.origin
    apex: Group = (b"", True, [zone.soa[len(origin):]], len(zone.soa) - len(origin))
    made = _Made(asked)
    for group in (apex, *zone.groups, apex):
        labels, under, tails, length = group
        if made.at >= 0 and under:
            name = labels + made.pointer
            sep = _pointer(made.size) if made.size <= POINTER_MAX else name
        elif under:
            name = labels + origin
            sep = _pointer(made.size) if made.size <= POINTER_MAX else name
        else:
            name = labels
            sep = _pointer(made.size) if made.size <= POINTER_MAX else name
        size = len(name) + length + len(sep) * (len(tails) - 1)
        if made.size + size > MESSAGE_MAX:
            yield from _split(made, group, origin)
            continue
        if made.at < 0 and under:
            made.found(made.size + len(labels))
        made.body.append(name + sep.join(tails))
        made.size += size
        made.count += len(tails)
    yield made.section()


def _pointer(offset: int) -> bytes:
    return (0xC000 | offset).to_bytes(2, "big")


class _Made:
    """The section `_sections` is making: its pieces, the message's size so far (header and
    question included, for pointers count from the header), RR count, the origin's offset."""

    def __init__(self, asked: int) -> None:
        self.body: list[bytes] = []
        self.size, self.count = HEADER + asked, 0
        self.at, self.pointer = -1, b""  # the origin's offset, once written where it reaches

    def found(self, at: int) -> None:
        if at <= POINTER_MAX:
            self.at, self.pointer = at, _pointer(at)

    def section(self) -> tuple[bytes, int]:
        return b"".join(self.body), self.count

    def next(self) -> tuple[bytes, int]:
        """This section, done; the next starts empty (no question past the first message)."""
        done = self.section()
        self.body, self.size, self.count = [], HEADER, 0
        self.at, self.pointer = -1, b""
        return done


def _split(made: _Made, group: Group, origin: bytes) -> Iterator[tuple[bytes, int]]:
    """One owner's RRs RR by RR, a new section when the next one does not fit."""
    labels, under, tails, _ = group
    here = -1  # the owner's offset in this message, once written where a pointer reaches
    for tail in tails:
        if here >= 0:
            name = _pointer(here)
        elif under and made.at >= 0:
            name = labels + made.pointer
        else:
            name = labels + origin if under else labels
        if made.body and made.size + len(name) + len(tail) > MESSAGE_MAX:
            yield made.next()
            here, name = -1, labels + origin if under else labels
        if here < 0 and made.size <= POINTER_MAX:
            here = made.size
        if made.at < 0 and under and name.endswith(origin):
            made.found(made.size + len(labels))
        made.body += (name, tail)
        made.size += len(name) + len(tail)
        made.count += 1


def _message(query: bytes, question: bytes, answers: list[bytes],
             count: int | None = None) -> bytes:
    """`count`: how many RRs `answers` holds, when they are pieces rather than one each."""
    flags = QR | AA | (int.from_bytes(query[2:4], "big") & (0x7800 | RD))
    header = b"".join(v.to_bytes(2, "big") for v in
                      (int.from_bytes(query[0:2], "big"), flags, 1 if question else 0,
                       len(answers) if count is None else count, 0, 0))
    return header + question + b"".join(answers)


def _error(query: bytes, question: bytes | None, rcode: int) -> bytes:
    return _header(query, rcode, 1 if question else 0, 0) + (question or b"")


def _header(query: bytes, rcode: int, qdcount: int, ancount: int) -> bytes:
    flags = QR | (int.from_bytes(query[2:4], "big") & (0x7800 | RD)) | rcode
    return b"".join(v.to_bytes(2, "big") for v in
                    (int.from_bytes(query[0:2], "big"), flags, qdcount, ancount, 0, 0))


def _question(wire: bytes) -> bytes | None:
    """The query's one question as it came (name uncompressed), or None."""
    if int.from_bytes(wire[4:6], "big") != 1:
        return None
    pos = HEADER
    while pos < len(wire):
        length = wire[pos]
        if length & 0xC0:
            return None
        pos += 1 + length
        if length == 0:
            return wire[HEADER:pos + 4] if pos + 4 <= len(wire) else None
    return None


# --- the process ----------------------------------------------------------------------------------


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
        try:
            message = messages.decode_to_child(self.conn.recv_bytes())
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
            self.stop()  # the supervisor is gone: no orphans
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


def _notify_signing(tsig_keys: list[keys.Key]) -> tuple[notify.Sign, notify.Check]:
    """How a NOTIFY is signed with its secondary's key, and its answer checked."""
    by_name = {k.name: k for k in tsig_keys}

    def sign(wire: bytes, key: str) -> tuple[bytes, object]:
        return tsig.sign_request(wire, by_name[key]) if key else (wire, None)

    def check(wire: bytes, state: object) -> bool:
        return state is None or tsig.check_reply(wire, state)

    return sign, check


def run(conn: Connection) -> None:
    start, cfg = child.start(conn, "transfer")
    endpoints = start.listen or [(h, p, True) for h, p in cfg.transfer.endpoints()]
    try:
        listeners = [bind_tcp(host, port) for host, port, _ in endpoints]
    except BindError as e:
        messages.send(conn, messages.Fatal(start.slot, str(e)))
        raise SystemExit(EXIT_BIND_FAILED) from None
    privilege.drop()  # bound: nothing privileged is left to do, and nothing was read yet
    _background()
    bound = [(sock.getsockname()[0], sock.getsockname()[1], True) for sock in listeners]
    messages.send(conn, messages.Bound(start.slot, bound))
    log.info("serving transfers on %s (tcp)",
             ", ".join(format_endpoint(h, p) for h, p, _ in bound))
    asyncio.run(_serve(Server(start.slot, cfg, listeners, conn)))


def _background() -> None:
    """Run as background work: on busy cores queries go first, an AXFR takes longer (a
    secondary waits; a client would not), and transfers still get a share, never starve.

    Nice 19 gives this process a CFS weight of 15 against a responder's 1024 (nice 0): when
    the cores are full it gets about 1.5% of one, 15 ms a second, which is an IXFR (~1 ms) and
    its NOTIFY many times over, or a few 10,000-name AXFRs (~5 ms each); when they are not,
    it gets all it wants. SCHED_BATCH adds that its wake-ups (a secondary's ACK, a query)
    never preempt a running responder: it waits for the responder to block or for the tick.
    SCHED_IDLE (weight 3, below any nice) is not used: it gives no more to the responders
    than this and lets a busy host delay a health change's IXFR for longer. Neither change
    needs a privilege; the nice value is absolute, so a supervisor run at a raised priority
    (systemd `Nice=-5`) does not lift its transfers with it.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except OSError as e:  # a seccomp filter may forbid it: nice alone still orders the CPUs
        log.warning("transfers run at nice %d without SCHED_BATCH: %s", NICE, e)
    os.setpriority(os.PRIO_PROCESS, 0, NICE)


async def _serve(server: Server) -> None:
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, server.stop)
    await server.serve()
