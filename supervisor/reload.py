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
import socket
import threading
from collections.abc import Callable
from typing import Any

import msgspec

from healthdns.shared.config import Config

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
)


def _keys(config: Config) -> tuple[tuple[str, str, str], ...]:
    """The keys as a reload error may show them: a digest stands for each secret."""
    return tuple((k.name, k.algorithm,
                  "sha256:" + hashlib.sha256(k.secret.encode()).hexdigest()[:12])
                 for k in config.tsig)


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
    fields += [s for s in ("rrl", "cookies", "prober", "control", "transfer", "tsig")
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
