"""Where the running Python and healthdns are installed, and whether `server.user` can read them.

Started as root with `server.user`, every process becomes that user before it imports most of
what it runs: the fork server and each child load their modules as the user, lazily (a prober
imports aiohttp, the signer cryptography, dnspython its record types as they come). Python
installed where the user cannot go (pyenv under /root, mode 700; a virtualenv in a private home)
made every child crash with `ModuleNotFoundError` over and over, until the crash budget
stopped the server. Importing everything first cannot be made complete (imports come late, and
deep), so the supervisor refuses to start instead, and `--check-config` says so too: it tries,
as the user, each place the processes import from (`places`), and names the first folder on
the way that the user cannot pass, with the fix.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from healthdns.shared.errors import ConfigError
from healthdns.shared.privilege import Account

# The roles' packages, installed as healthdns.<role> (they may lie apart: `package-dir`).
ROLES = ("supervisor", "responder", "prober", "signer", "transfer", "peers", "shared")


@dataclass(frozen=True)
class Place:
    """A file or folder every process needs, and what it is, in words."""

    what: str
    path: str  # as the processes name it: a link on the way is followed, as they follow it
    need: int  # os.access mode


def places() -> list[Place]:
    """The interpreter, the standard library, healthdns, and where its dependencies lie."""
    stdlib = os.path.dirname(os.__file__)
    found = [("the Python interpreter", sys.executable, os.X_OK),
             ("Python's standard library", stdlib, os.R_OK | os.X_OK),
             ("Python's standard library", os.path.join(stdlib, "lib-dynload"),
              os.R_OK | os.X_OK)]
    for role in ROLES:
        spec = importlib.util.find_spec(f"healthdns.{role}")
        for folder in spec.submodule_search_locations or () if spec is not None else ():
            found.append(("healthdns", folder, os.R_OK | os.X_OK))
    for name in _dependencies():
        try:
            folder = str(importlib.metadata.distribution(name).locate_file(""))
        except importlib.metadata.PackageNotFoundError:
            continue
        found.append((f"the package {name}", folder, os.R_OK | os.X_OK))
    return [Place(what, path, need) for what, path, need in found if os.path.exists(path)]


def _dependencies() -> list[str]:
    """The distributions healthdns needs to run (its extras aside), as its metadata lists them."""
    try:
        required = importlib.metadata.requires("healthdns") or []
    except importlib.metadata.PackageNotFoundError:
        return []  # run from a source tree: its dependencies are where the interpreter finds them
    names = (re.match(r"[A-Za-z0-9._-]+", r) for r in required if "extra ==" not in r)
    return [name[0] for name in names if name is not None]


def check_readable(account: Account | None) -> None:
    """Raise a ConfigError naming what the user every process runs as cannot read, if anything.

    Only a root supervisor switches user; run as the user itself, it could not have started
    with Python out of its reach.
    """
    if account is None or os.geteuid() != 0 or account.uid == 0:
        return
    needed = places()
    blocked = _as_user(account, lambda: _first_blocked(needed))
    if blocked is None:
        return
    place, blocker = needed[blocked[0]], blocked[1]
    status = os.stat(blocker)
    raise ConfigError("server.user", (
        f"{account.user} (uid {account.uid}) cannot read {blocker} (mode "
        f"{stat.S_IMODE(status.st_mode):03o}, owner uid {status.st_uid}), on the way to "
        f"{place.what} ({place.path}), and every process runs as {account.user}: install "
        f"Python and healthdns where {account.user} can read them (a virtualenv under /opt "
        "made with a Python outside any private home), or start healthdns as that user"))


def _first_blocked(needed: list[Place]) -> tuple[int, str] | None:
    """The first place this process cannot use, and the folder (or file) that stops it."""
    for index, place in enumerate(needed):
        blocker = _blocker(place.path, place.need)
        if blocker is not None:
            return index, blocker
    return None


def _blocker(path: str, need: int) -> str | None:
    """What stops this process on its way to `path`: the first folder it cannot enter, or
    `path` itself when it lacks `need` there; a link on the way is followed to its target."""
    if os.access(path, need):
        return None
    whole = Path(path)
    for part in [*reversed(whole.parents), whole]:
        if part != whole and os.access(part, os.X_OK):
            continue
        target = os.path.realpath(part)
        if part.is_symlink() and target != str(part):
            return _blocker(target, need if part == whole else os.X_OK) or str(part)
        return str(part)
    return path


def _as_user(account: Account, probe: Callable[[], tuple[int, str] | None]
             ) -> tuple[int, str] | None:
    """`probe()` in a forked process with the account's uid, gids and no capability; None
    also when the process could not tell (the start is not refused on a guess)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(read_end)
            os.setgroups([account.gid])
            os.setresgid(account.gid, account.gid, account.gid)
            os.setresuid(account.uid, account.uid, account.uid)  # every capability goes
            found = probe()
            os.write(write_end, f"{found[0]}\0{found[1]}".encode() if found else b"")
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    if not answer:
        return None
    index, blocker = answer.decode().split("\0", 1)
    return int(index), blocker
