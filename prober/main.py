"""The prober process: health-checks every target and reports to the supervisor.

`run` is the entry point the supervisor starts in a spawned child. The pipe and SIGTERM are
watched from the event loop, so the prober stops promptly whatever it is doing, and EOF on the
pipe means the supervisor is gone: no orphans, no polling.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import resource
import signal
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Self, TypeVar

import msgspec

from healthdns.prober import summary
from healthdns.prober.detail import Detail
from healthdns.prober.reporter import Counted, Report
from healthdns.prober.scheduler import Scheduler
from healthdns.shared import child, config, messages, privilege
from healthdns.shared.config import CheckSpec

log = logging.getLogger("healthdns.prober")

T = TypeVar("T")


def run(conn: Connection) -> None:
    """Serve until the pipe reaches EOF, `Bye` arrives or SIGTERM; return normally in each case."""
    # Ctrl-C (and a SIGHUP sent to the whole process group) reach every child; the supervisor
    # decides what they mean.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    privilege.drop()  # it needs no privilege at all, and talks to the network
    asyncio.run(_main(conn))


async def _main(conn: Connection) -> None:
    with _Control(conn) as control:
        start = await _until_stopped(control.start, control.stopped)
        if start is None:
            return
        cfg = config.decode(start.config)
        child.identify("prober", start.slot, cfg)
        targets = runs_here(cfg)
        log.info("started in slot %d: %d targets", start.slot, len(targets))
        files = _raise_file_limit()
        parallel = _parallel(cfg.prober.parallel, files)
        detail = Detail()
        reported = asyncio.Event()
        scheduler = Scheduler(targets, _reporter(conn, control, reported), names=cfg.served(),
                              zones=summary.zone_targets(cfg),
                              parallel=parallel,
                              fence_min_targets=cfg.prober.fence_min_targets, detail=detail,
                              sources=cfg.prober.source,
                              counted=_counter(conn, control))
        control.follow(functools.partial(_reconfigure, scheduler, files))
        sender = asyncio.ensure_future(_send_detail(conn, detail, reported,
                                                    lambda: scheduler.fenced))
        try:
            await _until_stopped(scheduler.serve(), control.stopped)
        finally:
            sender.cancel()
        log.info("stopped: %s", control.why)
        if control.bug is not None:
            raise control.bug  # exit non-zero: the supervisor respawns the prober


class _Control:
    """What the supervisor says: first `Start`, later a stop (`Bye`, EOF or SIGTERM)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._loop = asyncio.get_running_loop()
        self.start: asyncio.Future[messages.Start] = self._loop.create_future()
        self.stopped = asyncio.Event()
        self.why = ""
        self.bug: BaseException | None = None
        self._reconfigure: Callable[[bytes], None] | None = None
        self._pending: bytes | None = None  # a Reconfigure that came before the scheduler

    def __enter__(self) -> Self:
        self._loop.add_reader(self._conn.fileno(), self._on_readable)
        self._loop.add_signal_handler(signal.SIGTERM, self.stop, "SIGTERM")
        self._loop.set_exception_handler(self._on_error)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._loop.remove_reader(self._conn.fileno())
        self._loop.remove_signal_handler(signal.SIGTERM)

    def stop(self, why: str) -> None:
        if not self.stopped.is_set():
            self.why = why
            self.stopped.set()

    def _on_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        # Checks report through callbacks, where asyncio would only log an exception: a bug
        # there must stop the prober as one in a task would.
        loop.default_exception_handler(context)
        error = context.get("exception")
        self.bug = error if isinstance(error, BaseException) else RuntimeError(
            str(context.get("message")))
        self.stop("a bug (see the traceback above)")

    def _on_readable(self) -> None:
        try:
            data = self._conn.recv_bytes()
        except (EOFError, OSError):
            # EOF stays readable forever: stop watching, or this callback would spin.
            self._loop.remove_reader(self._conn.fileno())
            self.stop("the supervisor closed the pipe")
            return
        try:
            message = messages.decode_to_child(data)
        except msgspec.DecodeError as e:
            log.error("ignoring a message that does not decode: %s", e)
            return
        match message:
            case messages.Start() if not self.start.done():
                self.start.set_result(message)
            case messages.Reconfigure(config=encoded):
                self._on_reconfigure(encoded)
            case messages.Bye():
                self.stop("the supervisor said bye")
            case _:
                log.warning("ignoring an unexpected %s message", type(message).__name__)

    def follow(self, reconfigure: Callable[[bytes], None]) -> None:
        """Hand every `Reconfigure` to `reconfigure` from now on (and one that came early)."""
        self._reconfigure = reconfigure
        pending, self._pending = self._pending, None
        if pending is not None:
            reconfigure(pending)

    def _on_reconfigure(self, encoded: bytes) -> None:
        if self._reconfigure is None:
            self._pending = encoded  # only the latest matters: it replaces the whole config
        else:
            self._reconfigure(encoded)


