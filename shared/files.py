"""Reading the files an operator names (configuration, CA bundles, DNSSEC keys) safely.

A path in a configuration may name anything: `/dev/zero` (endless), a FIFO (blocks the reader
until a writer comes), a terminal, a directory, or a file far larger than any sane one. Each of
these once hung `--check-config` or put a child in a crash loop. So every such read goes
through `read`: what the path names is looked at first, and anything but a regular file of
bounded size is refused without being opened (opening a device may act on it); then it is
opened without blocking, and what was opened is looked at again (the path may have been
swapped since), and only then read.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from healthdns.shared.errors import HealthdnsError

KIB, MIB = 1024, 1024 * 1024

# O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOCTTY: a terminal must not become
# ours; O_CLOEXEC: children never inherit the descriptor.
_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symbolic link"),
)


class FileProblem(HealthdnsError):
    """An operator's file cannot be used; the text is "file: reason" (the caller names the field)."""

    def __init__(self, name: str, reason: str, error: OSError | None = None) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason
        # Set when the system refused to look at, open or read it.
        self.strerror = error.strerror if error is not None else None
        self.errno = error.errno if error is not None else None


@dataclass(frozen=True)
class Contents:
    data: bytes
    status: os.stat_result  # of the open file itself: what was read is what was checked


def read(path: str | os.PathLike[str], limit: int, follow: bool = True) -> Contents:
    """The bytes of the regular file at `path`, at most `limit` of them; with `follow` False,
    a symbolic link is refused too."""
    name = os.fspath(path)
    try:
        _check(name, os.stat(name, follow_symlinks=follow), limit)  # before it is opened
        fd = os.open(name, _FLAGS | (0 if follow else os.O_NOFOLLOW))
    except OSError as e:
        raise FileProblem(name, f"cannot read: {e.strerror}", e) from None
    try:
        status = os.fstat(fd)
        _check(name, status, limit)
        return Contents(_read_at_most(name, fd, limit), status)
    finally:
        os.close(fd)


def kind(mode: int) -> str:
    """What a file of this mode is, in words."""
    return next((words for test, words in _KINDS if test(mode)), "not a regular file")


def _check(name: str, status: os.stat_result, limit: int) -> None:
    if not stat.S_ISREG(status.st_mode):
        raise FileProblem(name, f"is {kind(status.st_mode)}, not a regular file")
    if status.st_size > limit:
        raise FileProblem(name, f"is {status.st_size} bytes, more than the {_size(limit)} "
                          "such a file may have")


def _read_at_most(name: str, fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit + 1  # one byte more tells a file that grew since fstat from one that fits
    while left > 0:
        try:
            chunk = os.read(fd, min(left, 64 * KIB))
        except OSError as e:
            raise FileProblem(name, f"cannot read: {e.strerror}", e) from None
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    if left <= 0:
        raise FileProblem(name, f"grew to more than the {_size(limit)} such a file may have")
    return b"".join(chunks)


def _size(limit: int) -> str:
    if limit % MIB == 0:
        return f"{limit // MIB} MiB"
    if limit % KIB == 0:
        return f"{limit // KIB} KiB"
    return f"{limit} bytes"
