"""The supervisor's loop: spawns the children, watches them, respawns them, stops them.

Modelled on gunicorn's arbiter and Knot Resolver's manager: signal handlers only record the
signal (the wakeup fd wakes the loop); one blocking `wait()` covers the wakeup fd, every child's
pipe and every child's process sentinel. A turn of the loop is a list of verbs; the jobs they
hand to live beside it:

* `slot`: one child, its id kept across respawns, its states and backoff; the crash budget.
  `roles`: what differs between the roles, in one table.
* `relay`: what the children say, checked against their role's protocol and handed on.
* `rolling`: responders replaced one at a time after a reload; `reload`: the reload itself.
* `counters`: every counter. `steering`: what the operator sees and steers; `endpoint` hands
  it to the control endpoint (`control`, in threads of its own). `keeping`: the state file.
"""

from __future__ import annotations

import logging
import multiprocessing
import secrets
import selectors
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType

from healthdns.shared import messages
from healthdns.shared.config import Config
from healthdns.shared.region import Region
from healthdns.supervisor import notify, processes, views
from healthdns.supervisor.control import ControlServer
from healthdns.supervisor.counters import Counters
from healthdns.supervisor.endpoint import Endpoint
from healthdns.supervisor.keeping import Keeping
from healthdns.supervisor.relay import Relay
from healthdns.supervisor.reload import Reloading
from healthdns.supervisor.roles import (
    PEERS,
    PROBER,
    RESPONDER,
    ROLES,
    SIGNER,
    TRANSFER,
    prober_limit,
)
from healthdns.supervisor.rolling import Rolling
from healthdns.supervisor.slot import STOP_DEADLINE, CrashBudget, Slot
from healthdns.supervisor.state import StateFile
from healthdns.supervisor.steering import Steering

log = logging.getLogger("healthdns.supervisor")

EXIT_OK, EXIT_FATAL = 0, 1
HEARTBEAT = 1.0  # with a control endpoint, the loop turns at least this often (/healthz)


