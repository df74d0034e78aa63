"""What every child process does the same way: signals, the first message, reading the pipe,
the heartbeat."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from types import FrameType
from typing import TypeVar

from healthdns.shared import config, heap, logs, messages, privilege, titles
from healthdns.shared.region import Region

M = TypeVar("M")

# The supervisor's pid, for the title: this process's parent is the fork server.
_supervisor = os.getppid()


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def start(conn: Connection, role: str) -> tuple[messages.Start, config.Config]:
    """Set up a child: Ctrl-C is the supervisor's to handle, SIGTERM exits cleanly.

    Returns the `Start` message and the decoded config. EOF here means the supervisor is gone.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        message = messages.decode_to_child(conn.recv_bytes())
    except (EOFError, OSError):
        raise SystemExit(0) from None
    if not isinstance(message, messages.Start):
        raise SystemExit(f"{role}: expected Start, got {type(message).__name__}")
    cfg = config.decode(message.config)
    identify(role, message.slot, cfg)
    return message, cfg


def identify(role: str, slot: int, cfg: config.Config) -> None:
    """Log and show in `ps` as this role; only responders have more than one slot."""
    numbered = slot if role == "responder" else None
    logs.setup(role, cfg.server.log_level, cfg.server.log_format, numbered)
    titles.set_child(role, cfg.server.instance, numbered, _supervisor)


def ignore_group_signals() -> None:
    """Leave Ctrl-C and a SIGHUP sent to the whole process group to the supervisor.

    The supervisor starts children with these signals blocked (the mask is inherited across fork
    and exec), so one sent during start-up waits, pending, until it is ignored here: it can never
    kill a child that has not yet got this far.
    """
    signals = {signal.SIGINT, signal.SIGHUP}
    for signum in signals:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)


def enter(role: str, conn: Connection, supervisor: int | None = None,
          table: Region | None = None) -> None:
    """The one entry point the supervisor starts: runs `healthdns.<role>.main.run(conn)`; a
    responder's with the RRL table, when it is given one: `run(conn, table)`.

    `supervisor` is its pid, when it is not this process's parent (the fork server's child).
    Importing by name keeps the supervisor free of the roles' code.
    """
    import importlib

    global _supervisor
    privilege.narrow(role)  # first: the fork server holds what any role needs
    privilege.non_dumpable()  # before it is sent any secret (see shared/privilege.py)
    logs.capture_warnings()  # before the role's imports, which may warn before its Start
    _supervisor = supervisor if supervisor is not None else os.getppid()
    ignore_group_signals()
    heap.return_large_blocks()  # before the first snapshot or configuration arrives
    module = importlib.import_module(f"healthdns.{role}.main")
    if table is None:
        module.run(conn)
    else:
        module.run(conn, table)


def received(conn: Connection, decode: Callable[[bytes], M], stop: Callable[[], None]
             ) -> M | None:
    """The next message on the pipe of an asyncio reader, decoded; None once the pipe is closed
    or broken: the reader is removed and `stop` called (the supervisor is gone: no orphans)."""
    try:
        return decode(conn.recv_bytes())
    except (EOFError, OSError):
        import asyncio  # here: the supervisor imports this module, and never asyncio

        asyncio.get_running_loop().remove_reader(conn.fileno())
        stop()
        return None


class Pulse:
    """The heartbeat of a child whose work may take longer than the supervisor waits for a word
    (the signer: signing a large zone takes seconds): `messages.Alive` every `period` from a
    thread of its own, so a long piece of work keeps it coming, while a process that is stopped
    or frozen (SIGSTOP, a frozen cgroup, a call that never gives the interpreter back) cannot
    send it. It says how much work is `done` (see `messages.Alive`).

    The pipe is shared with the main thread: every message goes through `send`, one at a time.
    """

    def __init__(self, conn: Connection, period: float = messages.ALIVE_PERIOD) -> None:
        self.conn = conn
        self.period = period
        self.done = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        threading.Thread(target=self._run, name="pulse", daemon=True).start()

    def send(self, message: messages.FromChild) -> None:
        with self._lock:
            messages.send(self.conn, message)

    def beat(self) -> None:
        self.send(messages.Alive(self.done))

    def _run(self) -> None:
        while True:
            time.sleep(self.period)
            try:
                self.beat()
            except OSError:
                return  # the supervisor is gone: the main thread sees EOF and exits
