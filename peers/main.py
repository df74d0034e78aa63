"""The peers process: this instance's part in deciding health from several sites.

One process, spawned by the supervisor only when `[peers]` is set. It binds its listener
(`peers.listen`), drops every privilege, and runs the `exchange`: it sends this instance's
view to every peer and takes theirs (`wire`: signed reports, judged before they are believed),
keeps what it knows of each peer (`book`), and combines the fresh views by the quorum rule
(`verdict`) into the health the supervisor sends the signer.

It holds the peers' secrets and no other: the supervisor sends it its part of the
configuration only (`supervisor/views.py`), and it never sees keys, zones or check headers.
"""

from __future__ import annotations

import asyncio
import signal
from multiprocessing.connection import Connection

from healthdns.peers.exchange import Exchange
from healthdns.shared import child, messages, privilege
from healthdns.shared.binding import bind_tcp
from healthdns.shared.errors import BindError

EXIT_BIND_FAILED = 3


def run(conn: Connection) -> None:
    start, cfg = child.start(conn, "peers")
    host, port = cfg.peers.endpoint
    try:
        sock = bind_tcp(host, port)
    except BindError as e:
        messages.send(conn, messages.Fatal(start.slot, f"peers.listen: {e}"))
        raise SystemExit(EXIT_BIND_FAILED) from None
    privilege.drop()  # bound: nothing privileged is left to do
    asyncio.run(_serve(Exchange(start.slot, cfg.peers, sock, conn)))


async def _serve(exchange: Exchange) -> None:
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, exchange.stop)
    await exchange.serve()
