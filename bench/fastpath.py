#!/usr/bin/env python3
"""Nanoseconds of Python per query on the responder's UDP path, in process, noise taken out.

Usage:
    .venv/bin/python bench/fastpath.py
    .venv/bin/python bench/fastpath.py --repeats 9 --profile flood
    .venv/bin/python bench/fastpath.py --repeats 9 --only mix,miss

Workloads, each answered by one `Answerer` (and `Guard` for RRL) built from the benchmark
zone of bench/harness/zone.py, as a responder builds it:

- ``mix``: the standard UDP mix (mostly packet-cache hits once warm);
- ``flood``: a random-subdomain flood, unsigned, no EDNS (dnsperf's default query);
- ``signed``: the same flood with EDNS DO=1 against the zone signed with NSEC (dnsperf -D);
- ``rrl``: the mix through the guard with RRL on but never triggered;
- ``miss``: the mix without a packet cache: every query takes the fast path's lookup;
- ``rotating``: queries for a pool of 8 addresses answered 2 at a time (`max_answers`), with
  and without EDNS, beside the mix's names (one query in four for the pool);
- ``ecs``, ``geo``: queries with an ECS option (a /24 of 1,000 clients) for a pool of three
  addresses, without geo and as a geo pool over three sites (a map of 256 networks); the
  ``-miss`` ones without a packet cache (every query looked up, the map searched);
- ``badkey``, ``badsig``: TSIG-signed junk, with a key the server does not know or with a
  known key's name and another secret (each answered NOTAUTH).

Two measures per workload: `answer` calls alone, and whole `mmsg.Batch.serve` calls on a
loopback socket (recvmmsg, the per-packet loop, sendmmsg: the system calls included), batches
of `--batch` queries sent by a client socket beforehand. The best of `--repeats` interleaved
runs is kept, so that the other processes on the machine add as little as possible.
`--profile NAME` prints a cProfile of one workload's `serve` loop instead.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import socket
import string
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dns.edns
import dns.message
import dns.tsig
import msgspec
from harness import HOST, geodata
from harness.queries import query_mix
from harness.zone import ZONE, Zone

from healthdns.responder import guard, mmsg
from healthdns.responder.query import Answerer
from healthdns.responder.table import Table, indexes
from healthdns.shared import config, messages
from healthdns.shared import tsigkeys as keys_of_tsig
from healthdns.signer import keys
from healthdns.signer.main import Signer

Answer = Callable[[bytes, int], "bytes | None"]
Guarded = Callable[[bytes, int, bytes], "bytes | None"]
Workload = tuple[Answer, "Guarded | None", list[bytes]]


def load(signed: bool, cache: int) -> tuple[Answerer, config.Config]:
    """An answerer holding the benchmark zone, as a responder loads it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "zone.toml"
        text = Zone(0).healthdns_toml(53, 1)
        if signed:
            key = Path(tmp) / "csk.pem"
            keys.write(keys.generate(keys.Algorithm.ECDSAP256SHA256), str(key))
            text += f'\n[zones.dnssec]\ncsk = "{key}"\n'
        path.write_text(text)
        cfg = config.load(path)
        published = Signer(cfg).update({}, full=True)
    assert published is not None
    answerer = Answerer(cfg.server.udp_payload_size)
    snapshot = messages.decode_to_child(published.snapshot)
    assert isinstance(snapshot, messages.Snapshot)
    answerer.table = Table(snapshot, cache)
    return answerer, cfg


