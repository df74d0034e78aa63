#!/usr/bin/env python3
"""Random-subdomain floods, latency at half load and CPU efficiency: healthdns vs gdnsd and Knot.

Usage:
    python3 bench/flood.py --seconds 5 --rounds 3
    python3 bench/flood.py --seconds 2 --rounds 1 --only flood,signed
    python3 bench/flood.py --only latency,cpu --rate 20000 --cpu-rate 40000 --json /tmp/f.json

Experiments (issue #12), each in turns (healthdns, gdnsd, Knot, healthdns, ...), medians over
`--rounds`, ratios of healthdns to each reference:

- ``mix``: the standard UDP mix of bench/harness/queries.py, unthrottled (its maximum rate);
- ``flood``: a random-subdomain ("water torture") flood, unsigned: a query file of `--flood-names`
  random names under the zone (every query a name that does not exist), unthrottled;
- ``signed``: the same flood with DO=1 against healthdns and Knot, both signing (ECDSA P-256,
  NSEC): every answer carries NSEC proofs for its name;
- ``latency``: the standard mix at a fixed rate (`--rate`, by default half of healthdns's maximum
  from ``mix``), per-query latencies from `dnsperf -v`: p50, p90, p99, p99.9;
- ``cpu``: the standard mix at `--cpu-rate` q/s; CPU seconds of every server process (utime +
  stime from /proc/PID/stat, children included) over the run: queries answered per CPU-second.

Servers, zones, the query mix and dnsperf parsing come from bench/harness/. Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import string
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness import EXIT_START, BenchError, log
from harness.dnsperf import CLIENT_CPU, SERVER_CPU, parse_dnsperf
from harness.dnsperf import dnsperf as run
from harness.kinds import REFERENCES, make_servers
from harness.procfs import children
from harness.queries import query_mix
from harness.servers import Server
from harness.zone import ZONE, Zone

EXPERIMENTS = ("mix", "flood", "signed", "latency", "cpu")
TICKS = os.sysconf("SC_CLK_TCK")
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def flood_file(path: Path, count: int, rng: random.Random) -> None:
    """`count` random names under the zone, one query each: nothing a cache can keep."""
    alphabet = string.ascii_lowercase + string.digits
    path.write_text("".join(f"{''.join(rng.choices(alphabet, k=12))}.{ZONE} A\n"
                            for _ in range(count)))


def mix_file(path: Path, rng: random.Random) -> None:
    lines = query_mix(Zone(0), rng)
    path.write_text("".join(f"{name} {rtype}\n" for _, name, rtype in lines))


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and all its descendants (threads are counted in their process)."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (man 5 proc)
        todo.extend(children(current))
    return total


def dnsperf(server: Server, queries: Path, args: argparse.Namespace, out: Path,
            extra: Sequence[str] = ()) -> tuple[dict[str, Any], str]:
    """One dnsperf run: its parsed summary and its whole output."""
    text = run(server, queries, args, out, extra, pinned=args.pin)
    return parse_dnsperf(text), text


def percentiles(text: str) -> dict[str, float]:
    """Latency percentiles in ms from `dnsperf -v` lines (`> RCODE name type SECONDS`)."""
    values = sorted(float(m) for m in re.findall(r"^> \S+ .* ([\d.]+)$", text, re.MULTILINE))
    if not values:
        raise BenchError("dnsperf -v printed no per-query latencies")
    return {f"p{p:g}": 1000 * values[min(len(values) - 1, int(len(values) * p / 100))]
            for p in PERCENTILES}


Measure = Callable[[Server, int], dict[str, Any]]


def in_turns(servers: Sequence[Server], rounds: int, name: str,
             measure: Measure) -> dict[str, list[dict[str, Any]]]:
    """Each server measured once per round, in turns; every result logged as it comes."""
    results: dict[str, list[dict[str, Any]]] = {s.label: [] for s in servers}
    for round_no in range(1, rounds + 1):
        for server in servers:
            row = measure(server, round_no)
            results[server.label].append(row)
            shown = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                              for k, v in row.items() if not isinstance(v, dict))
            log(f"{name} {round_no}/{rounds} {server.label:<10} {shown}")
    return results


def medians(results: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    return {label: {key: statistics.median(r[key] for r in rows) for key in rows[0]
                    if isinstance(rows[0][key], int | float)}
            for label, rows in results.items()}


def report(name: str, title: str, table: dict[str, dict[str, float]], key: str,
           higher_is_better: bool) -> list[dict[str, Any]]:
    """Print the medians of one experiment and the ratios of healthdns to each reference."""
    print(f"\n{title}")
    columns = sorted({c for row in table.values() for c in row})
    print(f"  {'server':<10} " + " ".join(f"{c:>12}" for c in columns))
    for label, row in table.items():
        print(f"  {label:<10} " + " ".join(f"{row.get(c, float('nan')):>12.3f}"
                                           for c in columns))
    ratios = []
    mine = table.get("healthdns")
    for ref in REFERENCES:
        theirs = table.get(ref)
        if mine is None or theirs is None or not theirs.get(key):
            continue
        ratio = mine[key] / theirs[key]
        better = "higher is better" if higher_is_better else "lower is better"
        print(f"  healthdns / {ref}: {key} x{ratio:.2f} ({better})")
        ratios.append({"experiment": name, "reference": ref, "metric": key, "ratio": ratio})
    return ratios


def unthrottled(args: argparse.Namespace, root: Path, queries: Path,
                extra: Sequence[str] = ()) -> Measure:
    def measure(server: Server, round_no: int) -> dict[str, Any]:
        out = root / f"{queries.stem}-{server.kind}-{round_no}.txt"
        stats, _ = dnsperf(server, queries, args, out, extra)
        return {"qps": stats["qps"], "lost_pct": stats["lost_pct"],
                "avg_ms": stats["latency_ms"], "rcodes": stats["rcodes"]}
    return measure


def at_rate(args: argparse.Namespace, root: Path, queries: Path, rate: int) -> Measure:
    def measure(server: Server, round_no: int) -> dict[str, Any]:
        out = root / f"latency-{server.kind}-{round_no}.txt"
        stats, text = dnsperf(server, queries, args, out, ["-Q", str(rate), "-v"])
        out.unlink()  # a line per query: large, and only its percentiles matter
        return {"qps": stats["qps"], "lost_pct": stats["lost_pct"], **percentiles(text)}
    return measure


def cpu(args: argparse.Namespace, root: Path, queries: Path) -> Measure:
    def measure(server: Server, round_no: int) -> dict[str, Any]:
        out = root / f"cpu-{server.kind}-{round_no}.txt"
        before = cpu_seconds(server.pid)
        stats, _ = dnsperf(server, queries, args, out, ["-Q", str(args.cpu_rate)])
        used = cpu_seconds(server.pid) - before
        return {"qps": stats["qps"], "cpu_s": used,
                "q_per_cpu_s": stats["completed"] / used if used > 0 else 0.0}
    return measure


def servers_for(args: argparse.Namespace, root: Path, signed: bool) -> list[Server]:
    options = argparse.Namespace(healthdns=args.healthdns, skip=args.skip,
                                 responders_list=[args.responders], packet_cache_list=[],
                                 dnssec=signed)
    folder = root / ("signed" if signed else "unsigned")
    folder.mkdir()
    servers, notes = make_servers(options, Zone(0), folder, random.Random(args.seed))
    for note in notes:
        log(f"note: {note}")
    for server in servers:
        if server.kind == "gdnsd":
            private_dirs(server.workdir / "config")
    kept = [s for s in servers if s.kind in ("healthdns", *REFERENCES)]
    if args.pin:  # every server on CPU 1 (taskset execs it: the pid is the server's)
        for server in kept:
            server.argv = ["taskset", "-c", SERVER_CPU, *server.argv]
    # a-healthy-dns answers a flood at a few thousand q/s: not a reference for these figures
    return kept


def private_dirs(config: Path) -> None:
    """gdnsd's run and state directories inside its work directory: the default /run/gdnsd
    holds one control-socket lock, so a second gdnsd on the machine would refuse to start."""
    folder = config.parent
    config.write_text(config.read_text().replace(
        "options => {", f'options => {{ run_dir => "{folder}/run", '
                        f'state_dir => "{folder}/state",', 1))


def experiments(args: argparse.Namespace, root: Path, servers: list[Server],
                signed: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rng = random.Random(args.seed)
    flood, mix = root / "flood.txt", root / "mix.txt"
    flood_file(flood, args.flood_names, rng)
    mix_file(mix, rng)
    found: dict[str, Any] = {}
    ratios: list[dict[str, Any]] = []

    def experiment(name: str, title: str, measure: Measure, key: str,
                   higher: bool = True) -> dict[str, dict[str, float]]:
        table = medians(in_turns(servers, args.rounds, name, measure))
        found[name] = table
        ratios.extend(report(name, title, table, key, higher))
        return table

    common = f"dnsperf -c {args.clients} -T {args.threads} -q {args.outstanding} " \
             f"-l {args.seconds:g}, medians of {args.rounds}"
    if signed:
        if "signed" in args.only:
            experiment("signed", f"Random-name flood, DO=1, signed (NSEC) ({common} -D):",
                       unthrottled(args, root, flood, ["-D"]), "qps")
        return found, ratios
    rate = args.rate
    if "mix" in args.only or ("latency" in args.only and rate is None):
        table = experiment("mix", f"Standard UDP mix, unthrottled ({common}):",
                           unthrottled(args, root, mix), "qps")
        rate = rate or int(table["healthdns"]["qps"] / 2)
    if "flood" in args.only:
        experiment("flood", f"Random-name flood, unsigned ({common}):",
                   unthrottled(args, root, flood), "qps")
    if "latency" in args.only and rate:
        experiment("latency", f"Standard mix at {rate} q/s (half of healthdns's maximum "
                   f"unless --rate), latency in ms ({common} -Q {rate} -v):",
                   at_rate(args, root, mix, rate), "p99", higher=False)
    if "cpu" in args.only:
        experiment("cpu", f"Standard mix at {args.cpu_rate} q/s: queries per CPU-second "
                   f"of all server processes ({common} -Q {args.cpu_rate}):",
                   cpu(args, root, mix), "q_per_cpu_s")
    return found, ratios


def measure_group(args: argparse.Namespace, root: Path,
                  signed: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    servers = servers_for(args, root, signed)
    try:
        for server in servers:
            server.start(args.start_timeout)
        return experiments(args, root, servers, signed)
    finally:
        for server in servers:
            server.stop()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0, help="dnsperf -l per run (default 5)")
    p.add_argument("--rounds", type=int, default=3, help="turns per server (default 3)")
    p.add_argument("--only", default=",".join(EXPERIMENTS),
                   help=f"experiments to run, of {','.join(EXPERIMENTS)} (default all)")
    p.add_argument("--flood-names", type=int, default=100_000,
                   help="random names in the flood's query file (default 100000)")
    p.add_argument("--rate", type=int, help="q/s of the latency run (default: half of "
                   "healthdns's maximum in the mix run)")
    p.add_argument("--cpu-rate", type=int, default=40_000,
                   help="q/s of the CPU run (default 40000)")
    p.add_argument("--responders", type=int, default=2, help="healthdns responders (default 2)")
    p.add_argument("--clients", type=int, default=8, help="dnsperf -c (default 8)")
    p.add_argument("--threads", type=int, default=2, help="dnsperf -T (default 2)")
    p.add_argument("--outstanding", type=int, default=500, help="dnsperf -q (default 500)")
    p.add_argument("--skip", action="append", choices=("healthdns", "gdnsd", "knot"),
                   help="leave a server out (repeatable)")
    p.add_argument("--healthdns", metavar="PATH", help="healthdns-supervisor to run")
    p.add_argument("--start-timeout", type=float, default=120.0)
    p.add_argument("--seed", type=int, default=1, help="seed of the query files (default 1)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--pin", action="store_true",
                   help=f"servers on CPU {SERVER_CPU}, dnsperf on CPU {CLIENT_CPU} (taskset): "
                   "the server's cost apart from the client's")
    args = p.parse_args(argv)
    args.only = {x.strip() for x in args.only.split(",") if x.strip()}
    if not args.only or not args.only <= set(EXPERIMENTS):
        p.error(f"--only: {sorted(args.only)} is not a subset of {','.join(EXPERIMENTS)}")
    if args.rounds < 1 or args.seconds <= 0 or args.flood_names < 1 or args.responders < 1:
        p.error("--rounds, --flood-names and --responders must be >= 1, --seconds > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("dnsperf") is None or shutil.which("dig") is None:
        print("bench/flood.py: error: dnsperf and dig are needed "
              "(apt-get install dnsperf bind9-dnsutils)", file=sys.stderr)
        return EXIT_START
    root = Path(tempfile.mkdtemp(prefix="healthdns-flood-"))
    results: dict[str, Any] = {}
    ratios: list[dict[str, Any]] = []
    try:
        groups = ([False] if args.only - {"signed"} else []) + \
            ([True] if "signed" in args.only else [])
        for signed in groups:  # the unsigned servers, then the signing ones
            found, more = measure_group(args, root, signed)
            results.update(found)
            ratios.extend(more)
    except BenchError as e:
        print(f"bench/flood.py: error: {e}", file=sys.stderr)
        return EXIT_START
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        document = {"params": {k: sorted(v) if isinstance(v, set) else v
                               for k, v in vars(args).items()},
                    "results": results, "ratios": ratios}
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
        log(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
