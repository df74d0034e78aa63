"""NOTIFY (RFC 1996): tell each secondary that a zone has a new serial, until it answers.

Every serial change of a zone is sent to every secondary with `notify = true`, over UDP from
`transfer.notify_source`, TSIG-signed with the secondary's key when it has one. Without an
answer it is sent again after `notify_timeout`, the wait doubling each time, at most
`notify_retries` times (RFC 1996 3.6). A NOERROR answer with the same id, opcode and zone
ends it; an error answer gives up at once (resending would get the same). A newer serial of
the same zone for the same secondary replaces the pending one: only the latest serial matters.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from healthdns.shared.config import TransferSpec, format_endpoint

log = logging.getLogger("healthdns.transfer")

OPCODE_NOTIFY = 4
QR, AA = 0x8000, 0x0400
TYPE_SOA, CLASS_IN = 6, 1
# Signs a NOTIFY for the secondary's key: (wire, key name) -> (signed wire, what checking the
# answer needs); and checks an answer with that. Unsigned: both are identities.
Sign = Callable[[bytes, str], "tuple[bytes, Any]"]
Check = Callable[[bytes, Any], bool]


def _unsigned(wire: bytes, key: str) -> tuple[bytes, Any]:
    return wire, None


def _accept(wire: bytes, state: Any) -> bool:
    return True


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    key: str  # "" unsigned


@dataclass
class Pending:
    """One NOTIFY waiting for its answer."""

    target: Target
    origin: bytes
    serial: int
    id: int
    wire: bytes
    state: Any  # the TSIG state its answer is checked with
    resends: int = 0
    timer: asyncio.TimerHandle | None = None


@dataclass
class NotifyCounts:
    sent: int = 0
    answered: int = 0
    failed: int = 0


@dataclass
class Notifier:
    """Every pending NOTIFY; `changed` is the entry point, `start` binds the sockets."""

    spec: TransferSpec
    sign: Sign = _unsigned
    check: Check = _accept
    counts: NotifyCounts = field(default_factory=NotifyCounts)
    pending: dict[tuple[bytes, Target], Pending] = field(default_factory=dict)
    sockets: dict[int, socket.socket] = field(default_factory=dict)  # by address family

    def __post_init__(self) -> None:
        self.targets = [Target(*s.endpoint, s.key) for s in self.spec.secondaries if s.notify]

    def start(self) -> None:
        """Bind one UDP socket per family the targets need (from `notify_source` for its
        own family; the kernel picks the source of the other)."""
        loop = asyncio.get_running_loop()
        for family in {_family(t.host) for t in self.targets}:
            source = self.spec.notify_source
            if not source or _family(source) != family:
                source = "::" if family == socket.AF_INET6 else "0.0.0.0"
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.bind((source, 0))
            sock.setblocking(False)
            self.sockets[family] = sock
            loop.add_reader(sock.fileno(), self._receive, sock)

    def close(self) -> None:
        for pending in self.pending.values():
            if pending.timer is not None:
                pending.timer.cancel()
        self.pending.clear()
        for sock in self.sockets.values():
            asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
        self.sockets.clear()

    def changed(self, origin: bytes, serial: int, soa: bytes) -> None:
        """A zone has a new serial: NOTIFY every target, replacing what was pending."""
        for target in self.targets:
            old = self.pending.pop((origin, target), None)
            if old is not None and old.timer is not None:
                old.timer.cancel()
            qid = secrets.randbits(16)
            wire, state = self.sign(_notify(qid, origin, soa), target.key)
            pending = Pending(target, origin, serial, qid, wire, state)
            self.pending[(origin, target)] = pending
            self._send(pending)

    def _send(self, pending: Pending) -> None:
        wait = self.spec.notify_timeout * 2 ** pending.resends
        pending.timer = asyncio.get_running_loop().call_later(wait, self._expire, pending)
        target = pending.target
        try:
            self.sockets[_family(target.host)].sendto(pending.wire, (target.host, target.port))
        except OSError as e:  # full buffer, unreachable: the resend tries again
            log.debug("NOTIFY to %s: %s", format_endpoint(target.host, target.port), e)
        self.counts.sent += 1

    def _expire(self, pending: Pending) -> None:
        if self.pending.get((pending.origin, pending.target)) is not pending:
            return
        if pending.resends < self.spec.notify_retries:
            pending.resends += 1
            self._send(pending)
            return
        del self.pending[(pending.origin, pending.target)]
        self.counts.failed += 1
        log.warning("NOTIFY of %s serial %d to %s: no answer after %d resends",
                    _text(pending.origin), pending.serial,
                    format_endpoint(pending.target.host, pending.target.port), pending.resends)

    def _receive(self, sock: socket.socket) -> None:
        while True:
            try:
                wire, peer = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error queued on the socket: the resend tries again
                continue
            self._answer(wire, peer[0], peer[1])

    def _answer(self, wire: bytes, host: str, port: int) -> None:
        """Match an answer to its pending NOTIFY: same secondary, id, opcode and zone."""
        if len(wire) < 12:
            return
        qid, flags = int.from_bytes(wire[0:2], "big"), int.from_bytes(wire[2:4], "big")
        if not flags & QR or (flags >> 11) & 0xF != OPCODE_NOTIFY:
            return
        origin = _question_name(wire)
        pending = next((p for (o, t), p in self.pending.items() if o == origin
                        and p.id == qid and t.port == port and _same_host(t.host, host)), None)
        if pending is None or not self.check(wire, pending.state):
            return  # not ours, late, or forged: the timer keeps running
        if pending.timer is not None:
            pending.timer.cancel()
        del self.pending[(pending.origin, pending.target)]
        rcode = flags & 0xF
        where = format_endpoint(pending.target.host, pending.target.port)
        if rcode:
            self.counts.failed += 1
            log.warning("NOTIFY of %s serial %d to %s: answered with rcode %d",
                        _text(pending.origin), pending.serial, where, rcode)
            return
        self.counts.answered += 1
        log.debug("NOTIFY of %s serial %d to %s answered", _text(pending.origin),
                  pending.serial, where)


def _notify(qid: int, origin: bytes, soa: bytes) -> bytes:
    """A NOTIFY of `origin` with its new SOA in the answer section (RFC 1996 3.7)."""
    flags = OPCODE_NOTIFY << 11 | AA
    header = b"".join(v.to_bytes(2, "big") for v in (qid, flags, 1, 1, 0, 0))
    return header + origin + TYPE_SOA.to_bytes(2, "big") + CLASS_IN.to_bytes(2, "big") + soa


def _question_name(wire: bytes) -> bytes | None:
    """The question's name, lower case, uncompressed wire; None if there is none."""
    if int.from_bytes(wire[4:6], "big") != 1:
        return None
    pos = 12
    while pos < len(wire):
        length = wire[pos]
        if length & 0xC0:
            return None  # a question has nothing before it to point to
        pos += 1 + length
        if length == 0:
            return wire[12:pos].lower()
    return None


def _text(origin: bytes) -> str:
    """A wire name for a log line (lower case, final dot)."""
    labels = []
    pos = 0
    while pos < len(origin) and origin[pos]:
        labels.append(origin[pos + 1:pos + 1 + origin[pos]].decode("ascii", "replace"))
        pos += 1 + origin[pos]
    return ".".join(labels) + "."


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _same_host(a: str, b: str) -> bool:
    return socket.inet_pton(_family(a), a) == socket.inet_pton(_family(b), b.split("%")[0])
