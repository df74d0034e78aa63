"""The transfer process: the hidden primary that standard secondaries transfer zones from.

One process, spawned by the supervisor only when `[transfer]` has a listen address. It binds
its own TCP listeners (as the responders bind theirs), holds every zone's records as the
signer publishes them (`journal.Store`, relayed by the supervisor), and serves on them:

* AXFR (RFC 5936): the whole zone at one serial, in messages of up to 64 KiB;
* IXFR (RFC 1995): the journalled diffs from the client's serial, or the whole zone when the
  journal does not reach back to it, or the SOA alone when the client is up to date;
* SOA queries (a secondary asks for the serial before it transfers);
* anything else REFUSED, and every query from a client no secondary entry or allow rule
  admits, or not signed with the key that entry names (RFC 8945: unknown keys get NOTAUTH).

A client no rule admits is answered once and its connection closed, without ever taking one
of the port's slots; a configured secondary always gets one (`slots`). A refused query (an
address, key or type not allowed, a zone not ours) ends its connection too.

It sends NOTIFY to the secondaries on every serial change (`notify`). Writing is asyncio with
backpressure: a slow reader holds its own connection only, and the loop turns between two
messages of a transfer, so a new generation from the pipe is never held up by a big AXFR
(that one carries on with the serial it started with: zone states are never changed).

Its modules: `main` binds, drops privileges and runs `server` (the event loop, connections
and the pipe); `access` says who may transfer with which key; `answer` answers a query;
`packing` puts an answer's records in messages; `journal` holds the zones and their diffs;
`slots` shares the port's connections; `notify` tells the secondaries.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from multiprocessing.connection import Connection

from healthdns.shared import child, messages, privilege
from healthdns.shared.binding import bind_tcp
from healthdns.shared.config import format_endpoint
from healthdns.shared.errors import BindError
from healthdns.transfer.server import Server

log = logging.getLogger("healthdns.transfer")
EXIT_BIND_FAILED = 3
# The transfer process's priority: background work beside the responders (`_background`).
NICE = 19


def run(conn: Connection) -> None:
    start, cfg = child.start(conn, "transfer")
    endpoints = start.listen or [(h, p, True) for h, p in cfg.transfer.endpoints()]
    try:
        listeners = [bind_tcp(host, port) for host, port, _ in endpoints]
    except BindError as e:
        messages.send(conn, messages.Fatal(start.slot, str(e)))
        raise SystemExit(EXIT_BIND_FAILED) from None
    privilege.drop()  # bound: nothing privileged is left to do, and nothing was read yet
    _background()
    bound = [(sock.getsockname()[0], sock.getsockname()[1], True) for sock in listeners]
    messages.send(conn, messages.Bound(start.slot, bound))
    log.info("serving transfers on %s (tcp)",
             ", ".join(format_endpoint(h, p) for h, p, _ in bound))
    asyncio.run(_serve(Server(start.slot, cfg, listeners, conn)))


def _background() -> None:
    """Run as background work: on busy cores queries go first, an AXFR takes longer (a
    secondary waits; a client would not), and transfers still get a share, never starve.

    Nice 19 gives this process a CFS weight of 15 against a responder's 1024 (nice 0): when
    the cores are full it gets about 1.5% of one, 15 ms a second, which is an IXFR (~1 ms) and
    its NOTIFY many times over, or a few 10,000-name AXFRs (~5 ms each); when they are not,
    it gets all it wants. SCHED_BATCH adds that its wake-ups (a secondary's ACK, a query)
    never preempt a running responder: it waits for the responder to block or for the tick.
    SCHED_IDLE (weight 3, below any nice) is not used: it gives no more to the responders
    than this and lets a busy host delay a health change's IXFR for longer. Neither change
    needs a privilege; the nice value is absolute, so a supervisor run at a raised priority
    (systemd `Nice=-5`) does not lift its transfers with it.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except OSError as e:  # a seccomp filter may forbid it: nice alone still orders the CPUs
        log.warning("transfers run at nice %d without SCHED_BATCH: %s", NICE, e)
    os.setpriority(os.PRIO_PROCESS, 0, NICE)


async def _serve(server: Server) -> None:
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, server.stop)
    await server.serve()
