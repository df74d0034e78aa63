"""The state file (`control.state_file`): what one supervisor keeps for the next.

It keeps the overrides, each check's health (see `warm`) and each zone's latest serial, written
atomically (a temporary file, fsync, rename) by the supervisor. A new supervisor believes it
only when all of this holds; otherwise it starts cold, with a warning that names the file and
the reason:

- it is a regular file of at most `MAX_BYTES`: a FIFO, a device or a directory is refused
  before it is opened (`files.read`), so it can never hang the start;
- it is owned by the user healthdns runs as (or root) and is not writable by its group or by
  others, as a key file must be;
- its seal holds: an HMAC-SHA256 of the state, keyed with `KEY_SUFFIX`'s key (below), so that
  a process that may write the file but does not hold the key (a compromised responder or
  prober runs as the same user) cannot make a supervisor believe what it wrote;
- what it says is within bounds: no kept serial more than `SERIAL_LEAD` ahead of the clock
  (one 2^31 ahead would freeze every secondary), no override that expires more than
  `overrides.MAX_EXPIRES_IN` from now (JSON has no NaN or infinity, and a number too large for a float
  does not decode).

The key is 32 random bytes, in hex, in the file beside it (`state.json.key`), made when it is
missing or is not the reader's own (owned by another user, open to others, a link, not a key).
Started as root with `server.user`, the supervisor reads or makes it as root before it switches
user (`seal_key`), with mode 600: the user's processes can neither read it nor put a key of
their own in its place (it would not be root's, and a new one would be made). Started as the
user itself, the key is that user's file, and the seal guards against other users and against
mistakes only.
"""

from __future__ import annotations

import errno
import hmac
import logging
import os
import secrets
import tempfile
from pathlib import Path

import msgspec

from healthdns.shared import files
from healthdns.supervisor.overrides import MAX_EXPIRES_IN, Override
from healthdns.supervisor.warm import Health

log = logging.getLogger("healthdns.supervisor")

MAX_BYTES = 16 << 20  # ten thousand targets and their overrides take well under 1 MB
KEY_SUFFIX = ".key"
KEY_BYTES = 32
SERIAL_LEAD = 3 * 86400  # a burst of changes runs serials ahead of the clock: days, never more


