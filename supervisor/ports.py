"""Before any responder shares a port through SO_REUSEPORT, make sure nobody else holds it;
and whether a responder that hands its ports over loses TCP connections (`tcp_handover`).

SO_REUSEPORT lets every socket of the same user join a port group, so a second healthdns (or
anything of the same user) on our port would silently take a share of the queries. A bind
without SO_REUSEPORT fails in that case and names the problem; the socket is closed at once:
the supervisor holds no socket of the group.
"""

from __future__ import annotations

import errno
import logging
import socket
from pathlib import Path

from healthdns.shared.config import format_endpoint
from healthdns.shared.errors import BindError

log = logging.getLogger("healthdns.supervisor")

# Linux 5.14+, per network namespace (a container has its own): read as a listener closes.
MIGRATE_REQ = Path("/proc/sys/net/ipv4/tcp_migrate_req")


def check_free(endpoints: list[tuple[str, int, bool]]) -> None:
    for host, port, required in endpoints:
        if port == 0:
            continue
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for kind, proto in ((socket.SOCK_DGRAM, "udp"), (socket.SOCK_STREAM, "tcp")):
            try:
                sock = socket.socket(family, kind)
            except OSError:
                if required:
                    raise BindError(f"cannot listen on {format_endpoint(host, port)}: "
                                    "address family not supported") from None
                break
            with sock:
                if kind == socket.SOCK_STREAM:  # ignore TIME_WAIT leftovers, not listeners
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    sock.bind((host, port))
                except OSError as e:
                    if not required and e.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                        break
                    hint = " (ports below 1024 need root or CAP_NET_BIND_SERVICE)" \
                        if e.errno == errno.EACCES else ""
                    raise BindError(f"cannot listen on {format_endpoint(host, port)} ({proto}): "
                                    f"{e.strerror}{hint}") from None


def tcp_handover(setting: Path = MIGRATE_REQ) -> str | None:
    """Why TCP connections may be reset as a responder hands its ports to its successor (a
    restart with --replace, a reload that replaces the responders), or None if they are not.

    Closing a TCP listener resets the connections still in its queues: those whose handshake
    completed after its last accept (TCP_DEFER_ACCEPT: whose query came after it) and those
    still in their handshake. The responder answers its accept queue before it closes, but
    cannot stop the kernel from choosing it for new connections until it closes. With
    net.ipv4.tcp_migrate_req = 1 the kernel moves them to another listener of the
    SO_REUSEPORT group instead (the successor, the other responders): no connection is lost.
    UDP needs nothing: a responder withdraws its UDP sockets first (responder/sockets.py)."""
    try:
        value = setting.read_text().strip()
    except OSError:
        return ("this kernel cannot move them to the successor (net.ipv4.tcp_migrate_req needs "
                "Linux 5.14)")
    if value != "0":
        return None
    return ("net.ipv4.tcp_migrate_req is 0; set it to 1 to have the kernel move them to the "
            "successor (docs/operations.md, \"Changing a running server\")")


def warn_tcp_handover(setting: Path = MIGRATE_REQ) -> bool:
    """Log `tcp_handover`'s reason, if there is one; whether there was."""
    reason = tcp_handover(setting)
    if reason is not None:
        log.warning("a responder handing its ports over resets the TCP connections that reach "
                    "it as it closes its listeners: %s", reason)
    return reason is not None
