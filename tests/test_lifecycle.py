"""Processes and signals: stop cleanly, never leave orphans."""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import threading
import time

import pytest
from harness import Server, config_toml, has_ipv6

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
    children = list(server.children())
    assert len(children) >= 4  # prober, signer, two responders
    started = time.monotonic()
    os.kill(server.pid, signum)
    assert server.process is not None
    assert server.process.wait(5) == 0
    assert time.monotonic() - started < 5
    assert wait_gone(children, 1) == []


def test_children_exit_when_the_supervisor_is_killed() -> None:
    server = Server(ARGS).start()
    children = list(server.children())
    os.kill(server.pid, signal.SIGKILL)
    assert server.process is not None
    server.process.wait(5)
    assert wait_gone(children, 5) == [], "children outlived their supervisor"


def hup_the_group_until(server: Server, done: threading.Event) -> None:
    """SIGHUP to the server's whole process group, every few ms, from the moment the supervisor
    handles signals (it has started a child) until `done`."""
    while not done.wait(0.005):
        if any("prober started" in line for line in server.lines):
            os.killpg(server.pid, signal.SIGHUP)


def lasting(server: Server) -> set[int]:
    """The server's processes but the configuration check a reload runs for a moment (one
    may still be checking what the HUPs asked for: it ends by itself)."""
    return {pid for pid, cmd in server.children().items()
            if "healthdns.supervisor.validate" not in cmd}


def test_group_sighups_kill_nothing_and_print_nothing_outside_the_log(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Its own process group, as a shell's job control gives it: the group is what a
    # `kill -HUP -PGID` reaches, and this test's process stays out of it.
    monkeypatch.setattr(subprocess, "Popen", functools.partial(subprocess.Popen, process_group=0))
    server = Server(ARGS)
    done = threading.Event()
    hups = threading.Thread(target=hup_the_group_until, args=(server, done))
    hups.start()
    try:
        server.start()  # start-up under a hail of group HUPs
    finally:
        done.set()
        hups.join()
    try:
        children = lasting(server)
        for _ in range(3):  # and some while it serves
            os.killpg(server.pid, signal.SIGHUP)
            server.wait_for("SIGHUP: configuration reload", 5)
        victim = int(re.findall(r"responder1 started \(pid (\d+)\)", server.output())[-1])
        os.kill(victim, signal.SIGKILL)
        respawned = int(server.wait_for(r"responder1 started \(pid (\d+)\)", 5).group(1))
        assert server.addresses("static.demo.test") == {"192.0.2.10", "192.0.2.11"}
        assert lasting(server) == children - {victim} | {respawned}, \
            "a group SIGHUP killed a child (the resource tracker?)"
        exits = re.findall(r"\S+ exited with code \S+", server.output())
        assert exits == ["responder1 exited with code -9;"]
        for raw in ("UserWarning", "Traceback"):
            assert raw not in server.output()
    finally:
        assert server.stop() == 0


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

    toml = config_toml({"www": {"a": ["192.0.2.1"]}},
                       server={"responders": None, "udp_batch": 0, "packet_cache": 0})
    server = Server(["--responders", "1"], Path(str(tmp_path)), toml).start()
    try:
        for _ in range(3):
            assert server.addresses("www.example.test") == {"192.0.2.1"}
        assert server.query("nothere.example.test").rcode() == 3
    finally:
        assert server.stop() == 0
