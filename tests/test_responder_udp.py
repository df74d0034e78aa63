"""The batched UDP path against forged input: one bad datagram costs only its own answer."""

from __future__ import annotations

import ctypes
import errno
import os
import re
import signal
import socket
import struct
from collections.abc import Iterator

import dns.message
import pytest
from harness import Server

from healthdns.responder import mmsg

LEGITIMATE = 10


@pytest.fixture
def one_responder() -> Iterator[tuple[Server, int]]:
    """A server with one responder (so every datagram meets the same socket) and its pid."""
    server = Server(["--demo", "--listen", "127.0.0.1:0", "--responders", "1"]).start()
    try:
        pids = re.findall(r"responder\d+ started \(pid (\d+)\)", server.output())
        assert len(pids) == 1, server.output()
        yield server, int(pids[0])
    finally:
        assert server.stop() == 0


def forge_from_port_zero(port: int, payload: bytes) -> None:
    """A UDP datagram from 127.0.0.1 port 0, which no ordinary socket can send from.

    Checksum 0 means "none" for UDP over IPv4, so the kernel delivers it as it is.
    """
    header = struct.pack(">HHHH", 0, port, 8 + len(payload), 0)
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP) as raw:
        raw.sendto(header + payload, ("127.0.0.1", 0))


def query(qid: int) -> bytes:
    q = dns.message.make_query("static.demo.test", "A", use_edns=False)
    q.id = qid
    return q.to_wire()


@pytest.mark.skipif(os.geteuid() != 0, reason="forging a datagram needs a raw socket (root)")
def test_a_port_zero_query_does_not_drop_the_rest_of_its_batch(
        one_responder: tuple[Server, int]) -> None:
    server, responder = one_responder
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(LEGITIMATE)]
    try:
        for client in clients:
            client.bind(("127.0.0.1", 0))
            client.settimeout(2.0)
        # Stopped, the responder reads nothing: the forged query and the legitimate ones
        # queue on its socket in this order and arrive in one recvmmsg batch.
        os.kill(responder, signal.SIGSTOP)
        try:
            forge_from_port_zero(server.port, query(0xDEAD))
            for n, client in enumerate(clients):
                client.sendto(query(n), (server.host, server.port))
        finally:
            os.kill(responder, signal.SIGCONT)
        answered = []
        for n, client in enumerate(clients):
            try:
                answered.append(struct.unpack_from(">H", client.recv(65535))[0] == n)
            except TimeoutError:
                answered.append(False)
        assert answered == [True] * LEGITIMATE
    finally:
        for client in clients:
            client.close()


class FakeSendmmsg:
    """sendmmsg as Linux behaves: stops at a failing message, -1 only when it is the first."""

    def __init__(self, base: int, failing: set[int], most: int) -> None:
        self.base, self.failing, self.most = base, failing, most
        self.calls: list[tuple[int, int]] = []
        self.delivered: list[int] = []

    def __call__(self, fd: int, vector: ctypes.c_void_p, count: int, flags: int) -> int:
        first = ((vector.value or 0) - self.base) // ctypes.sizeof(mmsg._Mmsghdr)
        self.calls.append((first, count))
        sent = 0
        while sent < min(count, self.most) and first + sent not in self.failing:
            self.delivered.append(first + sent)
            sent += 1
        if sent == 0:
            ctypes.set_errno(errno.EINVAL)
            return -1
        return sent


@pytest.mark.skipif(not mmsg.available(), reason="recvmmsg/sendmmsg are Linux calls")
@pytest.mark.parametrize("failing", [set(), {0}, {3}, {0, 1, 2}, {9}, set(range(10))])
@pytest.mark.parametrize("most", [1, 4, 10])
def test_every_failed_send_is_skipped_and_the_rest_sent(failing: set[int], most: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        batch = mmsg.Batch(sock, 16)
        fake = FakeSendmmsg(ctypes.addressof(batch.smsgs), failing, most)
        batch._sendmmsg = fake
        first = fake(batch.fd, batch._smsgs_at[0], 10, 0)  # as `serve` sends a batch
        if first != 10:
            batch._send_rest(first, 10)
    assert fake.delivered == sorted(set(range(10)) - failing)  # each once, in order
    assert batch.send_failures == len(failing)
    assert all(first + count == 10 for first, count in fake.calls)  # always up to the end


@pytest.mark.skipif(not mmsg.available(), reason="recvmmsg/sendmmsg are Linux calls")
def test_an_answer_longer_than_a_send_slot_costs_only_itself() -> None:
    """Send slots are as long as the longest answer a responder gives over UDP (its payload
    size), not 64 KiB each: an answer that would spill into the next slot is a bug, dropped
    and reported, and the others of the batch go out whole."""
    slot = 600
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        server.bind(("127.0.0.1", 0))
        server.settimeout(2.0)
        client.bind(("127.0.0.1", 0))
        client.settimeout(2.0)
        batch = mmsg.Batch(server, 8, slot)
        for n in range(4):
            client.sendto(bytes([n]) * 12, server.getsockname())
        bugs: list[bytes] = []

        def answer(data: bytes, transport: int) -> bytes:  # the query's first octet, repeated
            return data[:1] * (slot + 1 if data[0] == 1 else slot)

        got = 0
        while got < 4:
            got += max(0, batch.serve(answer, bugs.append))
        received = sorted(client.recv(65535) for _ in range(3))
    assert bugs == [bytes([1]) * 12]
    assert received == [bytes([n]) * slot for n in (0, 2, 3)]


@pytest.mark.skipif(not mmsg.available(), reason="recvmmsg/sendmmsg are Linux calls")
def test_a_datagram_over_4096_octets_is_dropped_and_the_rest_of_its_batch_answered() -> None:
    """No DNS query is longer than MAX_QUERY octets: a longer datagram (cut short by the
    kernel) is never passed on; one of exactly MAX_QUERY octets is, and whole."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        server.bind(("127.0.0.1", 0))
        client.bind(("127.0.0.1", 0))
        client.settimeout(2.0)
        batch = mmsg.Batch(server, 8, 512)
        sizes = [12, mmsg.MAX_QUERY + 1, mmsg.MAX_QUERY, 60_000, 13]
        for size in sizes:
            client.sendto(b"q" * size, server.getsockname())
        seen: list[int] = []

        def answer(data: bytes, transport: int) -> bytes:
            seen.append(len(data))
            return str(len(data)).encode()

        got = 0
        while got < len(sizes):
            got += max(0, batch.serve(answer, print))
        received = sorted(client.recv(100) for _ in range(3))
    assert seen == [12, mmsg.MAX_QUERY, 13]
    assert received == sorted(str(n).encode() for n in seen)