def runs_here(cfg: config.Config) -> dict[str, tuple[str, CheckSpec]]:
    """The checks this instance runs: with peers, a check whose `vantages` name others only
    is theirs (this instance does not vote on it, docs/sites.md)."""
    here = cfg.prober.vantage
    return {target: (address, spec) for target, (address, spec) in cfg.checks().items()
            if not spec.vantages or here in spec.vantages}


def _reconfigure(scheduler: Scheduler, files: int, encoded: bytes) -> None:
    """Apply a new configuration view; one that does not decode is logged and ignored (the
    supervisor validated it, so that is a bug there, not a reason to stop checking)."""
    try:
        cfg = config.decode(encoded)
    except msgspec.DecodeError as e:
        log.error("ignoring a new configuration that does not decode, keeping the old: %s", e)
        return
    scheduler.reconfigure(runs_here(cfg), names=cfg.served(), zones=summary.zone_targets(cfg),
                          parallel=_parallel(cfg.prober.parallel, files),
                          fence_min_targets=cfg.prober.fence_min_targets)


async def _until_stopped(work: Awaitable[T], stopped: asyncio.Event) -> T | None:
    """`work`'s result, or None if a stop comes first (`work` is then cancelled)."""
    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(stopped.wait())
    await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if task.done():
        return task.result()  # raises what `work` raised: a bug, the process exits non-zero
    task.cancel()
    await asyncio.wait({task})  # let in-flight checks close their sockets before the loop ends
    if not task.cancelled():
        task.result()  # surface an error raised while unwinding
    return None


def _counter(conn: Connection, control: _Control) -> Counted:
    def counted(left: dict[str, int]) -> None:
        try:
            messages.send(conn, messages.HealthReport(states={}, full=False, left=left))
        except BrokenPipeError:
            pass  # the supervisor is gone: EOF on the pipe says so, and stops the prober
        except OSError as e:  # as in `_reporter`
            control.stop(f"cannot report: {e}")

    return counted


def _reporter(conn: Connection, control: _Control, reported: asyncio.Event) -> Report:
    def report(states: dict[str, bool], full: bool) -> None:
        try:
            messages.send(conn, messages.HealthReport(states=states, full=full))
        except OSError as e:  # broken pipe: the supervisor is gone, EOF will say so too
            control.stop(f"cannot report: {e}")
        reported.set()

    return report


async def _send_detail(conn: Connection, detail: Detail, reported: asyncio.Event,
                       fenced: Callable[[], bool]) -> None:
    """Every period, the detail of the targets checked meanwhile and whether the prober is
    fenced; only after the first report, which is the prober's first message."""
    await reported.wait()
    while True:
        # An empty one when nothing was checked: it is also the heartbeat the supervisor
        # watches (server.hung_after), and checks may be minutes apart.
        for rows in detail.changed() or [[]]:
            try:
                messages.send(conn, messages.Probes(rows, fenced()))
            except OSError:
                return  # the supervisor is gone: the reporter stops the prober
        await asyncio.sleep(messages.PROBES_PERIOD)


def _raise_file_limit() -> int:
    """Raise the soft limit on open files to the hard one: every check in flight holds one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as e:
            log.warning("cannot raise the open files limit from %d to %d: %s", soft, wanted, e)
            return soft
        log.info("open files limit raised from %d to %d (the hard limit)", soft, wanted)
        return wanted
    log.info("open files limit: %s (the hard limit already)", soft)
    return soft


def _parallel(wanted: int, files: int) -> int:
    """`prober.parallel`, lowered if the open files limit cannot hold that many sockets."""
    room = max(1, files - 64)  # the pipe, the loop, logging and the HTTP client need a few
    if wanted > room:
        log.warning("prober.parallel lowered from %d to %d: the open files limit is %d",
                    wanted, room, files)
        return room
    return wanted
