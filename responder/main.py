"""The responder process: binds its own sockets, serves the snapshots it is sent."""

from __future__ import annotations

import asyncio
import logging
from multiprocessing.connection import Connection

from healthdns.responder.server import Server
from healthdns.responder.sockets import bind_all
from healthdns.responder.table import Table, indexes
from healthdns.shared import child, messages, privilege
from healthdns.shared.config import Config
from healthdns.shared.errors import BindError
from healthdns.shared.geotable import GeoIndex
from healthdns.shared.region import Region

log = logging.getLogger("healthdns.responder")
EXIT_BIND_FAILED = 3


def run(conn: Connection, rrl_table: Region | None = None) -> None:
    """`rrl_table`: the accounts every responder shares (`Supervisor.rrl_table`)."""
    start, cfg = child.start(conn, "responder")
    # With every port known, bind only once there is something to serve: a socket joins the
    # SO_REUSEPORT group as it binds, and the kernel queues its share of the queries there
    # from that moment, while a snapshot may take a while to come and load (a rolled or
    # respawned responder, a server started next to the one it replaces). Port 0 must be
    # bound first: the others need the port it resolves to.
    maps: dict[str, GeoIndex] = {}  # the location maps, filled as they come
    first = _first_table(conn, cfg, maps) if all(port for _, port, _ in start.listen) \
        else None
    try:
        listeners = bind_all(start.listen)
    except BindError as e:
        messages.send(conn, messages.Fatal(start.slot, str(e)))
        raise SystemExit(EXIT_BIND_FAILED) from None
    privilege.drop()  # bound: nothing privileged is left to do, and no query was read yet
    messages.send(conn, messages.Bound(start.slot, [(x.host, x.port, True) for x in listeners]))
    server = Server(start.slot, cfg, listeners, conn, start.secret, rrl_table)
    server.answerer.table = first
    server.maps = maps
    # This frame lives as long as the process: holding the first table here would keep it
    # in memory beside every later generation (16 MB at 10,000 signed names).
    del first
    asyncio.run(server.serve())
    if server.exit_code:
        raise SystemExit(server.exit_code)


def _first_table(conn: Connection, cfg: Config, maps: dict[str, GeoIndex]) -> Table:
    """Wait for the first snapshot and load it (with the maps sent before it, kept in
    `maps`); EOF or `Bye` meanwhile ends the process."""
    while True:
        try:
            message = messages.decode_to_responder(conn.recv_bytes())
        except (EOFError, OSError):
            raise SystemExit(0) from None
        match message:
            case messages.EncodedSnapshot():
                return Table(message, cfg.server.packet_cache, maps)
            case messages.Maps(tables=tables):
                maps.clear()
                maps.update(indexes(tables))
            case messages.Bye():
                raise SystemExit(0)
            case _:  # a delta needs a base this process does not have yet
                log.debug("ignoring %s before the first snapshot", type(message).__name__)
