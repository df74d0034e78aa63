"""Binding the responder's own SO_REUSEPORT sockets: one UDP and one TCP per address."""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import socket
import time
from dataclasses import dataclass

from healthdns.shared.binding import bind
from healthdns.shared.config import format_endpoint
from healthdns.shared.errors import BindError

log = logging.getLogger("healthdns.responder")
LOOPBACK = {socket.AF_INET: "127.0.0.1", socket.AF_INET6: "::1"}
# membarrier(2)'s number where the system call table is known; elsewhere a wait stands in
MEMBARRIER = {"x86_64": 324, "aarch64": 283, "riscv64": 283}
MEMBARRIER_CMD_GLOBAL = 1
SETTLE_FALLBACK = 0.05  # seconds: without membarrier, a wait narrows the window only


@dataclass
class Listener:
    host: str
    port: int
    udp: socket.socket
    tcp: socket.socket

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()


def bind_all(endpoints: list[tuple[str, int, bool]]) -> list[Listener]:
    """Bind every endpoint; an optional one (IPv6 on a host without it) may be skipped."""
    listeners: list[Listener] = []
    try:
        for host, port, required in endpoints:
            try:
                listeners.append(_bind(host, port))
            except BindError as e:
                if required:
                    raise
                log.warning("%s (skipped: optional)", e)
    except BindError:
        for listener in listeners:
            listener.close()
        raise
    if not listeners:
        raise BindError("no address could be bound")
    return listeners


PORT_TRIES = 32  # port 0: ports the kernel picks for TCP that UDP may find taken


def _bind(host: str, port: int) -> Listener:
    # With port 0 the kernel picks the TCP port, and UDP must then get the same one. TCP
    # first: client connections hold far more ports of the ephemeral range than UDP sockets
    # do, and the kernel's choice for a listener avoids them.
    for _ in range(PORT_TRIES if port == 0 else 1):
        tcp = bind(host, port, socket.SOCK_STREAM)
        chosen = tcp.getsockname()[1]
        try:
            udp = bind(host, chosen, socket.SOCK_DGRAM)
        except BindError:
            tcp.close()
            if port == 0:
                continue
            raise
        return Listener(host, chosen, udp, tcp)
    raise BindError(f"cannot listen on {format_endpoint(host, port)}: no port free for both "
                    "UDP and TCP")


def withdraw(sock: socket.socket) -> None:
    """Stop the kernel choosing this UDP socket for new datagrams; keep what it queued.

    A socket leaves its SO_REUSEPORT group only as it closes, and closing drops its queue:
    a datagram queued between a drain's last read and the close would be lost. Linux never
    picks a connected member of a group (the hash selection skips it) and matches it only
    to its peer, so a socket connected to its own address, from which nothing is ever sent,
    gets no datagram any more while its queue stays readable; the group's other members
    (the other responders, a successor) take its share. A wildcard socket is connected to
    loopback (the kernel then moves it out of the group altogether).
    Raises OSError if the address cannot be connected to."""
    host, port, *rest = sock.getsockname()
    if host in ("0.0.0.0", "::"):
        host = LOOPBACK[sock.family]
    sock.connect((host, port, *rest))


def settle_deliveries() -> None:
    """Return once every datagram the kernel matched to a socket before this call is queued.

    The kernel looks a datagram's socket up and queues it within one RCU read-side section
    (in softirq); membarrier(MEMBARRIER_CMD_GLOBAL) returns after a full RCU grace period
    (synchronize_rcu), so after `withdraw` and this call a drained queue stays empty.
    Without the system call (another architecture, or nohz_full where the kernel refuses
    it), a short wait narrows the window instead of closing it."""
    number = MEMBARRIER.get(platform.machine())
    if number is not None and ctypes.sizeof(ctypes.c_void_p) == 8:  # a 64-bit process's table
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syscall(number, MEMBARRIER_CMD_GLOBAL, 0, 0) == 0:
            return
        log.debug("membarrier: %s; waiting %.2f s instead", os.strerror(ctypes.get_errno()),
                  SETTLE_FALLBACK)
    time.sleep(SETTLE_FALLBACK)