class Kept(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the file keeps: its "state" member."""

    overrides: list[Override] = []
    health: Health | None = None
    # Zone -> the highest serial served, believed whatever its age (a serial does not go stale):
    # serials may run ahead of the clock (several changes a second), and a new signer that
    # started from the clock could go below what the secondaries hold.
    serials: dict[str, int] = {}


class _Sealed(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The file: the state as written, and its HMAC-SHA256 in hex."""

    state: msgspec.Raw
    hmac: str


class Unbelieved(Exception):
    """The state file is there, but is not believed; the text says which file, and why."""


class StateFile:
    """One state file and the key that seals it (None: nothing can be kept)."""

    def __init__(self, path: str, key: bytes | None) -> None:
        self.path = path
        self.key = key

    def load(self, now: float) -> Kept | None:
        """What the file keeps, checked (see the module docstring); None when there is no
        file yet. Raises `Unbelieved`."""
        try:
            contents = files.read(self.path, MAX_BYTES)
        except files.FileProblem as e:
            if e.errno == errno.ENOENT:
                return None
            raise Unbelieved(str(e)) from None
        _check_owner_and_mode(self.path, contents.status)
        if self.key is None:
            raise Unbelieved(f"{self.path}: no key to check its seal with (see above)")
        try:
            sealed = msgspec.json.decode(contents.data, type=_Sealed)
        except msgspec.DecodeError as e:
            raise Unbelieved(f"{self.path}: not a sealed state file ({e})") from None
        if not hmac.compare_digest(sealed.hmac, _mac(self.key, bytes(sealed.state))):
            raise Unbelieved(f"{self.path}: its seal does not match the key in {self.path}"
                             f"{KEY_SUFFIX}: it was written by another process than healthdns, "
                             "or with another key")
        try:
            kept = msgspec.json.decode(bytes(sealed.state), type=Kept)
        except msgspec.DecodeError as e:
            raise Unbelieved(f"{self.path}: {e}") from None
        problem = out_of_bounds(kept, now)
        if problem is not None:
            raise Unbelieved(f"{self.path}: {problem}")
        return kept

    def save(self, kept: Kept) -> None:
        """Write `kept`, sealed, atomically: a reader (or a crash) sees the old file or the new
        one, never half of one. Raises `OSError`."""
        if self.key is None:
            return
        state = msgspec.json.encode(kept)
        write_atomically(self.path, msgspec.json.encode(_Sealed(msgspec.Raw(state),
                                                                _mac(self.key, state))))


def out_of_bounds(kept: Kept, now: float) -> str | None:
    """What in `kept` no supervisor could have written, if anything."""
    for zone, serial in sorted(kept.serials.items()):
        if not 0 <= serial < 2**32:
            return f"the serial of {zone}, {serial}, is not a 32-bit serial"
        lead = (serial - int(now)) % 2**32  # RFC 1982: ahead by less than 2^31, or behind
        if SERIAL_LEAD < lead < 2**31:
            return (f"the serial of {zone} is {lead} s ahead of the clock, more than the "
                    f"{SERIAL_LEAD} s a burst of changes can run it ahead")
    for o in kept.overrides:
        if o.expires is not None and o.expires > now + MAX_EXPIRES_IN:
            return (f"the override of {o.name or o.address!r} expires at {o.expires:.0f}, "
                    f"more than {MAX_EXPIRES_IN // 86400} days from now")
    return None


def _check_owner_and_mode(path: str, status: os.stat_result) -> None:
    if status.st_uid not in (os.geteuid(), 0):
        raise Unbelieved(f"{path}: owned by uid {status.st_uid}, neither by the user healthdns "
                         f"runs as (uid {os.geteuid()}) nor by root")
    mode = status.st_mode & 0o777
    if mode & 0o022:
        raise Unbelieved(f"{path}: has mode {mode:03o}: writable by its group or by others, "
                         f"who could plant state in it; chmod 600 {path}")


def _mac(key: bytes, state: bytes) -> str:
    return hmac.new(key, state, "sha256").hexdigest()


# --- the key -------------------------------------------------------------------------------------


def seal_key(state_file: str | None) -> bytes | None:
    """The key that seals `state_file` (`state_file` + `KEY_SUFFIX`), made when missing or not
    this process's own; None, with a warning, when there is none to be had. Called before the
    switch to `server.user` (see the module docstring)."""
    if state_file is None:
        return None
    path = state_file + KEY_SUFFIX
    try:
        return _read_key(path)
    except files.FileProblem as e:
        if e.errno != errno.ENOENT:
            log.warning("%s; making a new key (the state file sealed with the old one will "
                        "not be believed)", e)
    try:
        return _make_key(path)
    except OSError as e:
        log.warning("control.state_file: cannot make the key that seals it (%s: %s): nothing "
                    "is kept across restarts", path, e.strerror)
        return None


def _read_key(path: str) -> bytes:
    contents = files.read(path, 4 * files.KIB, follow=False)
    status = contents.status
    if status.st_uid != os.geteuid() or status.st_mode & 0o077:
        raise files.FileProblem(path, f"owned by uid {status.st_uid} with mode "
                                f"{status.st_mode & 0o777:03o}, not this process's own "
                                f"(uid {os.geteuid()}, mode 600)")
    try:
        key = bytes.fromhex(contents.data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise files.FileProblem(path, f"does not hold a key ({KEY_BYTES} bytes in hex)")
    return key


def _make_key(path: str) -> bytes:
    key = secrets.token_bytes(KEY_BYTES)
    write_atomically(path, key.hex().encode() + b"\n")
    log.info("control.state_file: made a new key for its seal in %s", path)
    return key


def write_atomically(path: str, data: bytes) -> None:
    """Replace `path` with `data`: a temporary file of mode 600 beside it, fsync, rename, and
    fsync of the folder, so that the rename itself survives a power cut."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
