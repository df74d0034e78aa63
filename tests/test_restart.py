"""The zero-loss restart of docs/operations.md ("Changing a running server"), under load:
start the new supervisor with --replace on the same addresses, wait for its ready line, stop
the old one with SIGTERM (its responders drain their sockets, then close them)."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rdatatype
import pytest
from harness import Backend, Server
from test_reload import config

CLIENTS = 4  # query loops at once, each from its own sockets: spread over every responder


class Load:
    """Query loops that count the queries sent and the right answers received."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.done = threading.Event()
        self.sent = [0] * CLIENTS
        self.answered = [0] * CLIENTS
        self.threads = [threading.Thread(target=self._loop, args=(i,)) for i in range(CLIENTS)]

    def __enter__(self) -> Load:
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
        assert sent > 200 and answered >= 0.9999 * sent, f"{sent - answered} of {sent} lost"
    finally:
        if new is not None:
            new.stop()
        old.stop()
