"""One child of the supervisor: a `Slot` keeps its id across respawns and owns the process
that holds it, with a small state machine; a `CrashBudget` says when children crash too often
for respawning to help."""

from __future__ import annotations

import logging
import multiprocessing
import os
from dataclasses import dataclass
from typing import Literal

from healthdns.shared import child
from healthdns.supervisor import processes
from healthdns.supervisor.channel import Channel
from healthdns.supervisor.roles import Role

log = logging.getLogger("healthdns.supervisor")

BACKOFF_FIRST = 0.1
BACKOFF_MAX = 10.0
CRASH_BUDGET = 10.0  # crashes tolerated...
CRASH_DECAY = 60.0  # ...with one crash forgiven per this many seconds
STOP_DEADLINE = 4.0  # SIGTERM (or `Bye`), then SIGKILL whatever is left after this long

# new: not started yet. starting: spawned, not ready yet. running: ready (a responder's
# `Ready`, the prober's first report, the signer's first publication). backoff: it exited and
# is respawned at `restart_at`. killed: killed for silence, its exit not seen yet. retiring: a
# replaced responder, draining its sockets; killed if not gone by `restart_at`.
State = Literal["new", "starting", "running", "backoff", "killed", "retiring"]


@dataclass
class Slot:
    """One child: a role and a stable id that a respawned process takes over."""

    role: Role
    index: int
    process: multiprocessing.process.BaseProcess | None = None
    channel: Channel | None = None
    state: State = "new"
    spoke: bool = False  # this process has sent a message (Fatal and Bound must come first)
    failures: int = 0  # consecutive failures without becoming ready
    restart_at: float = 0.0  # backoff: when to respawn; retiring: when to kill
    heard: float = 0.0  # when it last sent anything (the hung-child watch)

    @property
    def name(self) -> str:
        return f"{self.role.name}{self.index}" if self.role.numbered else self.role.name

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def spawn(self, ctx: multiprocessing.context.ForkServerContext, limit: int,
              inherited: tuple[object, ...], now: float) -> None:
        """Start a new process in the slot, with a new pipe; `inherited`: what it is handed
        besides its pipe (descriptors, as it inherits the pipe)."""
        channel = Channel(limit)
        process = ctx.Process(
            target=child.enter, args=(self.role.name, channel.child_end, os.getpid(), *inherited),
            name=f"healthdns-{self.name}")
        with processes.group_signals_blocked():
            processes.ensure_fork_server()  # a new one, should the last one have died
            process.start()
        channel.child_end.close()
        self.process, self.channel, self.state, self.spoke = process, channel, "starting", False
        self.heard = now

    def close(self) -> None:
        """Close its pipe: nothing it still says is read, nothing more is sent to it."""
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    def kill(self) -> None:
        """SIGKILL its process and cut it off; its sentinel brings its end."""
        if self.process is not None:
            self.process.kill()
        self.close()

    def hung(self, listened: float, limit: float) -> float | None:
        """How long it has been silent, if longer than `limit` while watched: silent since it
        was last heard until the loop last began to wait on its pipe (`listened`); had it sent
        anything since, that wait would have seen it, however long the loop was busy before or
        after. A child is watched once running, or from its first word with
        `Role.watched_starting`."""
        watched = self.state == "running" or (
            self.role.watched_starting and self.state == "starting" and self.spoke)
        silent = listened - self.heard
        return silent if watched and self.process is not None and silent > limit else None

    def mark_running(self) -> None:
        """A child that works again starts its backoff from the beginning next time."""
        self.state, self.failures = "running", 0

    def reap(self) -> int | None:
        """Its process ended (its sentinel says so): its exit code, the slot left empty."""
        assert self.process is not None
        self.process.join(1.0)  # reaping may lag the sentinel a moment
        code = self.process.exitcode
        self.process = None
        self.close()
        return code

    def back_off(self, now: float) -> float:
        """Wait before the next respawn, twice as long as after the failure before; the
        delay."""
        self.failures += 1
        delay: float = min(BACKOFF_MAX, BACKOFF_FIRST * 2.0 ** (self.failures - 1))
        self.state, self.restart_at = "backoff", now + delay
        return delay


class CrashBudget:
    """Crashes of any child, each forgiven after `decay` seconds; more than `budget` at once
    and respawning does not help (a bad configuration, a broken host): the server stops."""

    def __init__(self, now: float, budget: float = CRASH_BUDGET,
                 decay: float = CRASH_DECAY) -> None:
        self.budget, self.decay = budget, decay
        self.crashes = 0.0
        self.clock = now

    def crash(self, now: float) -> bool:
        """Count one crash; whether the budget is spent."""
        self.crashes = max(0.0, self.crashes - (now - self.clock) / self.decay) + 1
        self.clock = now
        return self.crashes > self.budget

    def __str__(self) -> str:
        return (f"children crashed more than {self.budget:g} times within {self.decay:g} s "
                f"per crash")
