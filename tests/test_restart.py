"""The zero-loss restart of docs/operations.md ("Changing a running server"), under load:
start the new supervisor with --replace on the same addresses, wait for its ready line, stop
the old one with SIGTERM (its responders withdraw their sockets from the SO_REUSEPORT group,
drain them, then close them)."""

from __future__ import annotations

import re
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import dns.message
import dns.rdatatype
import pytest
from harness import Backend, Server, has_ipv6
from test_reload import config

from healthdns.responder import sockets
from healthdns.responder.sockets import Listener, bind_all

CLIENTS = 4  # query loops at once, each from its own sockets: spread over every responder


class Load:
    """Query loops that count the queries sent and the right answers received."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.done = threading.Event()
        self.sent = [0] * CLIENTS
        self.answered = [0] * CLIENTS
        self.threads = [threading.Thread(target=self._loop, args=(i,)) for i in range(CLIENTS)]

    def __enter__(self) -> Self:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join()

    def _loop(self, index: int) -> None:
        query = dns.message.make_query("static.other.test", dns.rdatatype.A)
        while not self.done.is_set():
            # A new socket (a new source port) each time: the kernel hashes each to any of
            # the responders of either server.
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(2.0)
                query.id = (query.id + 1) & 0xFFFF
                sock.sendto(query.to_wire(), self.address)
                self.sent[index] += 1
                try:
                    answer = dns.message.from_wire(sock.recv(65535))
                except TimeoutError:
                    continue
                if answer.id == query.id and "192.0.2.1" in answer.to_text():
                    self.answered[index] += 1


@pytest.fixture
def backend() -> Iterator[Backend]:
    first = Backend("127.0.0.1")
    second = Backend("127.0.0.2", first.port)
    first.up()
    second.up()
    yield first
    first.close()
    second.close()


def test_a_restart_by_the_documented_procedure_loses_no_query(
        tmp_path: Path, backend: Backend) -> None:
    state = tmp_path / "state.json"
    extra = f'[control]\nstate_file = "{state}"\n'
    toml = config(backend.port, responders=2).replace("[control]\n", extra, 1)
    old = Server([], tmp_path, toml).start()
    new = None
    try:
        with Load(old.host, old.port) as load:
            new = Server(["--config", str(tmp_path / "healthdns.toml"), "--replace",
                          "--listen", f"{old.host}:{old.port}"]).start()
            old.stop()  # SIGTERM: it exits once its responders have drained their sockets
            assert re.search(r"responder\d exited", old.output()) is None  # no crash on the way
            # The new server alone, for as many queries again.
            sent_before = sum(load.sent)
            new.wait_until(lambda: sum(load.sent) > 2 * sent_before, 10, "more queries")
        sent, answered = sum(load.sent), sum(load.answered)
        print(f"restart: {answered} of {sent} answered")
        assert sent > 200 and answered == sent, f"{sent - answered} of {sent} lost"
    finally:
        if new is not None:
            new.stop()
        old.stop()


SPRAY = 300  # datagrams per phase, each from a new source port: hashed over the whole group


@pytest.mark.parametrize("host", ["127.0.0.1", pytest.param("::1", marks=pytest.mark.skipif(
    not has_ipv6(), reason="this host has no IPv6 loopback"))])
def test_a_withdrawn_socket_keeps_its_queue_and_gets_no_new_datagram(host: str) -> None:
    """The stopping responder's step (`sockets.withdraw`, then `settle_deliveries`): its
    socket still holds what was queued, the group's other sockets take every datagram sent
    after, and once it is closed the group spreads the load over all its members again."""
    first = bind_all([(host, 0, True)])[0]
    group = [first, *(bind_all([(host, first.port, True)])[0] for _ in range(2))]
    try:
        _spray(host, first.port, "before")
        sockets.withdraw(first.udp)
        sockets.settle_deliveries()
        _spray(host, first.port, "after")
        got = _collect(group, 2 * SPRAY)  # every datagram, each on exactly one socket
        assert got[0] and all(tag == "before" for tag in got[0]), got[0]
        assert sum(tag == "after" for tags in got[1:] for tag in tags) == SPRAY
        assert all(len(tags) >= 0.1 * SPRAY for tags in got[1:])  # a share for each
        first.close()
        group[0] = bind_all([(host, first.port, True)])[0]  # a successor joins
        _spray(host, first.port, "later")
        spread = [len(tags) for tags in _collect(group, SPRAY)]
        # Balanced as before: the connected member left nothing behind in the group.
        assert all(n >= 0.15 * SPRAY for n in spread), spread
    finally:
        for listener in group:
            listener.close()


def _spray(host: str, port: int, tag: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for i in range(SPRAY):
        with socket.socket(family, socket.SOCK_DGRAM) as client:
            client.sendto(f"{tag} {i}".encode(), (host, port))


def _collect(group: list[Listener], expected: int) -> list[list[str]]:
    """The tags each socket received, waiting (at most 5 s) until `expected` came in all."""
    got: list[list[str]] = [[] for _ in group]
    deadline = time.monotonic() + 5.0
    while sum(map(len, got)) < expected and time.monotonic() < deadline:
        ready, _, _ = select.select([x.udp for x in group], [], [], 0.1)
        for i, listener in enumerate(group):
            while listener.udp in ready:
                try:
                    got[i].append(listener.udp.recv(64).decode().split()[0])
                except BlockingIOError:
                    break
    assert sum(map(len, got)) == expected, [len(tags) for tags in got]
    return got
