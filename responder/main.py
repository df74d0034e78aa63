"""The responder process: binds its own sockets, serves the snapshots it is sent."""

from __future__ import annotations

import asyncio
import logging
from multiprocessing.connection import Connection

from healthdns.responder.server import Server
from healthdns.responder.sockets import bind_all
from healthdns.shared import child, messages, privilege
from healthdns.shared.errors import BindError

log = logging.getLogger("healthdns.responder")
EXIT_BIND_FAILED = 3


def run(conn: Connection) -> None:
    start, cfg = child.start(conn, "responder")
    try:
        listeners = bind_all(start.listen)
    except BindError as e:
        messages.send(conn, messages.Fatal(start.slot, str(e)))
        raise SystemExit(EXIT_BIND_FAILED) from None
    privilege.drop()  # bound: nothing privileged is left to do, and no query was read yet
    messages.send(conn, messages.Bound(start.slot, [(x.host, x.port, True) for x in listeners]))
    server = Server(start.slot, cfg, listeners, conn)
    asyncio.run(server.serve())
    if server.exit_code:
        raise SystemExit(server.exit_code)
