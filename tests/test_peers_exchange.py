"""The peers process's exchange in one process, with its clock driven by the test: the verdict
it hands the supervisor over time, and what it sends its peers."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any

import pytest

from healthdns.peers.exchange import Exchange
from healthdns.peers.sync import Tally
from healthdns.peers.wire import Report
from healthdns.shared import config, messages
from tests.test_config_peers import peers

T = "tcp 127.0.0.1 80 1/1/1/1"


class Clock:
    def __init__(self) -> None:
        self.at = 100.0

    def __call__(self) -> float:
        return self.at


@pytest.fixture
def pipe() -> Iterator[tuple[Connection, Connection]]:
    ours, theirs = Pipe()
    yield ours, theirs
    ours.close()
    theirs.close()


def exchange(conn: Connection, clock: Clock, **fields: Any) -> Exchange:
    spec = config.from_mapping(peers(**fields)).peers
    return Exchange(0, spec, socket.socket(), conn, now=clock, wall=lambda: 1.8e9 + clock.at)


def verdicts(conn: Connection) -> list[dict[str, bool]]:
    out = []
    while conn.poll(0):
        message = messages.decode_from("peers", conn.recv_bytes())
        assert isinstance(message, messages.Verdict)
        out.append(message.states)
    return out


def hear(ex: Exchange, name: str, states: dict[str, bool], clock: Clock) -> None:
    ex.peers[name].accept(Report(name, 1.8e9 + clock.at, states), Tally.of(states), clock.at)
    ex.version += 1
    ex.decide()


def test_a_flip_that_waits_happens_when_due_without_a_new_report(
        pipe: tuple[Connection, Connection]) -> None:
    """fall = 3 at interval 1: the votes say down at 101, the verdict goes down at 103 on
    the tick, though nothing new came; hold_down 5 then keeps it down until 108."""
    ours, theirs = pipe
    clock = Clock()
    ex = exchange(theirs, clock, fall=3, rise=1, hold_down=5.0, interval=1.0,
                  stale_after=60.0)
    ex.own = {T: True}
    hear(ex, "b", {T: True}, clock)
    hear(ex, "c", {T: True}, clock)
    assert verdicts(ours) == [{T: True}]
    clock.at = 101.0
    hear(ex, "b", {T: False}, clock)
    hear(ex, "c", {T: False}, clock)
    for clock.at in (101.5, 102.0, 102.9):
        ex.decide()
    assert verdicts(ours) == []
    clock.at = 103.0
    ex.decide()
    assert verdicts(ours) == [{T: False}]
    hear(ex, "b", {T: True}, clock)
    hear(ex, "c", {T: True}, clock)
    for clock.at in (104.0, 107.9):
        ex.decide()
    assert verdicts(ours) == []
    clock.at = 108.0
    ex.decide()
    assert verdicts(ours) == [{T: True}]
