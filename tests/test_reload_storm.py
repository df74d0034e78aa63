"""Reload storms: many reload requests at once cost a couple of checks, stall nothing, and every
caller is answered; the watchdog never blames a child for the supervisor's own stall.

The rules, checked against a model over random schedules (`reload.Reloads` with a loader the
test holds), and then on a real server under fifty concurrent `POST /reload` calls.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import queue
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from harness import Backend, Server, config_toml
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from test_control import TOKEN, total

from healthdns.shared import config
from healthdns.supervisor import endpoint, reload
from healthdns.supervisor.arbiter import Supervisor
from healthdns.supervisor.control import Request

WAIT = 10.0  # seconds a step may take under load


@dataclass
class Check:
    """One configuration check the fake loader runs: the file version it read."""

    version: int
    release: threading.Event = field(default_factory=threading.Event)


class ReloadModel(RuleBasedStateMachine):
    """Callers ask (a `POST /reload`, or a SIGHUP: None), the file changes, checks finish, in
    any order. The rules: one check at a time; a check takes everyone waiting when it begins
    and answers exactly them, with the file as it read it after they asked; whoever asks
    while one runs waits for the next; no one waits without a check coming."""

    def __init__(self) -> None:
        super().__init__()
        self.wakeup, self.poked = socket.socketpair()
        self.wakeup.setblocking(False)
        self.version = 0
        self.checks: list[Check] = []
        self.began = threading.Event()
        self.reloads = reload.Reloads(self._load, self.wakeup)  # type: ignore[arg-type]
        self.waiting: list[tuple[reload.Caller, int]] = []  # with the version when it asked
        self.taken: list[tuple[reload.Caller, int]] = []  # those the running check answers
        self.running: Check | None = None
        self.finished = 0

    def _load(self) -> int:
        check = Check(self.version)  # the file as it is when the check reads it
        self.checks.append(check)
        self.began.set()
        assert check.release.wait(WAIT)
        return check.version

    def teardown(self) -> None:
        for check in self.checks:
            check.release.set()
        deadline = time.monotonic() + WAIT
        while self.running is not None and self.reloads.finished() is None:
            assert time.monotonic() < deadline, "the check did not finish"
            time.sleep(0.001)
        self.wakeup.close()
        self.poked.close()

    def _start(self) -> None:
        self.began.clear()
        if not self.reloads.start():
            return
        assert self.running is None, "a second check while one runs"
        assert self.began.wait(WAIT)
        self.running = self.checks[-1]
        self.taken, self.waiting = self.waiting, []
        assert all(self.running.version >= asked for _, asked in self.taken)

    @rule(signal=st.booleans())
    def ask(self, signal: bool) -> None:
        caller: reload.Caller = None if signal else concurrent.futures.Future()
        self.waiting.append((caller, self.version))
        self.reloads.ask(caller)
        self._start()

    @rule()
    def edit(self) -> None:
        self.version += 1

    @precondition(lambda self: self.running is not None)
    @rule()
    def finish(self) -> None:
        assert self.running is not None
        self.running.release.set()
        deadline = time.monotonic() + WAIT
        while (done := self.reloads.finished()) is None:
            assert time.monotonic() < deadline, "the check did not finish"
            time.sleep(0.001)
        assert self.poked.recv(16)  # the loop is woken to apply it
        callers, outcome = done
        assert len(callers) == len(self.taken)
        assert all(got is want for got, (want, _) in zip(callers, self.taken, strict=True))
        assert outcome.result() == self.running.version
        self.running, self.taken = None, []
        self.finished += 1
        self._start()

    @invariant()
    def one_check_at_a_time(self) -> None:
        assert len(self.checks) == self.finished + (self.running is not None)

    @invariant()
    def no_one_waits_without_a_check_coming(self) -> None:
        assert not self.waiting or self.running is not None


ReloadModel.TestCase.settings = settings(max_examples=60, stateful_step_count=30,
                                         deadline=None)
test_reload_requests_collapse_and_each_is_answered_by_a_later_check = ReloadModel.TestCase


# --- the watchdog and the supervisor's own stalls ---------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeProcess:
    pid = 4242
    sentinel = -1
    exitcode = None

    def __init__(self) -> None:
        self.killed = False

    def kill(self) -> None:
        self.killed = True


CFG = config.from_mapping({"server": {"hung_after": 3.0},
                           "zones": [{"origin": "example.test",
                                      "nameservers": ["ns1.example.net"],
                                      "records": {"www": {"a": ["192.0.2.1"]}}}]})


def test_a_stall_of_the_supervisor_is_not_blamed_on_its_children() -> None:
    clock = Clock()
    supervisor = Supervisor(CFG, now=clock)
    responder = supervisor.responders[0]
    process = FakeProcess()
    responder.process = process  # type: ignore[assignment]
    responder.state, responder.heard = "running", 100.0
    supervisor.listened = 100.2  # the loop looked at its pipe, then was busy with its own work
    clock.now = 130.0
    supervisor._watch()
    assert not process.killed and supervisor.counters.hung["responder"] == 0
    # It looks again and hears nothing: now the child was silent while the loop listened.
    supervisor.listened = 130.0
    supervisor._watch()
    assert process.killed and supervisor.counters.hung["responder"] == 1


# --- fifty concurrent reloads on a real server ------------------------------------------------


CALLERS = 50
SOURCES = 4  # each well under the control endpoint's connections per client


@pytest.fixture
def backend() -> Iterator[Backend]:
    up = Backend("127.0.0.1")
    up.up()
    yield up
    up.close()


def test_fifty_concurrent_reloads_kill_no_child_and_are_all_answered(
        tmp_path: Path, backend: Backend) -> None:
    check = {"port": backend.port, "interval": 0.2, "timeout": 0.2}
    server = Server([], tmp_path, config_toml(
        {"www": {"pool": {"addresses": ["127.0.0.1"], "check": check}}},
        server={"responders": 2, "hung_after": 3.0}, control={"token": TOKEN})).start()
    try:
        start = threading.Barrier(CALLERS)

        def reload_once(n: int) -> tuple[int, Any]:
            # From several loopback addresses: one client may hold only so many connections.
            source = f"127.0.0.{n % SOURCES + 1}"
            start.wait(WAIT)
            return post_reload(server, source)

        with concurrent.futures.ThreadPoolExecutor(CALLERS) as pool:
            answers = list(pool.map(reload_once, range(CALLERS)))
        assert answers == [(200, {"reloaded": True})] * CALLERS
        assert server.process is not None and server.process.poll() is None
        assert "hung; killing it" not in server.output(), server.output()
        assert total(server, "healthdns_child_hung_total", {}) == 0
        checks = total(server, "healthdns_reloads_total", {})
        assert 1 <= checks <= 5, f"{checks} checks for {CALLERS} requests"
        assert server.addresses("www.example.test") == {"127.0.0.1"}
    finally:
        assert server.stop() == 0


def post_reload(server: Server, source: str) -> tuple[int, Any]:
    host, _, port = server.control.removeprefix("http://").rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=WAIT,
                                            source_address=(source, 0))
    try:
        connection.request("POST", "/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


class FakeControl:
    def __init__(self) -> None:
        self.requests: queue.SimpleQueue[Request] = queue.SimpleQueue()


def test_one_turn_of_the_loop_applies_a_bounded_number_of_write_calls() -> None:
    supervisor = Supervisor(CFG)
    control = FakeControl()
    supervisor.control = control  # type: ignore[assignment]
    asked = endpoint.REQUESTS_PER_TURN + 36
    for n in range(asked):
        control.requests.put(Request("remove", {"key": f"192.0.2.{n}"},
                                     concurrent.futures.Future()))
    supervisor.endpoint.handle()
    assert control.requests.qsize() == 36
    supervisor.wakeup_r.setblocking(False)
    assert supervisor.wakeup_r.recv(16)  # the next turn comes at once, for the rest
    supervisor.endpoint.handle()
    assert control.requests.empty()
