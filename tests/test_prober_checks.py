"""The prober against real sockets on loopback: the TCP check, then the whole process."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import multiprocessing
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import pytest
from harness import Backend, has_ipv6

from healthdns.prober.checks import Checker, probe, tcp_connect
from healthdns.prober.main import run
from healthdns.prober.scheduler import Scheduler
from healthdns.shared import config, messages
from healthdns.shared.config import CheckSpec


@pytest.mark.parametrize("host", [
    "127.0.0.1",
    pytest.param("::1", marks=pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback")),
])
def test_a_listening_port_passes(host: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.create_server((host, 0), family=family) as listener:
        port = listener.getsockname()[1]
        assert asyncio.run(tcp_connect(host, port, 1.0)) == (True, "connected")


def test_a_closed_port_is_refused() -> None:
    # Bound but not listening: the port is ours (no race with other tests) and SYNs get a RST.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        assert asyncio.run(tcp_connect("127.0.0.1", port, 1.0)) == (False, "connection refused")


def test_probe_uses_the_spec() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        spec = CheckSpec(port=listener.getsockname()[1], timeout=1.0)
        assert asyncio.run(probe("127.0.0.1", spec)) == (True, "connected")


@contextlib.contextmanager
def _full_accept_queue() -> Iterator[int]:
    """A listener that never accepts and has a full queue: Linux drops further SYNs silently."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        fillers = [socket.socket() for _ in range(3)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(address)
            yield address[1]
        finally:
            for filler in fillers:
                filler.close()


@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux dropping SYNs on overflow")
def test_a_silent_port_times_out() -> None:
    with _full_accept_queue() as port:
        started = time.monotonic()
        result = asyncio.run(tcp_connect("127.0.0.1", port, 0.2))
        elapsed = time.monotonic() - started
    assert result == (False, "timeout after 0.2 s")
    assert 0.15 < elapsed < 1.0


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux dropping SYNs on overflow")
def test_a_check_that_outlives_its_timeout_is_cancelled_and_its_socket_closed() -> None:
    with _full_accept_queue() as port:
        before = _open_files()
        assert asyncio.run(tcp_connect("127.0.0.1", port, 0.05)) == (False, "timeout after 0.05 s")
        assert _open_files() == before


@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux dropping SYNs on overflow")
def test_a_short_timeout_is_not_held_up_by_a_longer_one() -> None:
    async def scenario() -> list[tuple[float, bool, str]]:
        results: list[tuple[float, bool, str]] = []
        started = time.monotonic()
        with _full_accept_queue() as port:
            checker = Checker()
            for timeout in (2.0, 0.1):
                checker.start("127.0.0.1", CheckSpec(port=port, timeout=timeout, interval=5),
                              lambda ok, why: results.append((time.monotonic() - started, ok,
                                                              why)))
            while not results:
                await asyncio.sleep(0.01)
            await checker.close()
        return results

    ((after, ok, why),) = asyncio.run(scenario())
    assert (ok, why) == (False, "timeout after 0.1 s")
    assert 0.09 < after < 0.5


def test_connects_that_completed_while_the_loop_was_held_up_count_as_connected() -> None:
    """1,500 connects complete in the kernel while the loop is busy past their timeout (a
    first round of thousands, a stalled process). Before, a turn of the loop read at most
    1,023 of them, and their deadline timer, run next, failed the rest as timeouts."""
    count = 1500
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < count + 200:
        pytest.skip(f"the open files limit ({hard}) is too low")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, count + 200), hard))

    async def scenario() -> list[tuple[bool, str]]:
        results: list[tuple[bool, str]] = []
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(4096)  # the kernel completes each handshake; none is accepted
            port = listener.getsockname()[1]
            checker = Checker()
            spec = CheckSpec(port=port, timeout=0.2, interval=5)
            for _ in range(count):
                checker.start("127.0.0.1", spec, lambda ok, why: results.append((ok, why)))
            time.sleep(0.5)  # noqa: ASYNC251 - the loop held up past every deadline, on purpose
            while len(results) < count:
                await asyncio.sleep(0.01)
            await checker.close()
        return results

    try:
        results = asyncio.run(scenario())
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert collections.Counter(results) == {(True, "connected"): count}


def test_a_stopped_scheduler_starts_no_check_on_its_closed_checker() -> None:
    """A reconfigure read while the prober stops (or a drain of waiting checks queued by the
    last results) started a check on the closed checker: ValueError in a callback, which
    the prober takes for a bug."""
    async def scenario() -> None:
        with _full_accept_queue() as port:
            spec = CheckSpec(port=port, timeout=0.05, interval=1)
            scheduler = Scheduler({"a": ("127.0.0.1", spec)}, lambda states, full: None)
            task = asyncio.create_task(scheduler.serve())
            await asyncio.sleep(0.2)  # the first round is done, the periodic checks run
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            scheduler.reconfigure({"a": ("127.0.0.1", spec), "b": ("127.0.0.2", spec)})

    asyncio.run(scenario())


