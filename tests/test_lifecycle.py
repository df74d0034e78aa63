"""Processes and signals: stop cleanly, never leave orphans."""

from __future__ import annotations

import os
import signal
import time

import pytest
from harness import Server, children_of, has_ipv6

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


@pytest.mark.skipif(not has_ipv6(), reason="this host has no IPv6 loopback")
def test_serves_over_ipv6() -> None:
    server = Server(["--demo", "--listen", "[::1]:0", "--responders", "1"]).start()
    try:
        assert server.host == "::1"
        assert server.addresses("static.demo.test") == {"192.0.2.10", "192.0.2.11"}
        tcp = server.query("static.demo.test", "AAAA", tcp=True)
        assert [rd.to_text() for rd in tcp.answer[0]] == ["2001:db8::10"]
    finally:
        assert server.stop() == 0


def test_one_datagram_at_a_time_without_batching(tmp_path: object) -> None:
    from pathlib import Path

    server = Server(["--responders", "1"], Path(str(tmp_path)), """
        [server]
        listen = ["127.0.0.1:0"]
        udp_batch = 0
        packet_cache = 0

        [[zones]]
        origin = "example.test"
        nameservers = ["ns1.example.net"]

        [zones.records.www]
        a = ["192.0.2.1"]
    """).start()
    try:
        for _ in range(3):
            assert server.addresses("www.example.test") == {"192.0.2.1"}
        assert server.query("nothere.example.test").rcode() == 3
    finally:
        assert server.stop() == 0
