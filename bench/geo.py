"""Routing by location (#23), side by side with gdnsd's geoip plugin, in one run.

    .venv/bin/python bench/geo.py [--rounds 5] [--seconds 5] [--json PATH]
    .venv/bin/python bench/geo.py --quick          # seconds: tests/test_bench_geo.py runs it

One generated Country-model database (harness/geodata.py: `--v4` + `--v6` networks, ~400,000 by
default, as GeoLite2-Country), one map over five sites (continents, a third of the countries by
their own rule, an explicit network), five loopback backends (one per site) that every server
checks. Measured:

Before the load, the first 1,000 clients of the query file are asked of healthdns and gdnsd:
every reply must name the same site with the same scope (the two serve the same map), or the
run stops.

1. **qps**: dnsperf (`-B`: every query carries the ECS option of one client of a sample drawn
   from the database's networks, IPv4 and IPv6) on a mix of `--names` geo names, against
   healthdns with the geo pools, healthdns with the same names as plain pools (no map: the same
   queries, the same checks), both with their packet cache (the default: 10,000 answers per
   responder, kept by the query's bytes, ECS included) and both without it (every query looked
   up: the cost of the map lookup itself), and gdnsd's geoip plugin on the same database and
   map; in turns, medians of `--rounds`; unpinned (`--responders` each), then pinned (one
   responder; servers `taskset -c 1`, dnsperf `taskset -c 0`). Targets: geo >= 0.9x plain,
   geo >= 1.0x gdnsd.
2. **load**: the geo server's start-to-ready time and the time until its first answer routed
   by the map, beside the plain server's ready time, and the signer's own line on compiling the
   map (target <= 10 s), and what a responder holds more with the map (RSS and PSS from
   /proc, the geo server's responders minus the plain server's; target <= 30 MiB).
3. **failover**: a site's backend stops; the time until a client of that site gets the next
   site of its order, healthdns and gdnsd (healthdns's bound: interval x fall + timeout + 0.5 s;
   gdnsd's extmon checks every 2 s at least), `--flips` times.
4. **unbound in front**: an unbound caching by ECS (subnetcache) in front of healthdns; clients
   in `--subnets` different /24s (half of the first 2 x `--subnets` /24s of 10/8) ask every
   geo name `--repeat` times, one query at a time, in random order; the queries that reach
   healthdns (its `healthdns_dns_requests_total`) per query sent, with the same map on a
   database of GeoLite2-Country's density (`--sparse` networks over 10/8; the qps database
   packs 250,000 into 10/8, 256 times denser than the real one, which would make every block
   narrower than a /24) and with a map of explicit /24 networks whose neighbours alternate
   between two orders (every block exactly as long as the clients' source prefix: what a
   server that echoes the source length as scope gets from a resolver), and the ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import ipaddress
import json
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from harness import EXIT_START, BenchError, ecscache, geodata, georigs, log
from harness import geoclients as gc
from harness.backend import Backend
from harness.dnsperf import SERVER_CPU, parse_dnsperf
from harness.dnsperf import dnsperf as run
from harness.procfs import pss_kib, rss_kib, titled
from harness.servers import Server, free_port, healthdns_command, which

SITES = ("fra", "iad", "sin", "gru", "syd")
EXPLICIT = ("10.255.0.0/16",)  # an explicit network: syd, then sin
LABELS = ("healthdns geo", "healthdns plain", "healthdns geo uncached",
          "healthdns plain uncached", "gdnsd geoip")
GEO, PLAIN, GEO_UNCACHED, PLAIN_UNCACHED, GDNSD = LABELS
RATIOS = {"geo/plain": (GEO, PLAIN), "geo/plain uncached": (GEO_UNCACHED, PLAIN_UNCACHED),
          "geo/gdnsd": (GEO, GDNSD), "geo uncached/gdnsd": (GEO_UNCACHED, GDNSD)}


def rules() -> tuple[georigs.Rule, ...]:
    """Each continent its two sites; a third of the countries their own pair."""
    out = [georigs.Rule(continent=c, sites=(SITES[i % 5], SITES[(i + 1) % 5]))
           for i, c in enumerate(geodata.CONTINENT_NAMES)]
    for i in range(0, len(geodata.COUNTRIES), 3):
        continent, country = geodata.country_of(i)
        out.append(georigs.Rule(continent=continent, country=country,
                                sites=(SITES[(i + 2) % 5], SITES[(i + 4) % 5])))
    return tuple(out)


def sample_clients(count: int, seed: int) -> list[gc.Client]:
    """ECS clients inside the database's space: IPv4 /24s in 10/8, IPv6 /56s in 2001:db8::/32."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        if rng.random() < 0.7:
            out.append(gc.Client(4, int(ipaddress.IPv4Address("10.0.0.0")) +
                                 (rng.getrandbits(16) << 8), 24))
        else:
            out.append(gc.Client(6, int(ipaddress.IPv6Address("2001:db8::")) +
                                 (rng.getrandbits(24) << 72), 56))
    return out


