"""Before any responder shares a port through SO_REUSEPORT, make sure nobody else holds it.

SO_REUSEPORT lets every socket of the same user join a port group, so a second healthdns (or
anything of the same user) on our port would silently take a share of the queries. A bind
without SO_REUSEPORT fails in that case and names the problem; the socket is closed at once:
the supervisor holds no socket of the group.
"""

from __future__ import annotations

import errno
import socket

from healthdns.shared.config import format_endpoint
from healthdns.shared.errors import BindError


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
