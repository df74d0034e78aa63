#!/usr/bin/env python3
"""Three real healthdns instances, each a name server of `bench.test` and each other's peers,
their probers on source addresses of their own: how soon a backend that two of the three
vantages lose leaves every instance's answers, counted from the second vantage's failing check.

    .venv/bin/python bench/peers_answers.py [--rounds 10]
    taskset -c 1 .venv/bin/python bench/peers_answers.py

The backend (HTTP on loopback) resets the connections of the sources it is told to cut, and
notes when it does. Each round: every source reaches it and every instance serves it; one
vantage is cut (it is outvoted: no answer changes), then a second; the second vantage's first
reset connection is its failing check (rise = fall = 1: that check flips its state). From that
moment, each instance is asked `www.bench.test A` over UDP every 5 ms until its answer no longer
holds the backend: the figure is the last of the three. Then every cut is lifted and the
answers wait to be whole again.

The whole path is in the figure: prober -> supervisor -> peers process -> HTTPS report to each
peer -> their verdicts -> supervisor -> signer -> responders. Prints the median and the worst.
"""

from __future__ import annotations

import argparse
import base64
import random
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
from harness import BenchError
from harness.servers import healthdns_command
from harness.supervisor import Supervisor

NET = f"127.{random.randint(64, 250)}.{random.randint(1, 250)}"
NAMES = ("a", "b", "c")
SOURCES = {name: f"{NET}.{i}" for i, name in enumerate(NAMES, 1)}
LISTEN = {name: f"{NET}.{i}" for i, name in enumerate(NAMES, 11)}
BACKEND, OTHER = f"{NET}.21", f"{NET}.22"
PEER_PORT = 18155
SECRET = base64.b64encode(b"bench-peers-answers-secret-32byt").decode()
CHECK_INTERVAL = 0.5


class Backend:
    """HTTP 200 on (host, port), a reset for the sources in `cut`; when each source was last
    reset (monotonic)."""

    def __init__(self, host: str, port: int = 0) -> None:
        self.sock = socket.create_server((host, port))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.cut: set[str] = set()
        self.reset: dict[str, list[float]] = {}
        self.open = True
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while self.open:
            try:
                conn, (source, _) = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                if source in self.cut:
                    self.reset.setdefault(source, []).append(time.monotonic())
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    continue
                conn.settimeout(0.5)
                try:
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                                 b"Connection: close\r\n\r\nok")
                except OSError:
                    pass

    def first_reset(self, source: str, after: float) -> float | None:
        return next((t for t in self.reset.get(source, ()) if t >= after), None)


def config(name: str, port: int) -> str:
    peers = "".join(f'\n[[peers.peers]]\nname = "{other}"\n'
                    f'url = "http://{LISTEN[other]}:{PEER_PORT}"\nsecret = "{SECRET}"\n'
                    for other in NAMES if other != name)
    return f'''[server]
listen = ["127.0.0.1:0"]
responders = 1

[prober]
source = ["{SOURCES[name]}"]
fence_min_targets = 3

[peers]
name = "{name}"
listen = "{LISTEN[name]}:{PEER_PORT}"
plain_http = true
{peers}
[[zones]]
origin = "bench.test"
nameservers = ["ns1.bench.test"]

[zones.records.www]
ttl = 5

[zones.records.www.pool]
addresses = ["{BACKEND}", "{OTHER}"]
check = {{ kind = "http", port = {port}, interval = {CHECK_INTERVAL}, timeout = 0.4, rise = 1, fall = 1 }}
'''


def addresses(server: Supervisor) -> set[str]:
    query = dns.message.make_query("www.bench.test", dns.rdatatype.A)
    try:
        answer = dns.query.udp(query, server.host, port=server.port, timeout=0.5)
    except dns.exception.Timeout:
        return set()
    return {rr.address for rrset in answer.answer for rr in rrset}


def until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not within {timeout} s")
        time.sleep(0.02)


def one_round(n: int, servers: list[Supervisor], backend: Backend) -> float:
    first, second = SOURCES[NAMES[n % 3]], SOURCES[NAMES[(n + 1) % 3]]
    backend.cut = {first}
    time.sleep(3 * CHECK_INTERVAL)  # outvoted: it stays in every answer
    if any(BACKEND not in addresses(s) for s in servers):
        raise BenchError("one vantage alone took the backend out of an answer")
    mark = time.monotonic()
    backend.cut = {first, second}
    gone: dict[int, float] = {}
    deadline = mark + 20
    while len(gone) < len(servers) and time.monotonic() < deadline:
        for i, server in enumerate(servers):
            if i not in gone and BACKEND not in addresses(server):
                gone[i] = time.monotonic()
        time.sleep(0.005)
    failed = backend.first_reset(second, mark)
    if len(gone) < len(servers) or failed is None:
        raise BenchError("the backend did not leave every answer within 20 s")
    backend.cut = set()
    until(lambda: all(BACKEND in addresses(s) for s in servers), "the backend back")
    return max(gone.values()) - failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    command = healthdns_command(None)
    if command is None:
        raise SystemExit("healthdns-supervisor is not installed (./dev test --co -q)")
    backend = Backend(BACKEND)
    Backend(OTHER, backend.port)
    servers: list[Supervisor] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for name in NAMES:
                path = Path(tmp) / f"{name}.toml"
                path.write_text(config(name, backend.port))
                servers.append(Supervisor([command, "--config", str(path), "--control-listen",
                                           "", "--log-level", "info"], 30))
            until(lambda: all(BACKEND in addresses(s) for s in servers), "every answer whole")
            time.sleep(3)  # every peer heard by every other
            delays = [one_round(n, servers, backend) for n in range(args.rounds)]
        finally:
            for server in servers:
                server.stop()
    print(f"answers  {statistics.median(delays) * 1000:6.1f} ms median, "
          f"{max(delays) * 1000:.1f} ms worst: from the second vantage's failing check to "
          f"the last of three instances' answers ({len(delays)} rounds)")


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print(f"peers_answers: {e}", file=sys.stderr)
        raise SystemExit(1) from None
