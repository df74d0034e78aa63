#!/usr/bin/env python3
"""DNS over TCP: throughput and the lock-out scenario, healthdns against gdnsd and Knot.

Usage:
    .venv/bin/python bench/tcp.py                          # both parts, ~3 minutes
    .venv/bin/python bench/tcp.py --rounds 1 --seconds 3 --skip-lockout
    .venv/bin/python bench/tcp.py --skip-throughput --attackers 5000 --legit 200
    .venv/bin/python bench/tcp.py --json /tmp/tcp.json

Throughput: `dnsperf -m tcp -c 8 -T 2 -q 500` with bench/run.py's standard query mix, against
each server in turns (healthdns, gdnsd, knot, healthdns, ...) for `--rounds` rounds; the
medians and the ratios of healthdns to each reference.

Lock-out: an attacker process opens `--attackers` TCP connections (from 127.0.1.0/24, 50 per
address, so that they look like many clients), sends nothing, and reopens at once any that
the server closes. Once they are open, a legitimate client on 127.0.0.1 asks `--legit`
queries spread over `--spread` seconds, each over a new TCP connection (`--concurrency` at a
time, 2 s for the connection and 2 s for the answer); the share answered is reported. healthdns runs with its defaults,
and again with `tcp_max_connections = --small-limit` to show eviction under a reconnecting
flood larger than the limit. gdnsd and Knot are measured the same way for reference.

Servers are started with bench/run.py's helpers, each on its own port. RLIMIT_NOFILE is raised
to its hard limit here (the attacker needs a descriptor per connection). Exit 1 when healthdns
falls below the targets of issue #12 (0.6x Knot and 0.5x gdnsd, 99% answered).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import multiprocessing
import random
import resource
import selectors
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from harness import EXIT_START, HOST, BenchError, log
from harness.dnsperf import parse_dnsperf
from harness.kinds import gdnsd_server, knot_server
from harness.queries import query_mix
from harness.servers import Server, free_port, healthdns_command, which
from harness.zone import ZONE, Zone

PER_ADDRESS = 50  # attacker connections per source address
TIMEOUT = 2.0  # seconds for the legitimate client's connect, then for its answer
TARGET_KNOT, TARGET_GDNSD, TARGET_ANSWERED = 0.6, 0.5, 99.0


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# ---------------------------------------------------------------------------------------------
# Servers.


def healthdns(command: str, zone: Zone, port: int, root: Path, responders: int,
              limit: int | None) -> Server:
    label = "healthdns" if limit is None else f"healthdns max={limit}"
    workdir = root / label.replace(" ", "-").replace("=", "")
    workdir.mkdir()
    toml = zone.healthdns_toml(port, responders)
    if limit is not None:
        toml = toml.replace("[server]\n", f"[server]\ntcp_max_connections = {limit}\n", 1)
    (workdir / "healthdns.toml").write_text(toml)
    return Server(label, "healthdns",
                  [command, "--config", str(workdir / "healthdns.toml"),
                   "--log-level", "info", "--control-listen", "127.0.0.1:0"],
                  port, workdir, ready_line="ready: serving", responders=responders)


def references(args: argparse.Namespace, zone: Zone, root: Path, ports: set[int],
               rng: random.Random) -> list[Server]:
    out = []
    for kind, binary, build in (("gdnsd", "gdnsd", gdnsd_server),
                                ("knot", "knotd", knot_server)):
        path = which(binary)
        if kind in (args.skip or ()) or path is None:
            log(f"note: {kind} skipped" + ("" if path else f" ({binary} not found)"))
            continue
        workdir = root / kind
        workdir.mkdir()
        out.append(build(path, zone, free_port(ports, rng), workdir))
    return out


# ---------------------------------------------------------------------------------------------
# Throughput.


def dnsperf_tcp(server: Server, queries: Path, args: argparse.Namespace) -> dict[str, Any]:
    argv = ["dnsperf", "-m", "tcp", "-s", HOST, "-p", str(server.port), "-d", str(queries),
            "-l", f"{args.seconds:g}", "-c", "8", "-T", "2", "-q", "500"]
    result = subprocess.run(argv, check=False, capture_output=True, text=True,
                            timeout=args.seconds + 60)
    if result.returncode != 0:
        raise BenchError(f"dnsperf -m tcp against {server.label} exited "
                         f"{result.returncode}:\n{result.stdout[-1500:]}{result.stderr}")
    return parse_dnsperf(result.stdout)


def throughput(servers: Sequence[Server], queries: Path,
               args: argparse.Namespace) -> dict[str, Any]:
    rounds: dict[str, list[dict[str, Any]]] = {s.label: [] for s in servers}
    for round_no in range(1, args.rounds + 1):
        for server in servers:
            stats = dnsperf_tcp(server, queries, args)
            rounds[server.label].append(stats)
            log(f"tcp round {round_no}/{args.rounds} {server.label:<10} "
                f"{stats['qps']:>9.0f} q/s, lost {stats['lost_pct']:.2f}%, "
                f"avg {stats['latency_ms']:.3f} ms, rcodes {stats['rcodes']}")
    summary = {label: {"qps": statistics.median(r["qps"] for r in rs),
                       "latency_ms": statistics.median(r["latency_ms"] for r in rs),
                       "lost_pct": statistics.median(r["lost_pct"] for r in rs),
                       "qps_rounds": [round(r["qps"]) for r in rs],
                       "rcodes": {code: sum(r["rcodes"].get(code, 0) for r in rs)
                                  for code in sorted({c for r in rs for c in r["rcodes"]})}}
               for label, rs in rounds.items()}
    mine = summary.get("healthdns")
    ratios = {ref: mine["qps"] / row["qps"] for ref, row in summary.items()
              if mine and ref != "healthdns" and row["qps"]}
    return {"summary": summary, "ratios": ratios}


# ---------------------------------------------------------------------------------------------
# Lock-out: the attacker process and the legitimate client.


def attacker(port: int, count: int, conn: Connection) -> None:
    """Hold `count` idle connections to `port`; reopen at once any the server closes.

    Reports (open, reopened) on `conn` every 0.2 s; stops when `conn` says so or closes.
    """
    raise_nofile()
    selector = selectors.DefaultSelector()
    sources = [f"127.0.1.{1 + i // PER_ADDRESS}" for i in range(count)]
    reopened = 0

    def open_one(source: str) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.bind((source, 0))
        sock.connect_ex((HOST, port))
        selector.register(sock, selectors.EVENT_READ, source)

    for source in sources:
        open_one(source)
    reported = 0.0
    while True:
        for key, _ in selector.select(0.05):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(512)
            except OSError:
                data = b""
            if data:
                continue  # an answer we never asked for: ignore
            selector.unregister(sock)
            sock.close()
            reopened += 1
            open_one(key.data)
        now = time.monotonic()
        if now - reported > 0.2:
            reported = now
            if conn.poll():
                return
            try:
                conn.send((len(selector.get_map()), reopened))
            except OSError:
                return


def one_query(port: int, qid: int) -> bool:
    query = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0)
    query += b"".join(bytes([len(p)]) + p.encode() for p in ("www", ZONE.split(".")[0],
                                                            ZONE.split(".")[1]))
    query += b"\x00\x00\x01\x00\x01"
    try:
        with socket.create_connection((HOST, port), timeout=TIMEOUT) as sock:
            sock.settimeout(TIMEOUT)
            sock.sendall(len(query).to_bytes(2, "big") + query)
            head = sock.recv(2, socket.MSG_WAITALL)
            if len(head) < 2:
                return False
            body = sock.recv(int.from_bytes(head, "big"), socket.MSG_WAITALL)
            return body[:2] == query[:2]
    except OSError:
        return False


def lockout(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    ours, theirs = multiprocessing.Pipe()
    proc = multiprocessing.Process(target=attacker, args=(server.port, args.attackers, theirs),
                                   daemon=True)
    proc.start()
    try:
        deadline = time.monotonic() + 20
        held = (0, 0)
        while time.monotonic() < deadline and ours.poll(5):
            held = ours.recv()
            if held[0] >= args.attackers:
                break
        settle = time.monotonic() + 1.0  # let the accept queues and evictions settle
        while time.monotonic() < settle and ours.poll(0.5):
            held = ours.recv()
        began = time.monotonic()
        def paced(i: int) -> bool:  # spread over --spread seconds: idle sweeps happen meanwhile
            time.sleep(max(0.0, began + i * args.spread / args.legit - time.monotonic()))
            return one_query(server.port, i)

        with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
            results = list(pool.map(paced, range(args.legit)))
        seconds = time.monotonic() - began
        while ours.poll(0):
            held = ours.recv()
    finally:
        with contextlib.suppress(OSError):
            ours.send("stop")
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
    answered = 100.0 * sum(results) / len(results)
    log(f"lock-out {server.label:<22} {answered:6.1f}% of {args.legit} answered in "
        f"{seconds:.1f} s ({held[0]} attacker sockets open, {held[1]} reopened)")
    return {"answered_pct": answered, "seconds": seconds, "attacker_open": held[0],
            "attacker_reopened": held[1]}


# ---------------------------------------------------------------------------------------------
# Main.


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0, help="dnsperf -l per run (default 5)")
    p.add_argument("--rounds", type=int, default=3, help="turns per server (default 3)")
    p.add_argument("--responders", type=int, default=2, help="healthdns responders (default 2)")
    p.add_argument("--attackers", type=int, default=5000, help="idle connections (default 5000)")
    p.add_argument("--legit", type=int, default=200, help="legitimate queries (default 200)")
    p.add_argument("--spread", type=float, default=12.0,
                   help="seconds the legitimate queries are spread over (default 12: longer "
                        "than healthdns's idle timeout, so its sweeps happen meanwhile)")
    p.add_argument("--concurrency", type=int, default=8,
                   help="legitimate queries in flight (default 8)")
    p.add_argument("--small-limit", type=int, default=256,
                   help="tcp_max_connections of the second healthdns (default 256; 0: none)")
    p.add_argument("--skip", action="append", choices=("gdnsd", "knot"),
                   help="leave a reference out (repeatable)")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-lockout", action="store_true")
    p.add_argument("--healthdns", metavar="PATH", help="healthdns-supervisor to run")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return p.parse_args(argv)


def measure(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    rng = random.Random(1)
    zone = Zone(0)
    queries = root / "queries.txt"
    queries.write_text("".join(f"{n} {t}\n" for _, n, t in query_mix(zone, rng)))
    command = healthdns_command(args.healthdns)
    if command is None:
        raise BenchError("healthdns-supervisor not found (give --healthdns PATH)")
    ports: set[int] = set()
    servers = [healthdns(command, zone, free_port(ports, rng), root, args.responders, None)]
    if args.small_limit and not args.skip_lockout:
        servers.append(healthdns(command, zone, free_port(ports, rng), root,
                                 args.responders, args.small_limit))
    servers += references(args, zone, root, ports, rng)
    report: dict[str, Any] = {}
    try:
        for server in servers:
            server.start(120)
        if not args.skip_throughput:
            report["throughput"] = throughput(
                [s for s in servers if s.label != f"healthdns max={args.small_limit}"],
                queries, args)
        if not args.skip_lockout:
            report["lockout"] = {s.label: lockout(s, args) for s in servers}
    finally:
        for server in servers:
            server.stop()
    return report


def verdict(report: dict[str, Any]) -> bool:
    ok = True
    ratios = report.get("throughput", {}).get("ratios", {})
    print()
    for ref, target in (("knot", TARGET_KNOT), ("gdnsd", TARGET_GDNSD)):
        if ref in ratios:
            good = ratios[ref] >= target
            ok &= good
            print(f"dnsperf -m tcp -c 8 -T 2 -q 500: healthdns / {ref} = x{ratios[ref]:.2f} "
                  f"(target x{target}) {'ok' if good else 'BELOW TARGET'}")
    for label, row in report.get("lockout", {}).items():
        line = f"lock-out: {label}: {row['answered_pct']:.1f}% answered"
        if label.startswith("healthdns"):
            good = row["answered_pct"] >= TARGET_ANSWERED
            ok &= good
            line += f" (target {TARGET_ANSWERED}%) {'ok' if good else 'BELOW TARGET'}"
        print(line)
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    hard = raise_nofile()
    if hard < args.attackers + 256:
        print(f"bench/tcp.py: the open files hard limit ({hard}) is below --attackers",
              file=sys.stderr)
        return EXIT_START
    root = Path(tempfile.mkdtemp(prefix="healthdns-tcp-"))
    try:
        report = measure(args, root)
    except BenchError as e:
        print(f"bench/tcp.py: error: {e}", file=sys.stderr)
        return EXIT_START
    ok = verdict(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