def test_close_cancels_checks_in_flight_without_calling_back() -> None:
    async def scenario() -> tuple[list[tuple[bool, str]], int]:
        results: list[tuple[bool, str]] = []
        with _full_accept_queue() as port:
            before = _open_files()
            checker = Checker()
            for _ in range(3):
                checker.start("127.0.0.1", CheckSpec(port=port, timeout=5.0, interval=5.0),
                              lambda ok, reason: results.append((ok, reason)))
            assert _open_files() == before + 1 + 3  # its epoll set, and a socket each
            await checker.close()
            return results, _open_files() - before

    assert asyncio.run(scenario()) == ([], 0)


def test_the_checked_address_can_differ_from_the_served_one() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        cfg = config.from_mapping({"zones": [{
            "origin": "example.test", "nameservers": ["ns1.example.test"],
            "records": {"www": {"pool": {"addresses": ["192.0.2.1", "192.0.2.2"], "check": {
                "port": port, "address": "127.0.0.1"}}}}}]})
        (target, (address, spec)), = cfg.checks().items()  # one check judges both
        assert address == "127.0.0.1" and target == spec.target("192.0.2.2")
        assert asyncio.run(probe(address, spec)) == (True, "connected")


# ---------------------------------------------------------------------------------------------
# The whole process, started the way the supervisor starts it.


def _config(port: int) -> config.Config:
    check = {"port": port, "interval": 0.2, "timeout": 0.1}
    return config.from_mapping({"zones": [{
        "origin": "example.test",
        "nameservers": ["ns1.example.test"],
        "records": {
            "www": {"pool": {"addresses": ["127.0.0.1"], "check": check | {"rise": 1, "fall": 1}}},
            "api": {"pool": {"addresses": ["127.0.0.1"], "check": check | {"rise": 2, "fall": 2}}},
        },
    }]})


STATIC_ONLY = config.from_mapping({"zones": [{
    "origin": "example.test",
    "nameservers": ["ns1.example.test"],
    "records": {"www": {"a": ["192.0.2.1"]}},
}]})


@contextlib.contextmanager
def _prober(cfg: config.Config) -> Iterator[tuple[BaseProcess, Connection]]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=run, args=(child,))
    process.start()
    child.close()  # only the prober holds this end now, so closing `parent` means EOF to it
    try:
        messages.send(parent, messages.Start(slot=0, config=config.encode(cfg)))
        yield process, parent
    finally:
        if process.is_alive():
            process.kill()
        process.join(5)
        parent.close()


def _report(conn: Connection, timeout: float = 5.0) -> messages.HealthReport:
    """The next health report; the detail sent between reports (`Probes`) and the reports
    of counts alone (checks left before a flip) are skipped."""
    deadline = time.monotonic() + timeout
    while True:
        assert conn.poll(max(deadline - time.monotonic(), 0.0)), "no report from the prober"
        report = messages.decode_from_child(conn.recv_bytes())
        if not isinstance(report, messages.Probes) and not _counts_alone(report):
            break
    assert isinstance(report, messages.HealthReport)
    return report


def _reports_within(conn: Connection, seconds: float) -> list[messages.HealthReport]:
    """The health reports that come within `seconds` (detail messages and counts skipped)."""
    deadline = time.monotonic() + seconds
    found = []
    while conn.poll(max(deadline - time.monotonic(), 0.0)):
        message = messages.decode_from_child(conn.recv_bytes())
        if isinstance(message, messages.HealthReport) and not _counts_alone(message):
            found.append(message)
    return found


def _counts_alone(message: messages.FromChild) -> bool:
    return isinstance(message, messages.HealthReport) and not message.states \
        and not message.full and bool(message.left)


def _await_states(conn: Connection, states: dict[str, bool], want: dict[str, bool]) -> None:
    """Merge reports into `states` until it agrees with `want`."""
    deadline = time.monotonic() + 3.0
    while any(states[t] != up for t, up in want.items()):
        report = _report(conn, max(deadline - time.monotonic(), 0.0))
        assert not report.full
        states.update(report.states)


def _exits_cleanly(process: BaseProcess) -> bool:
    process.join(3)
    return process.exitcode == 0


