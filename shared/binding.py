"""Binding the sockets a role serves on, each in a SO_REUSEPORT group: the responders' UDP and
TCP (responder/sockets.py), the transfer process's TCP."""

from __future__ import annotations

import errno
import socket

from healthdns.shared.config import format_endpoint
from healthdns.shared.errors import BindError

UDP_BUFFER = 4 * 1024 * 1024  # absorbs bursts while a snapshot is being swapped in
TCP_BACKLOG = 1024


def bind(host: str, port: int, kind: socket.SocketKind) -> socket.socket:
    """One socket of `kind` bound to `host` and `port` in a SO_REUSEPORT group (listening, for
    TCP), non-blocking; BindError names the address when it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    proto = "udp" if kind == socket.SOCK_DGRAM else "tcp"
    try:
        sock = socket.socket(family, kind)
    except OSError as e:
        raise BindError(f"cannot listen on {format_endpoint(host, port)} ({proto}): "
                        f"{e.strerror}") from e
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_DGRAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_BUFFER)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(TCP_BACKLOG)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        hint = " (ports below 1024 need root or CAP_NET_BIND_SERVICE)" \
            if e.errno == errno.EACCES else ""
        raise BindError(f"cannot listen on {format_endpoint(host, port)} ({proto}): "
                        f"{e.strerror}{hint}") from e
    return sock


def bind_tcp(host: str, port: int) -> socket.socket:
    """One listening TCP socket, as the responders bind theirs (the transfer process's)."""
    return bind(host, port, socket.SOCK_STREAM)
