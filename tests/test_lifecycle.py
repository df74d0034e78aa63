"""Processes and signals: stop cleanly, never leave orphans."""

from __future__ import annotations

import os
import signal
import time

import pytest

from harness import Server, children_of

ARGS = ["--demo", "--listen", "127.0.0.1:0", "--responders", "2"]


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if os.path.exists(f"/proc/{p}") and not _zombie(p)]
        time.sleep(0.05)
    return alive


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_exits_zero_within_5s_and_leaves_no_process(signum: int) -> None:
    server = Server(ARGS).start()
    children = list(children_of(server.pid))
    assert len(children) >= 4  # prober, signer, two responders
    started = time.monotonic()
    os.kill(server.pid, signum)
    assert server.process is not None
    assert server.process.wait(5) == 0
    assert time.monotonic() - started < 5
    assert wait_gone(children, 1) == []


def test_children_exit_when_the_supervisor_is_killed() -> None:
    server = Server(ARGS).start()
    children = list(children_of(server.pid))
    os.kill(server.pid, signal.SIGKILL)
    assert server.process is not None
    server.process.wait(5)
    assert wait_gone(children, 5) == [], "children outlived their supervisor"
