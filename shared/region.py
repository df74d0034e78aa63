"""Shared memory without a name: what the supervisor shares with its children (the RRL table).

`multiprocessing.shared_memory` names each segment in /dev/shm, so that a segment outlives a
creator that dies before it unlinks it, unless multiprocessing's resource tracker (one more
interpreter, about 7 MiB) unlinks it then. A memfd has no name: the kernel frees it once its
last descriptor and mapping are gone, however each process ended, and nothing is left in
/dev/shm to clean up.

The supervisor creates a `Region` and never maps it; a child is handed it among its process
arguments, pickled as `multiprocessing.reduction.DupFd` (as its pipe is), so the fork server
passes the descriptor on, and the child maps it.
"""

from __future__ import annotations

import mmap
import os
from multiprocessing import reduction
from typing import Any


class Region:
    """`size` bytes of zero-filled memory behind the descriptor `fd`."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size

    @classmethod
    def create(cls, name: str, size: int) -> Region:
        """`name` only labels it (in /proc/PID/fd and /proc/PID/maps)."""
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
        except OSError:
            os.close(fd)
            raise
        return cls(fd, size)

    def map(self) -> mmap.mmap:
        """A writable mapping shared with every other process that maps this region."""
        return mmap.mmap(self.fd, self.size)

    def close(self) -> None:
        """This process's descriptor; mappings stay valid."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __reduce__(self) -> tuple[Any, ...]:
        # Valid only while a process is being started, as for a Connection.
        return _inherit, (reduction.DupFd(self.fd), self.size)


def _inherit(dup: Any, size: int) -> Region:
    return Region(dup.detach(), size)
