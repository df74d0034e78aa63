"""Least privilege: who each process runs as, and which capabilities it keeps (Linux).

Started as root with `server.user` set, the supervisor becomes that user at once, keeping only
the capabilities its children need to start (`KEPT`), in its permitted set; of them only
`EFFECTIVE` is in force in the supervisor itself (it must not read other files than its own
through `CAP_DAC_READ_SEARCH`, such as a state file that is a link to /etc/shadow). The fork server
that starts every child (see shared/forkserver.py) is handed them as ambient capabilities,
which survive its exec; each child forked from it narrows them at once, before it does
anything else, to what its role needs before it drops everything (`ROLE_CAPS`): a responder
binds ports below 1024, the signer reads a key file only root may read. Each child then drops
every capability (bounding set included) and sets `no_new_privs` before it reads anything from
the network: a responder right after its own binds, the signer once its keys are loaded, the
prober at once. Every child is also made non-dumpable first, before it is told anything: each
holds something another must not read (the signer its keys, the transfer process the TSIG
secrets, the peers process the peers' secrets, the prober the checks' headers, a responder the
cookie secret), and a process of the
same uid (a compromised responder) can then neither ptrace it nor read its memory through /proc.
The supervisor is non-dumpable too, whoever it runs as.

Started as any other user, nothing switches: children still drop what they were given (file
capabilities on the interpreter, as in the container image) and set `no_new_privs`.

The kernel interfaces are two system calls, `prctl` and `capset`, called through ctypes: no
well-kept Python binding of them exists outside C extensions, and these few calls are stable
Linux ABI.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import grp
import logging
import os
import pwd
from dataclasses import dataclass

from healthdns.shared.errors import ConfigError, HealthdnsError

log = logging.getLogger("healthdns.privilege")

# linux/capability.h
CAP_DAC_READ_SEARCH = 2
CAP_SETGID = 6
CAP_SETUID = 7
CAP_SETPCAP = 8
CAP_NET_BIND_SERVICE = 10
_CAPABILITY_VERSION_3 = 0x20080522
# linux/prctl.h
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

# What the supervisor keeps after switching user, and what each role is handed. CAP_SETPCAP
# lets a child empty its bounding set before it drops the rest.
KEPT = frozenset({CAP_NET_BIND_SERVICE, CAP_DAC_READ_SEARCH, CAP_SETPCAP})
# Of those, what the supervisor uses itself, its effective set: it binds the control endpoint
# and tries the ports of a reload. The others are only handed on, and would let it read any
# file: the state file it reads is its own, and one that names another (a link) is read with
# the user's rights only.
EFFECTIVE = frozenset({CAP_NET_BIND_SERVICE})
ROLE_CAPS = {
    "responder": frozenset({CAP_NET_BIND_SERVICE, CAP_SETPCAP}),
    "signer": frozenset({CAP_DAC_READ_SEARCH, CAP_SETPCAP}),
    "prober": frozenset({CAP_SETPCAP}),
    "transfer": frozenset({CAP_NET_BIND_SERVICE, CAP_SETPCAP}),  # binds as a responder does
    "peers": frozenset({CAP_NET_BIND_SERVICE, CAP_SETPCAP}),  # binds `peers.listen`
}
# With `server.signer_user`, the signer becomes that user (`become_signer`): the supervisor
# keeps these, never effective, only to hand them to the fork server, and only the signer keeps
# them, until it has switched. What it costs: a supervisor taken over could switch to any uid.
SWITCH = frozenset({CAP_SETGID, CAP_SETUID})


class PrivilegeError(HealthdnsError):
    """Privileges could not be changed as configured."""


@dataclass(frozen=True)
class Account:
    """The user (and group) every process runs as."""

    user: str
    uid: int
    gid: int


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def resolve(user: str, group: str, user_field: str = "server.user",
            group_field: str = "server.group") -> Account | None:
    """The account `user` names (None when empty); `group` replaces its primary group."""
    if not user:
        return None  # a group alone is a configuration error (`config.server.normalise_server`)
    try:
        entry = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
    except KeyError:
        raise ConfigError(user_field, f"no user {user!r} on this system") from None
    gid = entry.pw_gid
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid if not group.isdigit() else grp.getgrgid(
                int(group)).gr_gid
        except KeyError:
            raise ConfigError(group_field, f"no group {group!r} on this system") from None
    return Account(entry.pw_name, entry.pw_uid, gid)


def resolve_signer(user: Account | None, signer_user: str) -> Account | None:
    """The signer's own account (`server.signer_user`); None when it is `user`'s uid."""
    signer = resolve(signer_user, "", "server.signer_user")
    if signer is None or (user is not None and signer.uid == user.uid):
        return None
    if signer.uid == 0:
        raise ConfigError("server.signer_user", "root is not an unprivileged user")
    return signer


def become(account: Account | None, signer: Account | None = None) -> None:
    """The supervisor's switch to `account`, keeping only `KEPT` (see the module docstring),
    and `SWITCH` when the signer runs as `signer` (`resolve_signer`)."""
    if os.geteuid() != 0:
        for field, wanted in (("server.user", account), ("server.signer_user", signer)):
            if wanted is not None and wanted.uid != os.geteuid():
                raise PrivilegeError(
                    f"{field}: cannot switch to {wanted.user!r} (uid {wanted.uid}): "
                    f"healthdns was started as uid {os.geteuid()}, not as root")
        non_dumpable()  # it holds the configuration's secrets, as its children do
        return
    if account is None:
        log.warning("running as root: set server.user (or --user) to run as an "
                    "unprivileged user")
        return
    if account.uid == 0:
        raise PrivilegeError("server.user: root is not an unprivileged user")
    kept = KEPT | SWITCH if signer is not None else KEPT
    _drop_bounding(keep=kept)
    _prctl(PR_SET_KEEPCAPS, 1)  # keep the permitted set across setresuid
    os.setgroups([account.gid])
    os.setresgid(account.gid, account.gid, account.gid)
    os.setresuid(account.uid, account.uid, account.uid)
    _prctl(PR_SET_KEEPCAPS, 0)
    # Inheritable too: an ambient capability must be both permitted and inheritable.
    _capset(effective=EFFECTIVE, permitted=kept, inheritable=kept)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)  # ambient capabilities still pass exec: nothing else does
    _prctl(PR_SET_DUMPABLE, 0)  # it has read the keys (the configuration check)
    log.info("running as %s (uid %d, gid %d)", account.user, account.uid, account.gid)


def hand_on(switch: bool = False) -> None:
    """Make the next process exec'd (the fork server) start with `KEPT`, what every child
    needs at most: it forks them, and each narrows its own (`narrow`).

    Does nothing unless the supervisor switched user and kept them (`become`): root's children
    start with every capability anyway, and drop them all themselves. `switch`: `SWITCH` too,
    when the supervisor kept it (the fork server's, for the signer). Inheritable as well as
    ambient: an interpreter with file capabilities (the container image's) clears the ambient
    set at exec, and then grants what both its file's and our inheritable sets hold.
    """
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0)
    held = _capget("permitted")
    if os.geteuid() == 0 or not held >= KEPT:
        return
    kept = held & (KEPT | SWITCH) if switch else KEPT
    # Raising an ambient capability needs it permitted and inheritable, not effective: the
    # exec'd process holds it, this one does not use it.
    _capset(effective=EFFECTIVE, permitted=kept, inheritable=kept)
    for cap in sorted(kept):
        _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)


def narrow(role: str) -> None:
    """A child's first act: keep only its role's capabilities of those the fork server holds.

    Dropping needs no privilege. A root child keeps its own (it drops them all in `drop`), as
    does one that has fewer than `KEPT` (file capabilities: the interpreter's, at most).
    """
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0)
    held = _capget("permitted")
    if os.geteuid() == 0 or not held >= KEPT:
        return
    kept = ROLE_CAPS[role] | (held & SWITCH if role == "signer" else frozenset())
    _capset(effective=kept, permitted=kept, inheritable=frozenset())


def become_signer(signer: Account | None) -> None:
    """The signer's switch to its own user (`server.signer_user`, effective and saved uid),
    before it reads or writes a key: it keeps its other capabilities (none is cleared between two uids other than root's)
    and loses `SWITCH`. Made non-dumpable again: a change of uid resets that flag."""
    if signer is None or signer.uid == os.geteuid():
        return
    if not _capget("effective") >= SWITCH:
        raise PrivilegeError(f"server.signer_user: cannot switch to {signer.user!r} (uid "
                             f"{signer.uid}): the signer was not handed CAP_SETUID")
    os.setgroups([signer.gid])
    os.setresgid(signer.gid, signer.gid, signer.gid)
    # The real uid stays the supervisor's: a signal may be sent by a process whose uid is the
    # target's real or saved one, and the supervisor stops (and kills a hung) signer with one.
    # Files are opened with the effective uid: the keys are the signer's alone.
    os.setresuid(os.getuid(), signer.uid, signer.uid)
    kept = _capget("permitted") - SWITCH
    _capset(effective=kept, permitted=kept, inheritable=frozenset())
    non_dumpable()


def drop() -> None:
    """A child's final drop: no capability in any set, and `no_new_privs`.

    Needs nothing: without CAP_SETPCAP (not started by a root supervisor), the bounding set
    stays, and `no_new_privs` keeps it from ever mattering.
    """
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0)
    if CAP_SETPCAP in _capget("effective"):
        _drop_bounding(keep=frozenset())
    _capset(effective=frozenset(), permitted=frozenset(), inheritable=frozenset())
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


def non_dumpable() -> None:
    """Keep processes of the same uid from ptrace and /proc/<pid>/mem (every process)."""
    _prctl(PR_SET_DUMPABLE, 0)


def _drop_bounding(keep: frozenset[int]) -> None:
    for cap in range(_last_cap() + 1):
        if cap not in keep and _prctl(PR_CAPBSET_READ, cap) == 1:
            _prctl(PR_CAPBSET_DROP, cap)


def _last_cap() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def _capget(which: str) -> frozenset[int]:
    """This process's "effective", "permitted" or "inheritable" set."""
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if _libc.capget(ctypes.byref(header), data) != 0:
        _raise("capget")
    bits = getattr(data[0], which) | getattr(data[1], which) << 32
    return frozenset(cap for cap in range(64) if bits >> cap & 1)


def _capset(effective: frozenset[int], permitted: frozenset[int],
            inheritable: frozenset[int]) -> None:
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for word in range(2):
        data[word].effective = _word(effective, word)
        data[word].permitted = _word(permitted, word)
        data[word].inheritable = _word(inheritable, word)
    if _libc.capset(ctypes.byref(header), data) != 0:
        _raise("capset")


def _word(caps: frozenset[int], word: int) -> int:
    return sum(1 << (cap - 32 * word) for cap in caps if cap // 32 == word)


def _prctl(option: int, arg: int, arg3: int = 0) -> int:
    result: int = _libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(arg3),
                              ctypes.c_ulong(0), ctypes.c_ulong(0))
    if result < 0:
        _raise(f"prctl({option}, {arg})")
    return result


def _raise(call: str) -> None:
    errno = ctypes.get_errno()
    raise PrivilegeError(f"{call} failed: {os.strerror(errno)}")
