"""A resolver that caches by EDNS Client Subnet in front of healthdns: how many of the queries
sent to it reach healthdns, which is what a scope decides (RFC 7871 section 7.3.1: a resolver
answers every client inside an answer's scope from its cache).

`reaching` runs an unbound (harness/georigs.py's `unbound_conf`) in front of a healthdns
server, asks it every (name, client) given, one query at a time over one socket (a miss is
cached before the next query), and counts the queries healthdns answered meanwhile from its
`healthdns_dns_requests_total`. `alternating` makes the map a server gets when it echoes the
source length as scope: every client's /24 its own block.
"""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import HOST, BenchError
from harness import geoclients as gc
from harness.georigs import ORIGIN, STATIC, unbound_conf
from harness.servers import Server, tail

Networks = tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]  # (cidrs, site order) pairs


def requests_total(server: Server) -> float:
    """healthdns_dns_requests_total summed, from /metrics."""
    url = f"http://{HOST}:{server.control_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("healthdns_dns_requests_total"))


def settled_requests(server: Server) -> float:
    """The counter once it has not moved for 2 s: responders report every second and the
    control endpoint may show a rendering one readout old, so a shorter quiet can be a lag."""
    readings = [requests_total(server)]
    deadline = time.monotonic() + 60
    while len(readings) < 3 or len(set(readings[-3:])) > 1:
        if time.monotonic() > deadline:
            raise BenchError(f"{server.label}'s request counter did not settle in 60 s")
        time.sleep(1.0)
        readings.append(requests_total(server))
    return readings[-1]


def alternating(clients: Sequence[gc.Client], orders: tuple[tuple[str, ...], tuple[str, ...]]
                = (("fra", "iad"), ("iad", "fra"))) -> Networks:
    """Explicit networks: every client's /24 and its neighbours, alternating two orders, so
    every block of the map is a /24 (as long as the clients' source prefixes)."""
    nets: dict[int, int] = {}
    for client in clients:
        for neighbour in (client.address - 256, client.address, client.address + 256):
            nets.setdefault(neighbour, (neighbour >> 8) & 1)
    groups: tuple[list[str], list[str]] = ([], [])
    for address, parity in sorted(nets.items()):
        groups[parity].append(f"{ipaddress.IPv4Address(address)}/24")
    return ((tuple(groups[0]), orders[0]), (tuple(groups[1]), orders[1]))


def reaching(binary: str, workdir: Path, port: int, server: Server,
             asked: Sequence[tuple[str, gc.Client]]) -> dict[str, Any]:
    """The queries that reach `server` when `asked` go to an unbound on `port` in front of it:
    their count, their share, and the scopes the clients saw."""
    conf = unbound_conf(workdir, port, server.port)
    with open(workdir / "unbound.log", "wb") as log_file:
        process = subprocess.Popen([binary, "-d", "-c", str(conf)], stdout=log_file,
                                   stderr=subprocess.STDOUT)
    try:
        wait_unbound(port, process, workdir)
        before = settled_requests(server)
        wires = [gc.query(i, f"{name}.{ORIGIN}", client=client, recursion=True)
                 for i, (name, client) in enumerate(asked)]
        began = time.monotonic()
        replies = gc.ask_udp(port, wires, window=1)  # one at a time: a miss is cached first
        elapsed = time.monotonic() - began
        upstream = settled_requests(server) - before
    finally:
        process.terminate()
        process.wait(10)
    scopes: dict[int, int] = {}
    for reply in replies:
        scopes[reply.scope or 0] = scopes.get(reply.scope or 0, 0) + 1
    return {"upstream": upstream, "upstream_per_query": upstream / len(asked),
            "seconds": elapsed, "scopes_seen": dict(sorted(scopes.items()))}


def wait_unbound(port: int, process: subprocess.Popen[bytes], workdir: Path) -> None:
    deadline = time.monotonic() + 30
    probe = gc.query(1, f"{STATIC}.{ORIGIN}", recursion=True)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"unbound exited:\n{tail(workdir / 'unbound.log')}")
        with contextlib.suppress(BenchError, OSError):  # refused until it listens
            if gc.ask_udp(port, [probe], timeout=0.5, tries=1)[0].addresses:
                return
        time.sleep(0.1)
    raise BenchError(f"unbound did not answer within 30 s:\n{tail(workdir / 'unbound.log')}")
