"""Starting child processes: the fork server every child is forked from, without
multiprocessing's resource tracker, with the process group's signals blocked meanwhile."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import signal
from collections.abc import Iterator

from healthdns.shared import privilege

log = logging.getLogger("healthdns.supervisor")

# Signals a process group receives from a terminal or `kill -HUP -PGID`: blocked while a child
# starts, so it cannot die of one before it has set them to be ignored (`child.enter`).
GROUP_SIGNALS = {signal.SIGHUP, signal.SIGINT}


def ensure_fork_server() -> None:
    """Start the process every child is forked from, unless it runs, with the modules they
    share imported (see shared/forkserver.py).

    Exec'd, not forked: it holds none of the supervisor's memory (configuration, keys,
    secrets), only the capabilities children need (`privilege.hand_on`). Started with the group
    signals blocked, so it and every child forked from it start that way (`child.enter`).
    """
    server = multiprocessing.forkserver._forkserver
    before = _fork_server_pid(server)
    multiprocessing.forkserver.set_forkserver_preload(["healthdns.shared.forkserver"])
    privilege.hand_on(switch=True)
    server.ensure_running()
    if _fork_server_pid(server) != before:
        log.info("fork server: pid %s", _fork_server_pid(server))


def _fork_server_pid(server: multiprocessing.forkserver.ForkServer) -> int | None:
    """The pid of multiprocessing's fork server, None before it runs: a private attribute of
    CPython's ForkServer, which typeshed does not declare."""
    pid: int | None = getattr(server, "_forkserver_pid", None)
    return pid


def without_resource_tracker() -> None:
    """Keep multiprocessing from starting its resource tracker (an interpreter, 7 MiB).

    The fork server start method starts one whatever the children use, and hands its pipe to
    every child. Nothing of healthdns registers anything with it: the RRL table is a memfd
    (shared/region.py), not `SharedMemory`, and no role uses multiprocessing's semaphores or
    queues. So the tracker's pipe is /dev/null: the way multiprocessing marks a tracker as
    running in a process that did not start it (a spawned child is given its parent's pipe),
    with writes that go nowhere. Python 3.11 has no public switch for this.
    """
    tracker = getattr(multiprocessing.resource_tracker, "_resource_tracker", None)
    # A Python whose tracker is built otherwise simply starts one (7 MiB): nothing breaks.
    if tracker is not None and getattr(tracker, "_fd", False) is None:
        tracker._fd = os.open(os.devnull, os.O_WRONLY)  # not inherited by exec (PEP 446)


@contextlib.contextmanager
def group_signals_blocked() -> Iterator[None]:
    """Block group signals; a process started meanwhile inherits the mask across fork and exec.

    A signal that arrives meanwhile is delivered here when the block ends.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, GROUP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
