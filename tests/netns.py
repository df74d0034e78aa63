"""Running part of a test in a network namespace of its own, for kernel settings a test must
not change on the machine (net.* sysctls are per namespace).

The namespace belongs to one thread: `unshare(CLONE_NEWNET)` moves the calling thread only,
and every process and thread it starts after that (a `healthdns-supervisor`, load threads)
starts in the namespace too. The rest of the test process stays where it was. Needs root
(CAP_SYS_ADMIN); without it the test is skipped.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")

CLONE_NEWNET = 0x40000000  # <linux/sched.h>
SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914  # <linux/sockios.h>
IFF_UP = 0x1
IFREQ = struct.Struct("16sH22x")  # struct ifreq: the name, then ifr_flags (40 octets)

_libc = ctypes.CDLL(None, use_errno=True)


def run_in_new_namespace(body: Callable[[], T], sysctls: Mapping[str, str]) -> T:
    """`body()` in a new network namespace whose loopback is up and whose `sysctls`
    (dotted names: "net.ipv4.tcp_migrate_req") are set; what it returns or raises."""
    outcome: list[T] = []
    unavailable: list[OSError] = []  # the namespace could not be made: the test is skipped
    failure: list[BaseException] = []

    def thread() -> None:
        try:
            if _libc.unshare(CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                raise OSError(code, f"unshare(CLONE_NEWNET): {os.strerror(code)}")
            _loopback_up()
            for name, value in sysctls.items():
                Path("/proc/sys", *name.split(".")).write_text(value)
        except OSError as e:
            unavailable.append(e)
            return
        try:
            outcome.append(body())
        except BaseException as e:  # noqa: BLE001 - raised again in the test's thread
            failure.append(e)

    runner = threading.Thread(target=thread, name="netns")
    runner.start()
    runner.join()
    if unavailable:
        pytest.skip(f"no network namespace of its own: {unavailable[0]} (needs root)")
    if failure:
        raise failure[0]
    return outcome[0]


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        flags = IFREQ.unpack(fcntl.ioctl(sock, SIOCGIFFLAGS, IFREQ.pack(b"lo", 0)))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, IFREQ.pack(b"lo", flags | IFF_UP))
