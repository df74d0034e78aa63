"""The supervisor's loop: spawns the children, relays their messages, respawns, stops.

Modelled on gunicorn's arbiter and Knot Resolver's manager: signal handlers only record the
signal (the wakeup fd wakes the loop); one blocking `wait()` covers the wakeup fd, every child's
pipe and every child's process sentinel; each child slot keeps its id across respawns and has a
small state machine (starting -> running on `Ready` -> backoff -> respawned) with exponential
backoff and a crash budget that decays over time.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from types import FrameType

from healthdns.shared import child, config, messages
from healthdns.shared.config import Config, format_endpoint

log = logging.getLogger("healthdns.supervisor")

STOP_DEADLINE = 4.0  # SIGTERM, then SIGKILL whatever is left after this long
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 10.0
CRASH_BUDGET = 10.0  # crashes tolerated...
CRASH_DECAY = 60.0  # ...with one crash forgiven per this many seconds
EXIT_OK, EXIT_FATAL = 0, 1


@dataclass
class Slot:
    """One child: a role and a stable id that a respawned process takes over."""

    role: str
    index: int
    process: multiprocessing.process.BaseProcess | None = None
    conn: Connection | None = None
    state: str = "new"  # new, starting, running, backoff
    failures: int = 0  # consecutive failures without becoming ready
    restart_at: float = 0.0
    listen: list[tuple[str, int, bool]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.role}{self.index}" if self.role == "responder" else self.role


class Supervisor:
    def __init__(self, cfg: Config, now: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.encoded = config.encode(cfg)
        self.now = now
        self.ctx = multiprocessing.get_context("spawn")
        self.prober = Slot("prober", 0)
        self.signer = Slot("signer", 0)
        self.responders = [Slot("responder", i) for i in range(cfg.server.responders)]
        self.listen = cfg.server.endpoints()  # port 0 becomes concrete once responder0 binds
        self.health: dict[str, bool] | None = None
        self.snapshot: bytes | None = None
        self.published: messages.Resume | None = None
        self.announced = False
        self.stopping = False
        self.exit_code = EXIT_OK
        self.crashes = 0.0
        self.crash_clock = now()
        self.signals: list[int] = []
        self.wakeup_r, self.wakeup_w = socket.socketpair()

    @property
    def slots(self) -> list[Slot]:
        return [self.prober, self.signer, *self.responders]

    # --- the loop ---------------------------------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        self._spawn(self.prober)
        self._spawn(self.signer)
        self._spawn(self.responders[0])  # the others once it has bound (port 0 resolved)
        while not self.stopping:
            self._wait_once()
        return self._shutdown()

    def _wait_once(self) -> None:
        waitables: list[object] = [self.wakeup_r]
        for slot in self.slots:
            if slot.conn is not None:
                waitables.append(slot.conn)
            if slot.process is not None:
                waitables.append(slot.process.sentinel)
        deadlines = [s.restart_at for s in self.slots if s.state == "backoff"]
        timeout = max(0.0, min(deadlines) - self.now()) if deadlines else None
        ready = multiprocessing.connection.wait(waitables, timeout)  # type: ignore[arg-type]
        if self.wakeup_r in ready:
            self.wakeup_r.recv(4096)
            self._handle_signals()
        for slot in self.slots:
            if slot.conn is not None and slot.conn in ready:
                self._receive(slot)
            if slot.process is not None and slot.process.sentinel in ready:
                self._reap(slot)
        for slot in self.slots:
            if slot.state == "backoff" and slot.restart_at <= self.now() and not self.stopping:
                self._spawn(slot)

    # --- signals ----------------------------------------------------------------------------------

    def _install_signals(self) -> None:
        self.wakeup_w.setblocking(False)
        signal.set_wakeup_fd(self.wakeup_w.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._record_signal)

    def _record_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)  # handled in the loop, never here

    def _handle_signals(self) -> None:
        while self.signals:
            signum = self.signals.pop(0)
            if signum in (signal.SIGTERM, signal.SIGINT):
                log.info("%s: stopping", signal.Signals(signum).name)
                self.stopping = True
            elif signum == signal.SIGHUP:
                log.warning("SIGHUP: configuration reload is not implemented yet; "
                            "still serving the current configuration")

    # --- children ---------------------------------------------------------------------------------

    def _spawn(self, slot: Slot) -> None:
        parent, child_end = self.ctx.Pipe()
        process = self.ctx.Process(target=child.enter, args=(slot.role, child_end),
                                   name=f"healthdns-{slot.name}")
        process.start()
        child_end.close()
        slot.process, slot.conn, slot.state = process, parent, "starting"
        listen = self.listen if slot.role == "responder" else []
        self._send(slot, messages.encode(messages.Start(slot.index, self.encoded, listen)))
        if slot.role == "signer" and self.published is not None:
            self._send(slot, messages.encode(self.published))
        if slot.role == "signer" and self.health is not None:
            self._send(slot, messages.encode(messages.Health(self.health, full=True)))
        if slot.role == "responder" and self.snapshot is not None:
            self._send(slot, self.snapshot)  # the latest snapshot before it serves
        log.info("%s started (pid %d)", slot.name, process.pid)

    def _send(self, slot: Slot, data: bytes) -> None:
        if slot.conn is None:
            return
        try:
            slot.conn.send_bytes(data)
        except OSError:
            pass  # it died: its sentinel tells us and it is respawned

    def _reap(self, slot: Slot) -> None:
        assert slot.process is not None
        slot.process.join(1.0)  # its sentinel says it ended; reaping may lag a moment
        code = slot.process.exitcode
        slot.process = None
        if slot.conn is not None:
            slot.conn.close()
            slot.conn = None
        if self.stopping:
            return
        self._count_crash()
        if self.stopping:  # the crash budget is spent
            log.warning("%s exited with code %s", slot.name, code)
            return
        slot.failures += 1
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (slot.failures - 1))
        slot.state, slot.restart_at = "backoff", self.now() + delay
        log.warning("%s exited with code %s; restarting in %.1f s", slot.name, code, delay)

    def _count_crash(self) -> None:
        now = self.now()
        self.crashes = max(0.0, self.crashes - (now - self.crash_clock) / CRASH_DECAY) + 1
        self.crash_clock = now
        if self.crashes > CRASH_BUDGET:
            self._fatal(f"children crashed more than {CRASH_BUDGET:g} times within "
                        f"{CRASH_DECAY:g} s per crash; giving up")

    def _fatal(self, reason: str) -> None:
        log.error("%s", reason)
        self.exit_code = EXIT_FATAL
        self.stopping = True

    # --- messages ---------------------------------------------------------------------------------

    def _receive(self, slot: Slot) -> None:
        assert slot.conn is not None
        try:
            data = slot.conn.recv_bytes()
        except (EOFError, OSError):
            slot.conn.close()
            slot.conn = None  # its sentinel follows
            return
        match messages.decode_from_child(data):
            case messages.HealthReport(states=states, full=full):
                self._mark_running(self.prober)  # its first report is its readiness
                self._on_health(states, full)
            case messages.Published(generation=generation, serials=serials, prints=prints,
                                    snapshot=snapshot, delta=delta, renewal=renewal):
                # Responders hold the previous generation (or were sent it before anything
                # newer): the delta brings them up to date; a responder started later is sent
                # the full snapshot kept here.
                self._mark_running(self.signer)
                self.snapshot = snapshot
                self.published = messages.Resume(generation, serials, prints, snapshot,
                                                 renewal)
                for responder in self.responders:
                    self._send(responder, delta or snapshot)
                log.debug("generation %d sent to responders", generation)
            case messages.Bound(listen=listen):
                self._on_bound(slot, listen)
            case messages.Ready():
                self._mark_running(slot)
                self._announce()
            case messages.Fatal(reason=reason):
                self._fatal(f"{slot.name}: {reason}")

    @staticmethod
    def _mark_running(slot: Slot) -> None:
        """A child that works again starts its backoff from the beginning next time."""
        slot.state, slot.failures = "running", 0

    def _on_health(self, states: dict[str, bool], full: bool) -> None:
        if full or self.health is None:
            self.health = dict(states)
        else:
            self.health.update(states)
        self._send(self.signer, messages.encode(messages.Health(states, full)))

    def _on_bound(self, slot: Slot, listen: list[tuple[str, int, bool]]) -> None:
        if slot.index == 0 and self.listen != listen:
            self.listen = listen
        if all(r.state == "new" for r in self.responders[1:]):
            for responder in self.responders[1:]:
                self._spawn(responder)

    def _announce(self) -> None:
        if self.announced or not all(r.state == "running" for r in self.responders):
            return
        self.announced = True
        where = ", ".join(format_endpoint(h, p) for h, p, _ in self.listen)
        log.info("ready: serving %d zone(s) on %s (udp, tcp) with %d responder(s)",
                 sum(1 + len(z.aliases) for z in self.cfg.zones), where, len(self.responders))

    # --- stopping ---------------------------------------------------------------------------------

    def _shutdown(self) -> int:
        """SIGTERM every child, reap until the deadline, then SIGKILL what is left."""
        alive = [s.process for s in self.slots if s.process is not None]
        for process in alive:
            process.terminate()
        deadline = self.now() + STOP_DEADLINE
        for process in alive:
            process.join(max(0.0, deadline - self.now()))
        for process in alive:
            if process.exitcode is None:
                log.warning("%s did not stop in time; killing it", process.name)
                process.kill()
                process.join(1.0)
        signal.set_wakeup_fd(-1)
        log.info("stopped")
        return self.exit_code
