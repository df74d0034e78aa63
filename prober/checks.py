"""Health checks: one attempt against one target, reported as ``(ok, reason)``.

A check never raises for a network failure: the reason is what the operator reads in the log
("connection refused", "timeout after 2 s"). Anything else it raises is a bug.
"""

from __future__ import annotations

import asyncio
import os
import socket

from healthdns.shared.config import CheckSpec, format_endpoint

Result = tuple[bool, str]


async def probe(address: str, spec: CheckSpec) -> Result:
    """Run the check `spec` describes against `address` (the only kind so far is "tcp")."""
    return await tcp_connect(address, spec.port, spec.timeout)


async def tcp_connect(address: str, port: int, timeout: float) -> Result:
    """Pass if a TCP handshake with (address, port) completes within `timeout` seconds.

    A bare non-blocking socket rather than `open_connection`: we send nothing, so streams and
    transports would only add allocations per check. The socket is closed as soon as the
    handshake ends, and also when the check is cancelled (the prober is stopping).
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:  # e.g. no IPv6 on this host: the target is unreachable from here
        return False, _why(e)
    with sock:
        sock.setblocking(False)
        try:
            async with asyncio.timeout(timeout):
                await asyncio.get_running_loop().sock_connect(sock, (address, port))
        except TimeoutError:
            return False, f"timeout after {timeout:g} s"
        except OSError as e:
            return False, _why(e)
    return True, "connected"


def label(address: str, spec: CheckSpec) -> str:
    """How the log names a target: "tcp 192.0.2.1:80", "tcp [2001:db8::1]:443"."""
    return f"{spec.kind} {format_endpoint(address, spec.port)}"


def _why(error: OSError) -> str:
    # asyncio words a failed connect as "Connect call failed (addr)"; the errno says it better.
    if error.errno:
        return os.strerror(error.errno).lower()
    return str(error) or type(error).__name__
