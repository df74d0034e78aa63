"""Process titles: what `ps` and `pgrep -f` show for each healthdns process.

Without them every child is `python3 -B -c from multiprocessing.spawn import ...`. A child's
title names its supervisor (its pid, and the `server.instance` name where one is set), so that
two servers on one host can be told apart with `pgrep -f` alone (see "Processes" in
docs/operations.md):

    healthdns: supervisor                         healthdns: supervisor (edge)
    healthdns: responder 0 (supervisor 4242)      healthdns: responder 0 (edge, supervisor 4242)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import setproctitle


def title(role: str, instance: str = "", slot: int | None = None,
          supervisor: int | None = None) -> str:
    """The title of a process: `supervisor` is the supervisor's pid, None for the supervisor."""
    name = role if slot is None else f"{role} {slot}"
    owner = [instance] if instance else []
    if supervisor is not None:
        owner.append(f"supervisor {supervisor}")
    return f"healthdns: {name}" + (f" ({', '.join(owner)})" if owner else "")


def set_supervisor(instance: str) -> None:
    setproctitle.setproctitle(title("supervisor", instance))


def set_child(role: str, instance: str, slot: int | None = None,
              supervisor: int | None = None) -> None:
    """Title a child: `supervisor` is its supervisor's pid, by default its parent's."""
    setproctitle.setproctitle(title(role, instance, slot,
                                    os.getppid() if supervisor is None else supervisor))


def set_fork_server(supervisor: int) -> None:
    """The process the supervisor's children are forked from (shared/forkserver.py): it is
    told no configuration, so it takes the instance name from its supervisor's title."""
    try:
        shown = Path(f"/proc/{supervisor}/cmdline").read_bytes().rstrip(b"\0").decode()
    except (OSError, UnicodeDecodeError):
        shown = ""
    found = re.fullmatch(r"healthdns: supervisor \((.*)\)", shown)
    setproctitle.setproctitle(title("fork server", found.group(1) if found else "", None,
                                    supervisor))
