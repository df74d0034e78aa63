#!/usr/bin/env python3
"""Three peers processes deciding health together over loopback HTTPS, as in production
(`peers.exchange.Exchange`, TLS verified against a CA of the run's own, HMAC-signed reports):
what combining the views costs each instance, what the reports cost each pair of peers, and
how soon a change seen by two vantages reaches all three verdicts.

Usage:
    .venv/bin/python bench/peers_sites.py                  # 10,000 targets, 3 instances
    .venv/bin/python bench/peers_sites.py --targets 2000 --seconds 5
    taskset -c 1 .venv/bin/python bench/peers_sites.py     # every process on one core

This script plays each instance's supervisor: it sends each peers process its prober's view
(`messages.View`, every target up) and reads the `Verdict`s it hands back. Between each pair
of instances a counting TCP relay carries their traffic (both ways: reports, answers, TLS).

Measured:
  cpu      each peers process's CPU time over `--seconds` of steady state (no changes: the
           heartbeats, the staleness ticks, the counters), as a share of one core;
  traffic  bytes a second between each pair of instances over the same time, both ways;
  change   `--changes` times, a target goes down in the views of two instances (the second
           `--gap` seconds after the first: the second vantage's failing check), and the
           seconds from the second until the last of the three `Verdict`s says it is down;
           then it comes back the same way. The median and the worst are quoted. A verdict
           reaches the answers after this: the supervisor relays it to the signer, which
           publishes (see bench/reload.py for that part).

Needs the dev install (trustme). Prints one line per figure.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import multiprocessing
import os
import socket
import statistics
import threading
import time
from multiprocessing.connection import Connection

import trustme

from healthdns.peers.exchange import Exchange
from healthdns.shared import messages
from healthdns.shared.config import PeerSpec, PeersSpec
from healthdns.shared.config.endpoints import Endpoint

NAMES = ("site-a", "site-b", "site-c")
SECRET = base64.b64encode(b"bench-secret-bench-secret-32byte").decode()


class Relay:
    """TCP relays on loopback, one per ordered pair of instances, counting bytes by pair."""

    def __init__(self) -> None:
        self.bytes: dict[frozenset[str], int] = {}
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def add(self, pair: frozenset[str], port: int) -> int:
        """A relay to 127.0.0.1:`port`; its own port."""
        self.bytes.setdefault(pair, 0)
        server = asyncio.run_coroutine_threadsafe(self._serve(pair, port), self.loop).result()
        port_: int = server.sockets[0].getsockname()[1]
        return port_

    async def _serve(self, pair: frozenset[str], port: int) -> asyncio.Server:
        async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            await asyncio.gather(self._pipe(pair, reader, up_writer),
                                 self._pipe(pair, up_reader, writer))

        return await asyncio.start_server(one, "127.0.0.1", 0)

    async def _pipe(self, pair: frozenset[str], reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                self.bytes[pair] += len(data)
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()


def run_exchange(spec: PeersSpec, sock: socket.socket, conn: Connection) -> None:
    logging.getLogger("healthdns.peers").setLevel(logging.CRITICAL)  # start-up alerts
    asyncio.run(Exchange(0, spec, sock, conn).serve())


class Instance:
    """One peers process, and the verdicts it sent (time, states)."""

    def __init__(self, spec: PeersSpec, sock: socket.socket) -> None:
        ours, theirs = multiprocessing.Pipe()
        self.conn = ours
        self.process = multiprocessing.get_context("fork").Process(
            target=run_exchange, args=(spec, sock, theirs), daemon=True)
        self.process.start()
        self.verdicts: list[tuple[float, dict[str, bool]]] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                message = messages.decode_from("peers", self.conn.recv_bytes())
            except (EOFError, OSError):
                return
            if isinstance(message, messages.Ready):
                self.ready.set()
            elif isinstance(message, messages.Verdict):
                self.verdicts.append((time.monotonic(), message.states))

    def view(self, states: dict[str, bool], full: bool) -> float:
        self.conn.send_bytes(messages.encode(messages.View(states, full)))
        return time.monotonic()

    def cpu(self) -> float:
        """Seconds of CPU the process has used."""
        assert self.process.pid is not None
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def said(self, target: str, up: bool, since: float) -> float | None:
        for when, states in self.verdicts:
            if when >= since and states.get(target) is up:
                return when
        return None


def specs(relay: Relay, socks: list[socket.socket], ca: trustme.CA,
          interval: float) -> list[PeersSpec]:
    ports = [s.getsockname()[1] for s in socks]
    cert = ca.issue_cert("127.0.0.1")
    chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems).decode()
    out = []
    for i, name in enumerate(NAMES):
        peers = tuple(PeerSpec(name=other, secret=SECRET,
                               url=f"https://127.0.0.1:"
                                   f"{relay.add(frozenset((name, other)), ports[j])}")
                      for j, other in enumerate(NAMES) if j != i)
        out.append(PeersSpec(
            name=name, listen=f"127.0.0.1:{ports[i]}", peers=peers, min_vantages=2,
            interval=interval, endpoint=Endpoint("127.0.0.1", ports[i]), cert_pem=chain,
            key_pem=cert.private_key_pem.bytes().decode(), ca_pem=ca.cert_pem.bytes().decode()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=1.0, help="peers.interval")
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--gap", type=float, default=0.3)
    args = parser.parse_args()
    targets = [f"tcp 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255} 443 1/1/2/2"
               for i in range(args.targets)]
    relay = Relay()
    socks = [socket.create_server(("127.0.0.1", 0)) for _ in NAMES]
    instances = [Instance(spec, sock) for spec, sock in
                 zip(specs(relay, socks, trustme.CA(), args.interval), socks, strict=True)]
    for one in instances:
        if not one.ready.wait(30):
            raise SystemExit("a peers process did not start")
        one.view(dict.fromkeys(targets, True), full=True)
    settle(instances, len(targets))
    steady(instances, relay, args.seconds, len(targets))
    changes(instances, targets, args.changes, args.gap)


def settle(instances: list[Instance], size: int) -> None:
    """Until every instance has a full verdict and the whole views went round."""
    deadline = time.monotonic() + 60
    while not all(one.verdicts and len(one.verdicts[0][1]) == size for one in instances):
        if time.monotonic() > deadline:
            raise SystemExit("no verdict within 60 s")
        time.sleep(0.1)
    time.sleep(3)


def steady(instances: list[Instance], relay: Relay, seconds: float, size: int) -> None:
    cpu = [one.cpu() for one in instances]
    sent = dict(relay.bytes)
    start = time.monotonic()
    time.sleep(seconds)
    took = time.monotonic() - start
    for one, before in zip(instances, cpu, strict=True):
        print(f"cpu      {(one.cpu() - before) / took * 100:6.2f} % of a core  "
              f"({one.process.pid}; {size} targets, 3 instances, steady, {took:.1f} s)")
    for pair, total in sorted(relay.bytes.items(), key=lambda p: sorted(p[0])):
        rate = (total - sent[pair]) / took
        print(f"traffic  {rate / 1024:6.2f} KiB/s  {' <-> '.join(sorted(pair))} (both ways)")


def changes(instances: list[Instance], targets: list[str], count: int, gap: float) -> None:
    delays = []
    for n in range(count):
        target = targets[(n * 7919) % len(targets)]
        for up in (False, True):
            instances[n % 3].view({target: up}, full=False)
            time.sleep(gap)
            second = instances[(n + 1) % 3].view({target: up}, full=False)
            deadline = second + 10
            while (seen := [one.said(target, up, second - gap) for one in instances]) \
                    and None in seen and time.monotonic() < deadline:
                time.sleep(0.005)
            if None in seen:
                raise SystemExit(f"{target} did not go {'up' if up else 'down'} everywhere")
            delays.append(max(max(s for s in seen if s is not None) - second, 0.0))
            instances[(n + 2) % 3].view({target: up}, full=False)
            time.sleep(0.2)
    print(f"change   {statistics.median(delays) * 1000:6.1f} ms median, "
          f"{max(delays) * 1000:.1f} ms worst: from the second vantage's change to all three "
          f"verdicts ({len(delays)} changes)")


if __name__ == "__main__":
    main()