class Rig:
    """The database, the backends and the servers of one run; stops what it started."""

    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args, self.root = args, root
        self.rng = random.Random(args.seed)
        self.ports: set[int] = set()
        addresses = {s: str(ipaddress.IPv4Address("127.0.0.11") + i) for i, s in enumerate(SITES)}
        first = Backend(addresses[SITES[0]])
        self.backends = {SITES[0]: first,
                         **{s: Backend(addresses[s], first.port) for s in SITES[1:]}}
        for backend in self.backends.values():
            backend.up()
        began = time.monotonic()
        database = geodata.country_sized(root / "country.mmdb", args.v4, args.v6, args.seed)
        log(f"database: {args.v4 + args.v6} networks asked, written in "
            f"{time.monotonic() - began:.1f} s ({database.stat().st_size >> 20} MiB)")
        self.setup = georigs.GeoSetup(
            database=database, sites=SITES, addresses=addresses, check_port=first.port,
            names=tuple(f"geo{i}" for i in range(args.names)), rules=rules(),
            networks=((EXPLICIT, ("syd", "sin")),), default=SITES)
        self.running: list[Server] = []

    def healthdns(self, label: str, setup: georigs.GeoSetup, geo: bool, pinned: bool,
                  responders: int, packet_cache: int | None = None) -> Server:
        command = healthdns_command(self.args.healthdns)
        if command is None:
            raise BenchError("healthdns-supervisor not found (give --healthdns PATH)")
        port, control = free_port(self.ports, self.rng), free_port(self.ports, self.rng)
        workdir = self._workdir(label, pinned)
        config = workdir / "healthdns.toml"
        config.write_text(georigs.healthdns_toml(setup, port, responders, geo,
                                                 packet_cache, control))
        argv = [command, "--config", str(config), "--log-level", "info"]
        return self._start(Server(label, "healthdns", self._pin(argv, pinned), port, workdir,
                                  ready_line="ready: serving", ready_probe=READY,
                                  responders=responders, control_port=control))

    def gdnsd(self, pinned: bool) -> Server:
        binary = which("gdnsd")
        if binary is None:
            raise BenchError("gdnsd not found (apt-get install gdnsd)")
        port = free_port(self.ports, self.rng)
        workdir = georigs.gdnsd_dir(self.setup, self._workdir("gdnsd geoip", pinned), port)
        return self._start(Server("gdnsd geoip", "gdnsd",
                                  self._pin([binary, "-c", str(workdir), "start"], pinned),
                                  port, workdir, ready_probe=READY))

    def _workdir(self, label: str, pinned: bool) -> Path:
        path = self.root / f"{label.replace(' ', '-')}{'-pinned' if pinned else ''}"
        path.mkdir(exist_ok=True)
        return path

    @staticmethod
    def _pin(argv: list[str], pinned: bool) -> list[str]:
        return ["taskset", "-c", SERVER_CPU, *argv] if pinned else argv

    def _start(self, server: Server) -> Server:
        self.running.append(server)
        server.start(120.0)
        return server

    def stop(self, server: Server) -> None:
        server.stop()
        self.running.remove(server)

    def close(self) -> None:
        for server in list(self.running):
            self.stop(server)
        for backend in self.backends.values():
            backend.close()


READY = (f"{georigs.STATIC}.{georigs.ORIGIN}", "A", ("192.0.2.50",))


