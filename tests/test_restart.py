"""The zero-loss restart of docs/operations.md ("Changing a running server"), under load:
start the new supervisor with --replace on the same addresses, wait for its ready line, stop
the old one with SIGTERM (its responders withdraw their sockets from the SO_REUSEPORT group,
drain them, then close them). Over TCP, with net.ipv4.tcp_migrate_req = 1 (set in a network
namespace of the test's own, tests/netns.py), and the warning when it is 0."""

from __future__ import annotations

import contextlib
import re
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import dns.message
import dns.rdatatype
import pytest
from harness import Backend, Server, has_ipv6, read_tcp_message
from netns import run_in_new_namespace
from test_control import call
from test_reload import config, rewrite

from healthdns.responder import sockets
from healthdns.responder.sockets import Listener, bind_all
from healthdns.supervisor import ports

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


class TcpLoad(Load):
    """Query loops over TCP: a new connection per query, as most TCP clients of DNS make one
    to retry a truncated answer. A connection reset or refused is a query lost."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.failures: list[str] = []

    def _loop(self, index: int) -> None:
        query = dns.message.make_query("static.other.test", dns.rdatatype.A)
        while not self.done.is_set():
            query.id = (query.id + 1) & 0xFFFF
            wire = query.to_wire()
            self.sent[index] += 1
            try:
                with socket.create_connection(self.address, timeout=2.0) as sock:
                    sock.sendall(struct.pack(">H", len(wire)) + wire)
                    data = read_tcp_message(sock)
            except OSError as e:
                self.failures.append(repr(e))
                continue
            if data is None:
                self.failures.append("closed without an answer")
                continue
            answer = dns.message.from_wire(data)
            if answer.id == query.id and "192.0.2.1" in answer.to_text():
                self.answered[index] += 1


@contextlib.contextmanager
def backends() -> Iterator[Backend]:
    """The two checked addresses of `config`'s pool, up, on one port (the first is yielded)."""
    first = Backend("127.0.0.1")
    second = Backend("127.0.0.2", first.port)
    first.up()
    second.up()
    try:
        yield first
    finally:
        first.close()
        second.close()


@pytest.fixture
def backend() -> Iterator[Backend]:
    with backends() as first:
        yield first


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


def test_a_restart_loses_no_tcp_connection_where_the_kernel_moves_them(tmp_path: Path) -> None:
    """A listener that closes resets what is queued on it, unless the kernel moves it to
    another listener of the group (net.ipv4.tcp_migrate_req = 1, `ports.tcp_handover`).
    With the setting at 0 this scenario lost 4 to 5 of its ~3,600 connections each run."""
    def restart() -> tuple[int, int, list[str], str]:
        with backends() as first:
            return _restart_under_tcp_load(tmp_path, first.port)
    sent, answered, failures, output = run_in_new_namespace(
        restart, {"net.ipv4.tcp_migrate_req": "1"})
    print(f"TCP restart: {answered} of {sent} answered")
    assert sent > 200 and answered == sent, f"{sent - answered} of {sent} lost: {failures[:5]}"
    assert "tcp_migrate_req" not in output  # nothing to warn about


@pytest.mark.parametrize("migrate", ["1", "0"])
def test_rolling_the_responders_over_tcp(tmp_path: Path, migrate: str) -> None:
    """A reload that replaces the responders (here: one more) hands every port over in turn.
    Where the kernel moves the connections, none is lost; where it does not, the supervisor
    says so once, at the first roll."""
    def roll() -> tuple[int, int, list[str], str]:
        with backends() as first:
            return _roll_under_tcp_load(tmp_path, first.port)

    sent, answered, failures, output = run_in_new_namespace(
        roll, {"net.ipv4.tcp_migrate_req": migrate})
    print(f"TCP roll (tcp_migrate_req = {migrate}): {answered} of {sent} answered")
    warnings = re.findall(r"resets the TCP connections.*tcp_migrate_req is 0", output)
    if migrate == "1":
        assert sent > 200 and answered == sent, f"{sent - answered} of {sent} lost: {failures[:5]}"
        assert not warnings
    else:
        assert len(warnings) == 1, output


def _restart_under_tcp_load(tmp_path: Path, port: int) -> tuple[int, int, list[str], str]:
    """The documented restart under `TcpLoad`: (sent, answered, failures, new server's log)."""
    old = Server([], tmp_path, config(port, responders=2)).start()
    new = None
    try:
        with TcpLoad(old.host, old.port) as load:
            new = Server(["--config", str(tmp_path / "healthdns.toml"), "--replace",
                          "--listen", f"{old.host}:{old.port}"]).start()
            old.stop()
            sent_before = sum(load.sent)
            new.wait_until(lambda: sum(load.sent) > 2 * sent_before, 10, "more queries")
        return sum(load.sent), sum(load.answered), load.failures, new.output()
    finally:
        if new is not None:
            new.stop()
        old.stop()


def _roll_under_tcp_load(tmp_path: Path, port: int) -> tuple[int, int, list[str], str]:
    """A reload from 2 responders to 3 under `TcpLoad`: (sent, answered, failures, log)."""
    server = Server([], tmp_path, config(port, responders=2)).start()
    try:
        with TcpLoad(server.host, server.port) as load:
            server.wait_until(lambda: sum(load.answered) > 100, 10, "TCP answers")
            rewrite(tmp_path, config(port, responders=3))
            code, answer = call(server, "POST", "/reload")
            assert code == 200, answer
            server.wait_until(lambda: all(
                re.search(rf"responder{index} exited with code 0, replaced", server.output())
                for index in (0, 1)), 10, "both old responders gone")
            sent_before = sum(load.sent)
            server.wait_until(lambda: sum(load.sent) > 2 * sent_before, 10, "more queries")
        return sum(load.sent), sum(load.answered), load.failures, server.output()
    finally:
        server.stop()


def test_a_replacing_server_warns_when_tcp_connections_may_be_reset(tmp_path: Path) -> None:
    def start() -> str:
        server = Server(["--replace"], tmp_path, config(1, responders=1)).start()
        server.stop()
        return server.output()

    output = run_in_new_namespace(start, {"net.ipv4.tcp_migrate_req": "0"})
    warning = re.search(r"WARNING.*resets the TCP connections.*tcp_migrate_req is 0.*", output)
    assert warning, output


def test_the_reason_tcp_connections_may_be_reset_follows_the_setting(tmp_path: Path) -> None:
    setting = tmp_path / "tcp_migrate_req"
    setting.write_text("1\n")
    assert ports.tcp_handover(setting) is None
    setting.write_text("0\n")
    reason = ports.tcp_handover(setting)
    assert reason is not None and "tcp_migrate_req is 0" in reason
    assert "Linux 5.14" in str(ports.tcp_handover(tmp_path / "absent"))


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