class Supervisor:
    def __init__(self, cfg: Config, now: Callable[[], float] = time.monotonic,
                 loader: Callable[[], Config] | None = None, seal: bytes | None = None) -> None:
        """`seal`: the state file's key (see `state.seal_key`), read before the user switch."""
        self.cfg = cfg
        # One masking key for the supervisor's life: a reload that made a new one would give
        # every check a new id at the signer (see `views`), and every answer a new serial.
        self.key = secrets.token_bytes(32)
        self.views = views.split(cfg, self.key)
        self.signer_view = self.views.signer  # the signer's, until the prober's full report
        self.now = now
        self.relay = Relay(self)
        self.keeping = Keeping(self)
        self.endpoint = Endpoint(self)
        self.ctx = multiprocessing.get_context("forkserver")  # see shared/forkserver.py
        self.prober = Slot(PROBER, 0)
        self.signer = Slot(SIGNER, 0)
        self.responders = [Slot(RESPONDER, i) for i in range(cfg.server.responders)]
        self.rolling = Rolling(self.responders, self.spawn, self.relay.send, self._retired,
                               now, lambda: self.stopping)
        # The transfer process, with `[transfer]` only; it is sent the latest full `Records`
        # when it starts, then each generation's `RecordsDelta`.
        self.transfer = Slot(TRANSFER, 0) if cfg.transfer.enabled() else None
        self.transfer_listen = [(h, p, True) for h, p in cfg.transfer.endpoints()]
        # The peers process, with `[peers]` only: the prober's reports go through it, and the
        # signer is sent its verdict instead (see `relay`).
        self.peers = Slot(PEERS, 0) if cfg.peers.enabled() else None
        self.listen = cfg.server.endpoints()  # port 0 becomes concrete once responder0 binds
        self.counters = Counters(self.transfer is not None)
        self.limits = {name: role.frame_limit for name, role in ROLES.items()}
        self.limits[PROBER.name] = prober_limit(self.views.signer_ids)
        self.limits[PEERS.name] = self.limits[PROBER.name]  # its verdict is as large
        self.stopping = False
        self.exit_code = EXIT_OK
        self.crash_budget = CrashBudget(now())
        self.signals: list[int] = []
        self.wakeup_r, self.wakeup_w = socket.socketpair()
        self.reloading = Reloading(self, loader, self.wakeup_w)
        # When the loop last began to wait on every pipe: a child is judged by the time it was
        # silent while the loop listened, never by a stall of the loop's own (see `_watch`).
        self.listened = now()
        path = cfg.control.state_file
        self.steering = Steering(cfg, self.views.signer_ids,
                                 StateFile(path, seal) if path is not None else None)
        self.control: ControlServer | None = None
        # Shared by the responders, so that any of them validates another's cookies.
        self.secret = secrets.token_bytes(32)
        self.rrl_table: Region | None = None  # the RRL accounts, created by `run`

    @property
    def slots(self) -> list[Slot]:
        successor = [self.rolling.successor] if self.rolling.successor is not None else []
        return [*self.singles, *self.responders, *successor, *self.rolling.retiring]

    @property
    def singles(self) -> list[Slot]:
        """The children of one slot each: prober, signer, and the optional ones."""
        optional = [s for s in (self.transfer, self.peers) if s is not None]
        return [self.prober, self.signer, *optional]

    # --- the loop ---------------------------------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        try:
            self.endpoint.start()
        except OSError as e:
            log.error("control: cannot listen on %s: %s (set [control] listen, or "
                      "--control-listen '' to turn the endpoint off)", self.cfg.control.listen,
                      e.strerror or e)
            return EXIT_FATAL
        processes.without_resource_tracker()
        with processes.group_signals_blocked():
            processes.ensure_fork_server()
        if self.cfg.rrl.active():  # zero-filled: every account starts with no debt
            self.rrl_table = Region.create("healthdns-rrl", self.cfg.rrl.table_size * 8)
            rrl = self.cfg.rrl
            log.info("rate limiting UDP answers: %d/s (NXDOMAIN %d/s, errors %d/s) per /%d and "
                     "/%d, slip %d%s", *rrl.rates(), rrl.ipv4_prefix, rrl.ipv6_prefix, rrl.slip,
                     ", dry run" if rrl.dry_run else "")
        self.keeping.warm_start()
        for slot in self.singles:
            self.spawn(slot)
        # With a port 0 to resolve, the others once the first has bound; otherwise all at
        # once: they bind only once they hold a snapshot (see responder.main).
        concrete = all(port for _, port, _ in self.listen)
        for responder in self.responders if concrete else self.responders[:1]:
            self.spawn(responder)
        while not self.stopping:
            self._wait_once()
        return self._shutdown()

    def _wait_once(self) -> None:
        deadlines = [s.restart_at for s in self.slots if s.state in ("backoff", "retiring")]
        if self.control is not None:
            deadlines.append(self.now() + HEARTBEAT)
        save = self.keeping.next_save()
        if save is not None:
            deadlines.append(save)
        if self.cfg.server.hung_after:
            deadlines.append(self.now() + min(HEARTBEAT, self.cfg.server.hung_after / 2))
        expiry = self.steering.overrides.next_expiry()
        if expiry is not None:
            deadlines.append(self.now() + expiry - time.time())
        timeout = max(0.0, min(deadlines) - self.now()) if deadlines else None
        with selectors.DefaultSelector() as selector:
            selector.register(self.wakeup_r, selectors.EVENT_READ)
            for slot in self.slots:
                if slot.channel is not None:  # writable matters only with output waiting
                    writing = selectors.EVENT_WRITE if slot.channel.outgoing else 0
                    selector.register(slot.channel, selectors.EVENT_READ | writing)
                if slot.process is not None:
                    selector.register(slot.process.sentinel, selectors.EVENT_READ)
            self.listened = self.now()  # what arrives from now on, this wait sees
            ready = {key.fileobj: events for key, events in selector.select(timeout)}
        if self.wakeup_r in ready:
            self.wakeup_r.recv(4096)
            self._handle_signals()
            self.endpoint.handle()
        self.reloading.handle()
        for slot in self.slots:
            if slot.channel is not None and ready.get(slot.channel, 0) & selectors.EVENT_WRITE:
                self.relay.flush(slot)
            if slot.channel is not None and ready.get(slot.channel, 0) & selectors.EVENT_READ:
                self.relay.receive(slot)
            if slot.process is not None and slot.process.sentinel in ready:
                self._reap(slot)
        for slot in self.slots:
            if slot.state == "backoff" and slot.restart_at <= self.now() and not self.stopping:
                self.spawn(slot)
        self._watch()
        save = self.keeping.next_save()
        if save is not None and self.now() >= save:
            self.keeping.save()
        if self.steering.expire():
            self.endpoint.overrides_changed()
        self.endpoint.show()

    # --- signals ----------------------------------------------------------------------------------

    def _install_signals(self) -> None:
        self.wakeup_w.setblocking(False)
        signal.set_wakeup_fd(self.wakeup_w.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._record_signal)

    def _record_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)  # handled in the loop, never here

    def _handle_signals(self) -> None:
        # Those recorded until now, each once: SIGHUPs that came together take one reload (it
        # reads the latest file anyway), and ones that come during it wait for the next one
        # (see `reload.Reloads`), so a stream of them cannot keep the loop from its children.
        signals, self.signals = self.signals, []
        for signum in dict.fromkeys(signals):
            if signum in (signal.SIGTERM, signal.SIGINT):
                log.info("%s: stopping", signal.Signals(signum).name)
                self.stopping = True
            elif signum == signal.SIGHUP:
                log.info("SIGHUP: configuration reload requested")
                self.reloading.reload_checks.ask(None)

    # --- hung children ------------------------------------------------------------------------

    def _watch(self) -> None:
        """Kill a running child that fell silent (stopped, stuck): a responder keeps its
        sockets and drops its share of the queries, a prober checks nothing, a transfer
        process leaves the secondaries without transfers, a signer leaves every change of
        health out of the answers (failover stops). The sentinel brings the respawn; a signer
        resumes from the last snapshot.

        The signer's heartbeat comes from a thread of its own (`child.Pulse`), so a long
        signing run is no silence; it is watched from its first word, before it publishes.
        """
        limit = self.cfg.server.hung_after
        for slot in (*self.singles, *self.responders):
            silent = slot.hung(self.listened, limit) if limit else None
            if silent is not None:
                self.counters.hung[slot.role.name] += 1
                self.counters.changed = True
                log.error("%s (pid %s) sent nothing for %.1f s: hung; killing it", slot.name,
                          slot.pid, silent)
                slot.kill()  # its sentinel brings the respawn; nothing it still says is of use
                slot.state = "killed"
        self.rolling.watch()

    # --- children ---------------------------------------------------------------------------------

    def spawn(self, slot: Slot) -> None:
        role = slot.role
        # A responder inherits the RRL table as a descriptor, as it inherits its pipe.
        shared = (self.rrl_table,) if role.shares_rrl and self.rrl_table is not None else ()
        slot.spawn(self.ctx, self.limits[role.name], shared, self.now())
        config = self.signer_view if role.held_config else self.views.for_role(role.name)
        # A respawn binds the addresses its predecessor was given (port 0 resolved).
        listen = {"server": self.listen, "transfer": self.transfer_listen}.get(
            role.listens or "", [])
        self.relay.send(slot, messages.encode(messages.Start(
            slot.index, config, listen, self.secret if role.cookie_secret else b"",
            self.steering.kept_serials if role.serials else {})))
        self.relay.catch_up(slot)
        log.info("%s started (pid %s)", slot.name, slot.pid)

    def _reap(self, slot: Slot) -> None:
        code = slot.reap()
        if self.rolling.reaped(slot, code):
            return
        if slot is not self.rolling.successor:  # it has no totals yet; the slot's are live
            self.counters.ended(slot.role.name, slot.index, restarted=not self.stopping)
            if slot is self.prober:
                self.steering.prober_ended()
        if self.stopping:
            return
        self._count_crash()
        if self.stopping:  # the crash budget is spent
            log.warning("%s exited with code %s", slot.name, code)
            return
        delay = slot.back_off(self.now())
        log.warning("%s exited with code %s; restarting in %.1f s", slot.name, code, delay)

    def _retired(self, slot: Slot) -> None:
        """A replaced responder stops serving: its totals are kept."""
        self.counters.ended(RESPONDER.name, slot.index, restarted=False)

    def _count_crash(self) -> None:
        if self.crash_budget.crash(self.now()):
            self.fatal(f"{self.crash_budget}; giving up")

    def fatal(self, reason: str) -> None:
        log.error("%s", reason)
        self.exit_code = EXIT_FATAL
        self.stopping = True

    # --- stopping ---------------------------------------------------------------------------------

    def _shutdown(self) -> int:
        """SIGTERM every child, reap until the deadline, then SIGKILL what is left."""
        notify.notify("STOPPING=1")
        if self.keeping.due():
            self.keeping.save()  # the latest health and serials, for the next process
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
        for caller in self.reloading.reload_checks.abandon():
            if caller is not None:
                caller.set_result({"status": 503, "error": "the server is stopping"})
        if self.control is not None:
            self.control.stop()
        if self.rrl_table is not None:  # the kernel frees it with the responders' mappings
            self.rrl_table.close()
        log.info("stopped")
        return self.exit_code
