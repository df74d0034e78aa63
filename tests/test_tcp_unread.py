"""TCP clients that pipeline queries and never read their answers (issue #20 item 11): a
responder answers a connection only while its unsent answers stay under a bound, holds its
other queries unread meanwhile, and closes it after the idle timeout. 200 of them once added
270 MiB to a responder."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import pytest
from harness import Server, config_toml

IDLE = 5.0
TOML = config_toml({"www": {"txt": [f'"{"x" * 250}"']}}, server={"tcp_idle_timeout": IDLE})
CONNECTIONS = 200
SOURCES = [f"127.0.11.{i}" for i in range(1, 5)]  # 50 connections each: under the per-client 256
GROWTH_MAX = 50 * 1024  # KiB of responder memory the 200 may add (the bound)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server([], tmp_path_factory.mktemp("unread"), TOML).start()
    yield running
    assert running.stop() == 0


def responder_pid(server: Server) -> int:
    found = re.findall(r"responder\d started \(pid (\d+)\)", server.output())
    assert len(found) == 1, server.output()
    return int(found[0])


def rss_kib(pid: int) -> int:
    """The process's resident memory; 0 once it has exited."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0
    found = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) if found is not None else 0


def sockets_of(pid: int) -> int:
    """The sockets `pid` holds open; one it closes while they are counted is not counted."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return count


def flood(server: Server, pid: int) -> tuple[list[socket.socket], int]:
    """200 connections, each sending pipelined queries until neither its send buffer nor the
    server's receive buffer takes more (the server has stopped reading them); and the most
    memory the responder held meanwhile (KiB)."""
    query = dns.message.make_query("www.example.test", "TXT").to_wire()
    chunk = (len(query).to_bytes(2, "big") + query) * 1000
    socks = []
    for i in range(CONNECTIONS):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # takes few answers
        sock.bind((SOURCES[i % len(SOURCES)], 0))
        sock.connect((server.host, server.port))
        sock.setblocking(False)
        socks.append(sock)
    most = rss_kib(pid)
    stalled_since, deadline = time.monotonic(), time.monotonic() + 30
    while time.monotonic() - stalled_since < 1.0 and time.monotonic() < deadline:
        for sock in socks:
            try:
                if sock.send(chunk):
                    stalled_since = time.monotonic()
            except (BlockingIOError, ConnectionError):
                pass  # full, or closed by the server
        most = max(most, rss_kib(pid))
        time.sleep(0.01)  # the pace of the clients: the measure is what the server holds
    return socks, most


def test_clients_that_never_read_cost_a_bounded_memory_and_are_closed(server: Server) -> None:
    pid = responder_pid(server)
    assert server.query("www.example.test", "TXT", tcp=True).answer  # warm: the table, TCP
    before, sockets_before = rss_kib(pid), sockets_of(pid)
    socks, most = flood(server, pid)
    try:
        assert rss_kib(pid), "the responder was killed (hung: its loop never turned)"
        grown = most - before
        # Others are still answered while the 200 wait for their answers to be read.
        assert server.query("www.example.test", "TXT", tcp=True, timeout=5).answer
        assert grown <= GROWTH_MAX, f"the responder grew by {grown} KiB"
        # Idle (nothing answered since they stopped reading): closed after the timeout.
        deadline = time.monotonic() + IDLE + 10
        while sockets_of(pid) > sockets_before and time.monotonic() < deadline:
            time.sleep(0.1)  # polling for the sweep to close them
        assert sockets_of(pid) <= sockets_before
    finally:
        for sock in socks:
            sock.close()


def test_a_client_that_reads_slowly_gets_every_answer(server: Server) -> None:
    """The bound only paces a client: one that reads, however late, gets every answer."""
    query = dns.message.make_query("www.example.test", "TXT")
    count = 3000  # about 900 KB of answers: far more than the bound holds
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        wires = []
        for i in range(count):
            query.id = i
            wire = query.to_wire()
            wires.append(len(wire).to_bytes(2, "big") + wire)
        sock.sendall(b"".join(wires))
        time.sleep(0.5)  # not reading for a while is the point
        ids = []
        with sock.makefile("rb") as stream:
            for _ in range(count):
                length = int.from_bytes(stream.read(2), "big")
                reply = stream.read(length)
                assert len(reply) == length > 0
                ids.append(int.from_bytes(reply[:2], "big"))
        assert ids == list(range(count))  # every answer, in order