def test_run_follows_a_backend_down_and_up_then_exits_on_eof(
        capfd: pytest.CaptureFixture[str]) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    cfg = _config(port)
    targets = list(cfg.checks())
    with _prober(cfg) as (process, conn):
        first = _report(conn)
        assert first.full
        assert first.states == dict.fromkeys(targets, True)
        states = dict(first.states)

        listener.close()
        _await_states(conn, states, dict.fromkeys(targets, False))

        # The kernel may still hold the port in a closing state: create_server sets SO_REUSEADDR.
        listener = socket.create_server(("127.0.0.1", port))
        _await_states(conn, states, dict.fromkeys(targets, True))

        conn.close()
        assert _exits_cleanly(process)
    listener.close()
    log = capfd.readouterr().err
    # Two targets on one endpoint: the labels name the settings that tell them apart.
    assert f"tcp 127.0.0.1:{port} [rise=1, fall=1] is down: connection refused (1 failure)" in log
    assert f"tcp 127.0.0.1:{port} [rise=2, fall=2] is down: connection refused (2 failures)" in log
    assert f"tcp 127.0.0.1:{port} [rise=2, fall=2] is up (2 successes)" in log
    assert "stopped: the supervisor closed the pipe" in log


def test_sigterm_stops_the_prober_cleanly() -> None:
    with (socket.create_server(("127.0.0.1", 0)) as listener,
          _prober(_config(listener.getsockname()[1])) as (process, conn)):
        assert _report(conn).full
        process.terminate()
        assert _exits_cleanly(process)


def test_without_targets_it_reports_at_once_ignores_ctrl_c_and_stops_on_bye() -> None:
    with _prober(STATIC_ONLY) as (process, conn):
        assert _report(conn) == messages.HealthReport(states={}, full=True)
        assert process.pid is not None
        os.kill(process.pid, signal.SIGINT)  # the supervisor handles Ctrl-C, not its children
        messages.send(conn, messages.Bye())
        assert _exits_cleanly(process)


def _wait_in_log(capfd: pytest.CaptureFixture[str], text: str, timeout: float) -> str:
    """The captured stderr up to the first line holding `text`."""
    log = ""
    deadline = time.monotonic() + timeout
    while text not in log:
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{log}"
        time.sleep(0.02)
        log += capfd.readouterr().err
    return log


def test_when_every_backend_fails_the_prober_fences_itself(
        capfd: pytest.CaptureFixture[str]) -> None:
    first = Backend("127.0.0.1")
    backends = [first] + [Backend(f"127.0.0.{i}", first.port) for i in range(2, 11)]
    for backend in backends:
        backend.up()
    check = {"port": first.port, "interval": 0.2, "timeout": 0.1, "rise": 1, "fall": 1}
    cfg = config.from_mapping({"zones": [{
        "origin": "example.test", "nameservers": ["ns1.example.test"],
        "records": {"www": {"pool": {"addresses": [b.host for b in backends], "check": check}}},
    }]})
    try:
        with _prober(cfg) as (process, conn):
            states = dict(_report(conn).states)
            assert list(states.values()) == [True] * 10
            for backend in backends:  # all at once, as when the prober's own network goes
                backend.listening = False
                backend.sock.close()
            for backend in backends:
                backend.down()  # bound again, not listening: the ports stay ours
            log = _wait_in_log(capfd, "FENCED", 3.0)
            # A check that passed just before the last backend went (a slow test machine) may
            # have let some falls out; from the fence on, nothing is reported.
            for report in _reports_within(conn, 0.3):
                states.update(report.states)
            assert _reports_within(conn, 1.0) == []
            backends[2].up()
            want = {t: t.split()[1] == "127.0.0.3" for t in states}
            _await_states(conn, states, want)  # once one answers, the others are judged again
            conn.close()
            assert _exits_cleanly(process)
    finally:
        for backend in backends:
            backend.close()
    log += capfd.readouterr().err
    assert "FENCED: every one of the 10 targets failed its latest check" in log
    assert f"fence lifted: tcp 127.0.0.3:{first.port} answered" in log
    # Down before the fence, or judged again after it; for whatever reason its check met
    # (refused; reset by the listener closed in the middle of a check; on a busy machine,
    # timed out): the reasons are test_run_follows_a_backend_down_and_up_then_exits_on_eof's.
    assert f"tcp 127.0.0.1:{first.port} is down: " in log, log


def test_hold_down_keeps_a_backend_down_for_a_while() -> None:
    backend = Backend("127.0.0.1")
    backend.up()
    check = {"port": backend.port, "interval": 0.1, "timeout": 0.05, "rise": 1, "fall": 1,
             "hold_down": 1.0}
    cfg = config.from_mapping({"zones": [{
        "origin": "example.test", "nameservers": ["ns1.example.test"],
        "records": {"www": {"pool": {"addresses": ["127.0.0.1"], "check": check}}},
    }]})
    (target,) = cfg.checks()
    try:
        with _prober(cfg) as (process, conn):
            assert _report(conn).states == {target: True}
            backend.down()
            assert _report(conn).states == {target: False}
            went_down = time.monotonic()
            backend.up()  # passes again at once, but the hold-down keeps it down for 1 s
            assert _report(conn).states == {target: True}
            assert 0.9 <= time.monotonic() - went_down < 2.0
            conn.close()
            assert _exits_cleanly(process)
    finally:
        backend.close()
