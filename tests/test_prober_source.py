"""`prober.source`: checks are sent from the configured address (a vantage on a host with
several), TCP and HTTP alike; a target of the other family is left to the kernel's choice."""

from __future__ import annotations

import asyncio
import socket
import threading

from healthdns.prober.checks import Checker
from healthdns.shared.config import CheckSpec

SOURCE = "127.0.0.9"


def serve_once(sock: socket.socket, seen: list[str]) -> None:
    conn, (peer, _) = sock.accept()
    with conn:
        seen.append(peer)
        conn.settimeout(2)
        try:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        except OSError:
            pass  # a TCP check closes at once


async def check(sources: tuple[str, ...], spec: CheckSpec) -> tuple[bool, str]:
    checker = Checker(sources)
    done: asyncio.Future[tuple[bool, str]] = asyncio.get_running_loop().create_future()
    checker.start("127.0.0.1", spec, lambda ok, why: done.set_result((ok, why)))
    try:
        return await done
    finally:
        await checker.close()


def seen_from(sources: tuple[str, ...], kind: str) -> tuple[tuple[bool, str], list[str]]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        seen: list[str] = []
        thread = threading.Thread(target=serve_once, args=(sock, seen))
        thread.start()
        spec = CheckSpec(port=sock.getsockname()[1], kind=kind,  # type: ignore[arg-type]
                         timeout=2.0)
        result = asyncio.run(check(sources, spec))
        thread.join(5)
    return result, seen


def test_tcp_and_http_checks_are_sent_from_the_source() -> None:
    for kind in ("tcp", "http"):
        (ok, why), seen = seen_from((SOURCE,), kind)
        assert ok, why
        assert seen == [SOURCE], kind


def test_a_source_of_the_other_family_leaves_the_kernel_to_choose() -> None:
    for kind in ("tcp", "http"):
        (ok, why), seen = seen_from(("::1",), kind)
        assert ok, why
        assert seen == ["127.0.0.1"], kind
