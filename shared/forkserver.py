"""The fork server's preload: the modules children share, imported once, before any fork.

The supervisor starts its children with the "forkserver" start method: a fresh interpreter,
exec'd by the supervisor before it starts any child, imports this module (its only preload)
and forks every child from then on. A child then shares the pages of these modules with the
fork server and its siblings instead of importing them itself (see "Memory" in
docs/operations.md). The fork server is handed nothing but this: no configuration, no key, no
secret (it is exec'd, so it inherits none of the supervisor's memory).

What it imports is a responder's code, the largest set every role runs: responders are
started most often, and their modules keep to what a responder may map (no dnspython,
cryptography, aiohttp or RE2; tests/test_responder_imports.py). The signer and the prober
import their own libraries after the fork.

Only the supervisor may ask it for a child: the fork server holds every capability some role
needs (a responder's, the signer's), and multiprocessing's fork server runs whatever a client
that connects to its socket sends. A process of the same user (a compromised responder) could
reach that socket, so a request from any process but the supervisor is refused before a byte
of it is read.
"""

from __future__ import annotations

import errno
import gc
import os
import socket
import struct
import sys
from multiprocessing import reduction

from healthdns.shared import heap, titles

SHARED = ("healthdns.responder.main", "healthdns.shared.child")
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def _prepare() -> None:
    supervisor = os.getppid()  # the fork server is exec'd by the supervisor
    receive = reduction.recvfds

    def from_supervisor_only(sock: socket.socket, size: int) -> list[int]:
        pid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                               _PEERCRED.size))[0]
        if pid != supervisor:
            print(f"healthdns fork server: refused a request from pid {pid}: only the "
                  f"supervisor (pid {supervisor}) may start children", file=sys.stderr)
            # multiprocessing's fork server drops a connection that raises this, and goes on.
            raise ConnectionAbortedError(errno.ECONNABORTED, "not the supervisor")
        return receive(sock, size)

    reduction.recvfds = from_supervisor_only  # what the fork server's loop calls per request
    heap.return_large_blocks()
    for name in SHARED:
        __import__(name)
    titles.set_fork_server(supervisor)
    # Children must not unshare these pages: the collector writes to every object it tracks,
    # so what was imported is moved out of its reach once, here.
    gc.collect()
    gc.freeze()


_prepare()  # this module is imported by the fork server only (`arbiter.start_fork_server`)
