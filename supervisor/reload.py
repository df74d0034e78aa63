"""What a reload may change, and what it changed: the supervisor's half of a reload.

The supervisor validates the new file completely (what `--check-config` checks) before any of
it reaches a child; `fixed` then refuses what only a restart can change, so a reload either
applies whole or not at all (CoreDNS's reload works the same way: parse all, swap on success).

The check runs off the supervisor loop (`Reloads`), one at a time: requests that come while
one runs (SIGHUP, `POST /reload`) share the next, so a storm of them costs two checks, and
the loop keeps relaying and watching its children meanwhile.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from healthdns.shared import messages
from healthdns.shared.config import Config
from healthdns.shared.errors import BindError, ConfigError
from healthdns.supervisor import catalog, notify, ports, views
from healthdns.supervisor.roles import PROBER, prober_limit

if TYPE_CHECKING:
    from healthdns.supervisor.arbiter import Supervisor

log = logging.getLogger("healthdns.supervisor")

# Who waits for a reload: the future of a `POST /reload`, or None for a SIGHUP.
Caller = concurrent.futures.Future[dict[str, Any]] | None

# Settings a running server cannot take: the processes already run as the user, the control
# endpoint is bound, the RRL table shared by the responders was sized at start, and the
# transfer process was started (or not) with its listeners, secondaries and keys.
_RESTART_ONLY = (
    ("server.user", lambda c: c.server.user),
    ("server.group", lambda c: c.server.group),
    ("control.listen", lambda c: c.control.listen),
    ("control.state_file", lambda c: c.control.state_file),
    ("rrl (on or off)", lambda c: c.rrl.active()),
    ("rrl.table_size", lambda c: c.rrl.table_size),
    # The transfer process is spawned (or not) at start with its listeners and secondaries.
    ("transfer", lambda c: c.transfer),
    ("tsig (with transfers on)", lambda c: _keys(c) if c.transfer.enabled() else ()),
    # The peers process is spawned (or not) at start with its listener, peers and secrets;
    # the prober's checks are sent from the sources it started with.
    ("peers", lambda c: (tuple((p.name, p.url, _digest(p.secret)) for p in c.peers.peers),
                         msgspec.structs.replace(c.peers, peers=(), key_pem="", cert_pem="",
                                                 ca_pem=""))),
    ("prober.source", lambda c: c.prober.source),
)


def _keys(config: Config) -> tuple[tuple[str, str, str], ...]:
    """The keys as a reload error may show them: a digest stands for each secret."""
    return tuple((k.name, k.algorithm, _digest(k.secret)) for k in config.tsig)


def _digest(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]


class RestartNeeded(Exception):
    """The new configuration changes a setting that only a restart applies."""


def check_fixed(old: Config, new: Config) -> None:
    """Raise `RestartNeeded` naming the first setting a reload cannot change."""
    for field, get in _RESTART_ONLY:
        before, after = get(old), get(new)
        if before != after:
            raise RestartNeeded(f"{field} changed from {before!r} to {after!r}: that takes a "
                                "restart (see \"Changing a running server\" in "
                                "docs/operations.md)")


def changes(old: Config, new: Config) -> list[str]:
    """What the new configuration changes, for the "reloaded:" log line."""
    found = []
    before = {z.origin: z for z in old.zones}
    after = {z.origin: z for z in new.zones}
    for verb, names in (("added", after.keys() - before.keys()),
                        ("removed", before.keys() - after.keys()),
                        ("changed", {o for o in before.keys() & after.keys()
                                     if before[o] != after[o]})):
        if names:
            found.append(f"zones {verb}: {', '.join(sorted(names))}")
    if old.server.responders != new.server.responders:
        found.append(f"responders {old.server.responders} -> {new.server.responders}")
    fields = [f"server.{f}" for f in msgspec.structs.asdict(old.server)
              if f != "responders" and getattr(old.server, f) != getattr(new.server, f)]
    fields += [s for s in ("rrl", "cookies", "prober", "control", "transfer", "tsig", "peers")
               if getattr(old, s) != getattr(new, s)]
    if fields:
        found.append(f"settings: {', '.join(fields)}")
    return found or ["nothing"]


class Reloads:
    """Configuration checks for reloads: one at a time, each in a thread of its own.

    A check (`load`: read and validate the file, in a process of its own) takes a quarter of a
    second to seconds; run in the loop, fifty `POST /reload` calls once stalled it for 29 s.
    In a thread it costs the loop nothing: the thread pokes `wakeup` when it is done, and the
    loop applies what it found (`finished`). A caller is answered by a check that began after
    it asked, since the file may have changed after an earlier one read it: those who ask
    while one runs wait together for the next.
    """

    def __init__(self, load: Callable[[], Config], wakeup: socket.socket) -> None:
        self._load = load
        self._wakeup = wakeup
        self.waiting: list[Caller] = []  # asked since the running check began
        self.checking: list[Caller] = []  # those the running check answers
        self._outcome: concurrent.futures.Future[Config] | None = None

    def ask(self, caller: Caller) -> None:
        self.waiting.append(caller)

    def start(self) -> bool:
        """Begin a check for the waiting callers, unless one runs; whether one began."""
        if self._outcome is not None or not self.waiting:
            return False
        self.checking, self.waiting = self.waiting, []
        outcome: concurrent.futures.Future[Config] = concurrent.futures.Future()
        self._outcome = outcome
        threading.Thread(target=self._check, args=(outcome,), name="reload check",
                         daemon=True).start()
        return True

    def _check(self, outcome: concurrent.futures.Future[Config]) -> None:
        try:
            outcome.set_result(self._load())
        except Exception as e:  # noqa: BLE001 - handed to the loop, which raises it there
            outcome.set_exception(e)
        try:
            self._wakeup.send(b"r")
        except OSError:
            pass  # full of wake-ups already (the loop wakes anyway), or closed at the stop

    def finished(self) -> tuple[list[Caller], concurrent.futures.Future[Config]] | None:
        """The callers of a check that is done and its outcome, once; None while one runs."""
        if self._outcome is None or not self._outcome.done():
            return None
        outcome, self._outcome = self._outcome, None
        callers, self.checking = self.checking, []
        return callers, outcome

    def abandon(self) -> list[Caller]:
        """Everyone still waiting, at stop: no check will answer them."""
        callers, self.waiting, self.checking = [*self.checking, *self.waiting], [], []
        return callers


class Reloading:
    """The loop's side of a reload: a configuration the check read is applied, or refused with
    the old one served on, untouched; the prober takes the new one first, the signer once the
    prober's full report on it came (`settle`)."""

    def __init__(self, supervisor: Supervisor, loader: Callable[[], Config] | None,
                 wakeup: socket.socket) -> None:
        """`loader`: reads and validates the configuration again (SIGHUP)."""
        self.sup = supervisor
        self.loader = loader
        self.reload_checks = Reloads(self._load, wakeup)
        self.reconfiguring = False  # the prober was sent a Reconfigure, its full report is due

    def handle(self) -> None:
        """Apply a configuration check that is done and answer its callers; begin the next
        one for those who asked meanwhile."""
        finished = self.reload_checks.finished()
        if finished is not None:
            callers, outcome = finished
            problem = self._reload(outcome.result)
            for caller in callers:
                if caller is not None:
                    caller.set_result({"reloaded": True} if problem is None
                                      else {"status": 422, "error": problem})
        if not self.sup.stopping and self.reload_checks.start():
            # systemd's Type=notify-reload wants the clock with RELOADING=1.
            usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            notify.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def _reload(self, checked: Callable[[], Config]) -> str | None:
        """Apply the configuration the check read (`checked` returns it, or raises what was
        wrong with it); the problem if it cannot be applied, and then the old one is served
        on, untouched."""
        problem = None
        try:
            self._apply(checked())
        except (ConfigError, RestartNeeded, BindError) as e:  # a key's: ConfigError
            problem = str(e)
        if problem is not None:
            self.sup.counters.reloads["failed"] += 1
            log.error("reload failed, still serving the previous configuration: %s", problem)
        notify.notify("READY=1")
        self.sup.steering.dirty = True
        return problem

    def _load(self) -> Config:
        if self.loader is None:
            raise RestartNeeded("this supervisor was started without a configuration "
                                       "to read again")
        return self.loader()

    def _apply(self, new: Config) -> None:
        check_fixed(self.sup.cfg, new)
        # A new address that cannot be bound would make every new responder fail, over and
        # over, until the crash budget stopped the server: refuse it here instead.
        old_endpoints = self.sup.cfg.server.endpoints()
        ports.check_free([e for e in new.server.endpoints() if e not in old_endpoints])
        old, old_views = self.sup.cfg, self.sup.views
        self.sup.cfg, self.sup.views = new, views.split(new, self.sup.key)
        self.sup.counters.reloads["ok"] += 1
        log.info("reloaded: %s", "; ".join(changes(old, new)))
        if self.sup.control is not None:
            self.sup.control.reconfigure(new.control, catalog.make_catalog(new))
        # Until the prober's full report, it may name targets of any configuration since the
        # last one it settled into (reloads may come faster than reports).
        steering = self.sup.steering
        steering.reconfigure(new, {**steering.renames, **self.sup.views.signer_ids})
        self.sup.limits[PROBER.name] = prober_limit(steering.renames)
        if self.sup.prober.channel is not None:
            self.sup.prober.channel.limit = self.sup.limits[PROBER.name]
        self.reconfiguring = True
        self.sup.relay.send(self.sup.prober,
                            messages.encode(messages.Reconfigure(self.sup.views.prober)))
        if old_views.responder != self.sup.views.responder:
            if old.server.endpoints() != new.server.endpoints():
                self.sup.listen = new.server.endpoints()
            self.sup.rolling.roll(new.server.responders)

    def settle(self) -> None:
        """The prober's full report after a Reconfigure: the signer takes the new
        configuration now, followed at once by that report (see `messages.Reconfigure`)."""
        self.reconfiguring = False
        self.sup.steering.reconfigure(self.sup.cfg, self.sup.views.signer_ids)
        if self.sup.signer_view != self.sup.views.signer:
            self.sup.signer_view = self.sup.views.signer
            self.sup.relay.send(self.sup.signer,
                                messages.encode(messages.Reconfigure(self.sup.signer_view)))