def dnsperf(server: Server, queries: Path, args: argparse.Namespace, pinned: bool,
            out: Path) -> dict[str, Any]:
    return parse_dnsperf(run(server, queries, args, out, ["-B"], pinned=pinned))


def qps(rig: Rig, servers: Sequence[Server], queries: Path, pinned: bool) -> dict[str, Any]:
    """Each server once per round, in turns; medians and the ratios."""
    runs: dict[str, list[float]] = {s.label: [] for s in servers}
    bad: dict[str, dict[str, int]] = {}
    for round_no in range(1, rig.args.rounds + 1):
        for server in servers:
            out = rig.root / f"dnsperf-{server.label.replace(' ', '-')}-{int(pinned)}-{round_no}"
            stats = dnsperf(server, queries, rig.args, pinned, out)
            runs[server.label].append(stats["qps"])
            if wrong := {c: n for c, n in stats["rcodes"].items() if c != "NOERROR"}:
                bad[server.label] = wrong
            log(f"{'pinned' if pinned else 'unpinned'} round {round_no}: {server.label} "
                f"{stats['qps']:.0f} q/s, lost {stats['lost_pct']:.2f}%")
    medians = {label: statistics.median(values) for label, values in runs.items()}
    ratios = {name: medians[a] / medians[b] if medians[b] else None
              for name, (a, b) in RATIOS.items()}
    return {"rounds": runs, "median": medians, "bad_rcodes": bad, "ratios": ratios}


def responder_memory(server: Server) -> dict[str, float]:
    """Mean RSS and PSS of a healthdns server's responders (their process titles say which
    they are), in MiB."""
    pids = titled(server.pid, "healthdns: responder")
    if not pids:
        raise BenchError(f"no responder found under {server.label} (pid {server.pid})")
    return {"responders": len(pids),
            "rss_mib": statistics.mean(rss_kib(p) or 0 for p in pids) / 1024,
            "pss_mib": statistics.mean(pss_kib(p) or 0 for p in pids) / 1024}


def site_of(rig: Rig, reply: gc.Reply) -> str:
    by_address = {a: s for s, a in rig.setup.addresses.items()}
    return by_address.get(reply.addresses[0], "?") if reply.addresses else "-"


def failover(rig: Rig, servers: Sequence[Server], flips: int) -> dict[str, Any]:
    """Per server, seconds from a site's backend stopping to its client getting the next
    site (the explicit network's client: syd, then sin); the backend restarts in between."""
    client = gc.Client(4, int(ipaddress.IPv4Address(EXPLICIT[0].split("/")[0])), 24)
    name = rig.setup.names[0]
    out: dict[str, Any] = {}
    backend = rig.backends["syd"]
    for server in servers:
        times = []
        for _ in range(flips):
            wait_site(rig, server, client, name, "syd", 60.0)
            backend.down()
            began = time.monotonic()
            wait_site(rig, server, client, name, "sin", 60.0)
            times.append(time.monotonic() - began)
            backend.up()
        out[server.label] = {"seconds": times, "median": statistics.median(times),
                             "max": max(times)}
        log(f"failover {server.label}: {', '.join(f'{t:.2f}' for t in times)} s")
    out["bound_s"] = rig.setup.failover_bound
    return out