def load_rotating(cache: int) -> Answerer:
    """An answerer holding the benchmark zone and a rotating pool `pool` (all addresses up)."""
    pool = {"addresses": [f"192.0.2.{i}" for i in range(100, 108)], "max_answers": 2,
            "check": {"port": 80}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "zone.toml"
        path.write_text(Zone(0).healthdns_toml(53, 1)
                        + f"pool = {{ pool = {pool_toml(pool)} }}\n")
        cfg = config.load(path)
    health = {target: True for target in cfg.checks()}
    published = Signer(cfg).update(health, full=True)
    assert published is not None
    answerer = Answerer(cfg.server.udp_payload_size)
    snapshot = messages.decode_to_child(published.snapshot)
    assert isinstance(snapshot, messages.Snapshot)
    answerer.table = Table(snapshot, cache)
    return answerer


def load_geo(cache: int) -> Answerer:
    """An answerer holding the benchmark zone, a geo pool `geo` over three sites and a pool
    `plain` of the same addresses without geo, all up; the map: 256 /16s of a database
    written here, a continent each."""
    sites = {"fra": "192.0.2.201", "iad": "192.0.2.202", "sin": "192.0.2.203"}
    geo = {"map": "world", "check": {"port": 80},
           "sites": {name: {"addresses": [address]} for name, address in sites.items()}}
    plain = {"addresses": list(sites.values()), "check": {"port": 80}}
    continents = ("EU", "NA", "AS")
    with tempfile.TemporaryDirectory() as tmp:
        database = geodata.write_mmdb(Path(tmp) / "geo.mmdb", [
            (f"10.{i}.0.0/16", geodata.record(continents[i % 3], "DE")) for i in range(256)])
        path = Path(tmp) / "zone.toml"
        path.write_text(Zone(0).healthdns_toml(53, 1)
                        + f"geo = {{ pool = {pool_toml(geo)} }}\n"
                        + f"plain = {{ pool = {pool_toml(plain)} }}\n"
                        + "[sites.fra]\n[sites.iad]\n[sites.sin]\n[maps.world]\n"
                        + f'database = "{database}"\n'
                        + 'rules = [{ continent = "EU", sites = ["fra", "iad"] }, '
                        + '{ continent = "NA", sites = ["iad", "fra"] }, '
                        + '{ continent = "AS", sites = ["sin", "iad"] }]\n')
        cfg = config.load(path)
        signer = Signer(cfg)
        published = signer.update({target: True for target in cfg.checks()}, full=True)
    assert published is not None
    answerer = Answerer(cfg.server.udp_payload_size)
    snapshot = messages.decode_to_child(published.snapshot)
    assert isinstance(snapshot, messages.Snapshot)
    answerer.table = Table(snapshot, cache, indexes(signer.maps.tables()))
    return answerer


def ecs_wires(name: str, rng: random.Random) -> list[bytes]:
    """Queries for `name` with an ECS option (a /24, as resolvers send), from 1,000 clients
    of the map's networks, each asking several times."""
    clients = [f"10.{rng.randrange(256)}.{rng.randrange(256)}.0" for _ in range(1000)]
    return [dns.message.make_query(f"{name}.{ZONE}", "A", use_edns=0, options=[
        dns.edns.ECSOption(rng.choice(clients), 24)]).to_wire() for _ in range(20_000)]


def pool_toml(pool: dict[str, object]) -> str:
    """An inline TOML table of strings, lists of strings, numbers and such tables."""
    def value(v: object) -> str:
        if isinstance(v, dict):
            return pool_toml(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return f'"{v}"' if isinstance(v, str) else str(v)
    return "{ " + ", ".join(f"{k} = {value(v)}" for k, v in pool.items()) + " }"


def flood_wires(count: int, rng: random.Random, dnssec: bool) -> list[bytes]:
    """Random names under the zone, as dnsperf sends them: no EDNS, or with -D EDNS and DO=1."""
    alphabet = string.ascii_lowercase + string.digits
    edns = {"use_edns": 0, "want_dnssec": True, "payload": 4096} if dnssec else {}
    return [dns.message.make_query(f"{''.join(rng.choices(alphabet, k=12))}.{ZONE}", "A",
                                   **edns).to_wire()  # type: ignore[arg-type]
            for _ in range(count)]


def workloads(rng: random.Random) -> dict[str, Workload]:
    plain, cfg = load(False, 10_000)
    signed, _ = load(True, 10_000)
    mix = [dns.message.make_query(name, rtype).to_wire()
           for _, name, rtype in query_mix(Zone(0), rng)]
    rrl_cfg = msgspec.structs.replace(cfg, rrl=config.RrlSpec(responses_per_second=1_000_000),
                                      cookies=config.CookieSpec(enabled=False))
    rrl_plain, _ = load(False, 10_000)
    made = guard.build(rrl_plain, rrl_cfg, b"s" * 32, None)
    assert made is not None
    client = bytes((127, 0, 0, 1))

    def limited(wire: bytes, transport: int) -> bytes | None:
        return made.answer(wire, transport, client)

    keyed, _ = load(False, 10_000)
    secret = b"k" * 32
    keyed.tsig_keys = [keys_of_tsig.Key("xfr.example", "hmac-sha256", secret)]
    junk = {kind: [signed_wire(name, "A", key) for _, name, _ in query_mix(Zone(0), rng)]
            for kind, key in (("badkey", dns.tsig.Key("stranger.", secret, "hmac-sha256")),
                              ("badsig", dns.tsig.Key("xfr.example.", b"w" * 32,
                                                      "hmac-sha256")))}
    uncached, _ = load(False, 0)
    rotating = load_rotating(10_000)
    pool = [dns.message.make_query(f"pool.{ZONE}", "A", use_edns=edns).to_wire()
            for edns in (False, 0)]
    mixed = [wire for i, line in enumerate(mix) for wire in
             ((line, pool[i % 2]) if i % 3 == 0 else (line,))]
    geo, geo_uncached = load_geo(10_000), load_geo(0)
    ecs = {name: ecs_wires(name, random.Random(7)) for name in ("geo", "plain")}
    return {"mix": (plain.answer, None, mix),
            "ecs": (geo.answer, None, ecs["plain"]),
            "geo": (geo.answer, None, ecs["geo"]),
            "ecs-miss": (geo_uncached.answer, None, ecs["plain"]),
            "geo-miss": (geo_uncached.answer, None, ecs["geo"]),
            "flood": (plain.answer, None, flood_wires(20_000, rng, False)),
            "signed": (signed.answer, None, flood_wires(20_000, rng, True)),
            "rrl": (limited, made.answer, mix),
            "miss": (uncached.answer, None, mix),
            "rotating": (rotating.answer, None, mixed),
            "badkey": (keyed.answer, None, junk["badkey"][:300]),
            "badsig": (keyed.answer, None, junk["badsig"][:300])}


def signed_wire(name: str, rdtype: str, key: dns.tsig.Key) -> bytes:
    query = dns.message.make_query(name, rdtype, use_edns=0)
    query.use_tsig(key)
    return query.to_wire()


def time_answer(answer: Answer, wires: list[bytes]) -> float:
    """Seconds per query of `answer` over `wires`."""
    began = time.perf_counter()
    for wire in wires:
        answer(wire, 0)
    return (time.perf_counter() - began) / len(wires)


class Loop:
    """A server socket served by `mmsg.Batch`, fed by a client socket."""

    def __init__(self, batch: int) -> None:
        self.server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.server.bind((HOST, 0))
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.client.bind((HOST, 0))
        self.client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
        self.client.setblocking(False)
        self.address = self.server.getsockname()
        self.batch = mmsg.Batch(self.server, batch)

    def time_serve(self, answer: Answer, guarded: Guarded | None, wires: list[bytes]) -> float:
        """Seconds per query in `Batch.serve`, the system calls included; `guarded`: every
        query goes to it with the client's address, as with RRL on."""
        size, spent, done = self.batch.size, 0.0, 0
        for start in range(0, len(wires) - size + 1, size):
            for wire in wires[start:start + size]:
                self.client.sendto(wire, self.address)
            began = time.perf_counter()
            got = 0
            while got < size:
                got += max(0, self.batch.serve(answer, print, guarded, guarded is not None))
            spent += time.perf_counter() - began
            done += got
            self._drain()
        return spent / done

    def _drain(self) -> None:
        while True:
            try:
                self.client.recv(65535)
            except BlockingIOError:
                return


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5, help="interleaved runs (default 5)")
    p.add_argument("--batch", type=int, default=32, help="queries per recvmmsg (default 32)")
    p.add_argument("--profile", metavar="NAME", help="cProfile one workload's serve loop")
    p.add_argument("--only", metavar="NAMES", help="these workloads alone, comma-separated")
    args = p.parse_args()
    if not mmsg.available():
        print("bench/fastpath.py: recvmmsg is not available here", file=sys.stderr)
        return 2
    rng = random.Random(1)
    loads = workloads(rng)
    if args.only:
        loads = {name: loads[name] for name in args.only.split(",")}
    loop = Loop(args.batch)
    for answer, _, wires in loads.values():  # warm: the packet cache admits on a second miss
        time_answer(answer, wires)
        time_answer(answer, wires)
    if args.profile:
        answer, guarded, wires = loads[args.profile]
        profiler = cProfile.Profile()
        profiler.runcall(loop.time_serve, answer, guarded, wires * 3)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        return 0
    best = {name: [float("inf"), float("inf")] for name in loads}
    for _ in range(args.repeats):
        for name, (answer, guarded, wires) in loads.items():  # interleaved: noise alike
            best[name][0] = min(best[name][0], time_answer(answer, wires))
            best[name][1] = min(best[name][1], loop.time_serve(answer, guarded, wires))
    print(f"ns per query, best of {args.repeats} (batches of {args.batch} for serve)")
    print(f"  {'workload':10s} {'answer':>8s} {'serve':>8s}")
    for name, (answer_s, serve_s) in best.items():
        print(f"  {name:10s} {answer_s * 1e9:8.0f} {serve_s * 1e9:8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