def wait_site(rig: Rig, server: Server, client: gc.Client, name: str, site: str,
              timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply, = gc.ask(server.port, f"{name}.{georigs.ORIGIN}", [client])
        if site_of(rig, reply) == site:
            return
        time.sleep(0.01)
    raise BenchError(f"{server.label} did not send {client.text()} to {site} in {timeout} s")


def through_unbound(rig: Rig, subnets: int, repeat: int) -> dict[str, Any]:
    """Queries reaching healthdns per query sent to an ECS-caching unbound in front of it."""
    binary = which("unbound")
    if binary is None:
        raise BenchError("unbound not found (apt-get install unbound)")
    rng = random.Random(rig.args.seed + 1)
    base = int(ipaddress.IPv4Address("10.0.0.0"))
    clients = [gc.Client(4, base + (n << 8), 24) for n in rng.sample(range(2 * subnets), subnets)]
    names = rig.setup.names
    asked = [(name, client) for _ in range(repeat) for client in clients for name in names]
    rng.shuffle(asked)
    database = geodata.country_sized(rig.root / "sparse.mmdb", rig.args.sparse, 1000,
                                     rig.args.seed)
    out: dict[str, Any] = {"clients": subnets, "names": len(names), "queries": len(asked),
                           "database_v4_networks": rig.args.sparse}
    cases = {"merged": dataclasses.replace(rig.setup, database=database),
             "source_length": georigs.GeoSetup(
                 database=None, sites=SITES, addresses=rig.setup.addresses,
                 check_port=rig.setup.check_port, names=names,
                 networks=ecscache.alternating(clients), default=SITES)}
    for case, setup in cases.items():
        server = rig.healthdns(f"healthdns {case}", setup, True, False, 1)
        try:
            workdir = rig.root / f"unbound-{case}"
            workdir.mkdir()
            out[case] = ecscache.reaching(binary, workdir, free_port(rig.ports, rig.rng),
                                          server, asked)
            log(f"unbound in front, {case}: {out[case]['upstream']:.0f} of {len(asked)} "
                f"queries reached healthdns ({100 * out[case]['upstream_per_query']:.1f}%)")
        finally:
            rig.stop(server)
    out["ratio"] = out["source_length"]["upstream_per_query"] / \
        max(out["merged"]["upstream_per_query"], 1e-9)
    return out


def agreement(rig: Rig, geo: Server, gdnsd: Server, clients: Sequence[gc.Client],
              count: int = 1000) -> dict[str, Any]:
    """Before the load: the first `count` clients of the query file asked of both servers;
    every reply (site and scope) must be the same, or the two do not serve the same map."""
    asked = list(clients[:count])
    name = f"{rig.setup.names[0]}.{georigs.ORIGIN}"
    ours, theirs = gc.ask(geo.port, name, asked), gc.ask(gdnsd.port, name, asked)
    differ = [(c.text(), a, b) for c, a, b in zip(asked, ours, theirs, strict=True) if a != b]
    if differ:
        raise BenchError(f"{len(differ)} of {len(asked)} clients get another reply from "
                         f"{geo.label} than from {gdnsd.label}, e.g. {differ[:3]}")
    sites = {site_of(rig, reply) for reply in ours}
    log(f"{geo.label} and {gdnsd.label} agree on {len(asked)} clients ({len(sites)} sites)")
    return {"clients": len(asked), "sites": sorted(sites)}


def phase(rig: Rig, queries: Path, clients: Sequence[gc.Client], pinned: bool,
          report: dict[str, Any]) -> None:
    """The servers started (pinned or not), their qps in turns; load, memory and failover
    measured on the unpinned ones."""
    responders = 1 if pinned else rig.args.responders
    servers = [rig.healthdns(GEO, rig.setup, True, pinned, responders)]
    routed = routing_seconds(rig, servers[0])
    servers += [rig.healthdns(PLAIN, rig.setup, False, pinned, responders),
                rig.healthdns(GEO_UNCACHED, rig.setup, True, pinned, responders, 0),
                rig.healthdns(PLAIN_UNCACHED, rig.setup, False, pinned, responders, 0),
                rig.gdnsd(pinned)]
    key = "pinned" if pinned else "unpinned"
    if not pinned:
        report["agreement"] = agreement(rig, servers[0], servers[-1], clients)
    report[key] = qps(rig, servers, queries, pinned)
    if not pinned:
        geo, plain = responder_memory(servers[0]), responder_memory(servers[1])
        report["load"] = {"geo_start_s": servers[0].start_seconds,
                          "geo_routing_s": routed, "compiled": compiled(servers[0]),
                          "plain_start_s": servers[1].start_seconds,
                          "geo_responder": geo, "plain_responder": plain,
                          "added_rss_mib": geo["rss_mib"] - plain["rss_mib"],
                          "added_pss_mib": geo["pss_mib"] - plain["pss_mib"]}
        report["failover"] = failover(rig, [servers[0], servers[-1]], rig.args.flips)
    for server in servers:
        rig.stop(server)


def routing_seconds(rig: Rig, server: Server) -> float:
    """From the start to the first answer routed by the map (the explicit network's client
    sent to syd with the network's scope): the ready line may come before the map is loaded."""
    assert server.start_seconds is not None
    client = gc.Client(4, int(ipaddress.IPv4Address(EXPLICIT[0].split("/")[0])), 24)
    began = time.monotonic()
    deadline = began + 120
    while time.monotonic() < deadline:
        reply, = gc.ask(server.port, f"{rig.setup.names[0]}.{georigs.ORIGIN}", [client])
        if site_of(rig, reply) == "syd" and reply.scope == int(EXPLICIT[0].split("/")[1]):
            return server.start_seconds + time.monotonic() - began
        time.sleep(0.05)
    raise BenchError(f"{server.label} routed no client by its map within 120 s")


def compiled(server: Server) -> str:
    """The signer's own line on compiling the map (networks, orders, seconds)."""
    found = re.findall(r"map world compiled: [^\n]*", server.stderr_path.read_text(
        errors="replace"))
    return found[-1] if found else "(no line)"


def show(report: dict[str, Any]) -> None:
    print()
    for key in ("unpinned", "pinned"):
        if key not in report:
            continue
        row = report[key]
        print(f"{key}: median q/s " + ", ".join(f"{label} {q:.0f}"
                                                for label, q in row["median"].items())
              + "; " + ", ".join(f"{name} x{ratio:.2f}" for name, ratio in row["ratios"].items())
              + (f"; NOT NOERROR: {row['bad_rcodes']}" if row["bad_rcodes"] else ""))
    if "load" in report:
        load = report["load"]
        print(f"load: geo ready in {load['geo_start_s']:.2f} s, routing by the map after "
              f"{load['geo_routing_s']:.2f} s (plain ready in {load['plain_start_s']:.2f} s; "
              f"{load['compiled']}); per responder +{load['added_rss_mib']:.1f} MiB RSS, "
              f"+{load['added_pss_mib']:.1f} MiB PSS")
    if "failover" in report:
        fo = report["failover"]
        print("failover: " + ", ".join(f"{k} median {v['median']:.2f} s max {v['max']:.2f} s"
                                       for k, v in fo.items() if isinstance(v, dict))
              + f" (healthdns bound {fo['bound_s']:.2f} s)")
    if "unbound" in report:
        ub = report["unbound"]
        print(f"unbound in front: {ub['queries']} queries from {ub['clients']} /24s over "
              f"{ub['names']} names; reaching healthdns: merged "
              f"{100 * ub['merged']['upstream_per_query']:.1f}%, scope = source length "
              f"{100 * ub['source_length']['upstream_per_query']:.1f}% (x{ub['ratio']:.1f})")


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, one short round, no "
                   "pinned pass: a check that the script runs (seconds)")
    p.add_argument("--v4", type=int, default=250_000)
    p.add_argument("--v6", type=int, default=150_000)
    p.add_argument("--names", type=int, default=8)
    p.add_argument("--clients-sample", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--outstanding", type=int, default=500)
    p.add_argument("--responders", type=int, default=2)
    p.add_argument("--flips", type=int, default=5)
    p.add_argument("--subnets", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--sparse", type=int, default=4096,
                   help="IPv4 networks of the database behind unbound, tiling 10/8 (4096: "
                   "/20 at the widest, near GeoLite2-Country's density of about a /18 each)")
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--seed", type=int, default=23)
    p.add_argument("--healthdns")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.quick:
        args.v4, args.v6, args.names, args.clients_sample = 3000, 1000, 3, 2000
        args.rounds, args.seconds, args.flips, args.no_pin = 1, 0.5, 1, True
        args.subnets, args.repeat, args.sparse = 100, 2, 1024
    return args


@contextlib.contextmanager
def rig_in(root: Path, args: argparse.Namespace) -> Iterator[Rig]:
    rig = Rig(args, root)
    try:
        yield rig
    finally:
        rig.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(argv)
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(prefix="bench-geo-") as tmp, \
            rig_in(Path(tmp), args) as rig:
        try:
            clients = sample_clients(args.clients_sample, args.seed)
            queries = georigs.binary_queries(rig.root / "geo.bin", rig.setup.names, clients)
            for pinned in (False,) if args.no_pin else (False, True):
                phase(rig, queries, clients, pinned, report)
            report["unbound"] = through_unbound(rig, args.subnets, args.repeat)
        except BenchError as error:
            print(f"bench/geo.py: {error}", file=sys.stderr)
            return EXIT_START
    show(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
