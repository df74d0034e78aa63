#!/usr/bin/env python3
"""Benchmark healthdns against gdnsd and Knot DNS with dnsperf, side by side on loopback.

Usage:
    python3 bench/run.py --seconds 5 --rounds 3 --responders-list 2,1
    python3 bench/run.py --seconds 5 --rounds 5 --packet-cache-list 10000,0 --skip knot
    python3 bench/run.py --seconds 5 --rounds 3 --dnssec
    python3 bench/run.py --names 10000 --seconds 2 --rounds 1 --json /tmp/bench.json

Every server serves the same zone `example.test` (written into a temporary directory): apex SOA
and NS, `www` A x2, `mail` A, `api` A, `db` A, apex MX, and with `--names N` also n00001..nN A.
Before any load, each distinct query is asked of every server with dig (UDP with and without
EDNS, and TCP) and the answers are compared with gdnsd's and Knot's (rcode, AA, answer and
authority RRsets; TTLs and the SOA serial are ignored, but reported as notes). Then dnsperf
loads the servers in turns (healthdns, gdnsd, knot, healthdns, ...) for `--rounds` rounds, and
the table shows the median of each column over the rounds, the ratios of healthdns to gdnsd and
Knot, the response codes seen under load, and the memory (VmRSS) of every healthdns process.

A server whose binary is missing is skipped with a note; a-healthy-dns is included when an
`a-healthy-dns` command is on PATH (its flags are a-healthy-dns 0.1.x's; `--skip a-healthy-dns`
leaves it out). A server that does not start makes the script exit 2 with its stderr tail.
Exit 1 with `--strict` when an answer differs from the references or a wrong rcode is seen
under load. Stdlib only; imports nothing from healthdns.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from harness import EXIT_START, EXIT_STRICT, BenchError, Interrupted, log
from harness.answers import check_answers, print_check
from harness.dnsperf import Round, run_dnsperf
from harness.kinds import make_servers
from harness.queries import MIX, check_queries, query_mix
from harness.report import memory_report, print_memory, print_table, ratios, summarise, versions
from harness.scrape import scrape_cost
from harness.servers import Server
from harness.zone import Zone


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0, help="dnsperf -l per run (default 5)")
    p.add_argument("--rounds", type=int, default=3, help="turns per server (default 3)")
    p.add_argument("--names", type=int, default=0, help="extra names n00001.. (default 0)")
    p.add_argument("--responders-list", default="2",
                   help="healthdns responder counts, one healthdns per count (default 2)")
    p.add_argument("--packet-cache-list", default="",
                   help="healthdns packet cache sizes, one healthdns per size, e.g. 10000,0 "
                        "(default: the server's default)")
    p.add_argument("--clients", type=int, default=8, help="dnsperf -c (default 8)")
    p.add_argument("--threads", type=int, default=2, help="dnsperf -T (default 2)")
    p.add_argument("--outstanding", type=int, default=500, help="dnsperf -q (default 500)")
    p.add_argument("--edns", action="store_true", help="dnsperf -e: send EDNS0 queries")
    p.add_argument("--dnssec", action="store_true",
                   help="sign the zone (healthdns and Knot; gdnsd cannot) and query with "
                        "dnsperf -D (DO=1)")
    p.add_argument("--skip", action="append",
                   choices=("healthdns", "gdnsd", "knot", "a-healthy-dns"),
                   help="leave a server out (repeatable)")
    p.add_argument("--healthdns", metavar="PATH", help="healthdns-supervisor to run")
    p.add_argument("--start-timeout", type=float, default=120.0,
                   help="seconds a server may take to become ready (default 120)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--show-answers", action="store_true",
                   help="print every server's answer to every checked query")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 on an answer mismatch or a wrong rcode under load")
    p.add_argument("--seed", type=int, default=1, help="seed of the query file (default 1)")
    p.add_argument("--scrape-metrics", action="store_true",
                   help="healthdns: also run each round with a client scraping /metrics every "
                   "100 ms, and report the throughput with over without it")
    args = p.parse_args(argv)
    try:
        args.responders_list = [int(x) for x in args.responders_list.split(",") if x.strip()]
    except ValueError:
        p.error(f"--responders-list: {args.responders_list!r} is not a list like 2,1")
    if not args.responders_list or min(args.responders_list) < 1:
        p.error("--responders-list needs positive counts, like 2,1")
    if len(set(args.responders_list)) != len(args.responders_list):
        p.error("--responders-list: a count is given twice")
    try:
        args.packet_cache_list = [int(x) for x in args.packet_cache_list.split(",") if x.strip()]
    except ValueError:
        p.error(f"--packet-cache-list: {args.packet_cache_list!r} is not a list like 10000,0")
    if args.rounds < 1 or args.seconds <= 0 or args.names < 0:
        p.error("--rounds must be >= 1, --seconds > 0 and --names >= 0")
    return args


def run(args: argparse.Namespace, root: Path) -> int:
    for tool in ("dnsperf", "dig"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is not installed (apt-get install dnsperf bind9-dnsutils)")
    rng = random.Random(args.seed)
    zone = Zone(args.names)
    lines = query_mix(zone, rng)
    queries = root / "queries.txt"
    queries.write_text("".join(f"{name} {rtype}\n" for _, name, rtype in lines))
    expected_nx = 100.0 * sum(1 for kind, _, _ in lines if kind == "nxdomain") / len(lines)
    log(f"work directory {root}; query file: {len(lines)} lines, "
        + ", ".join(f"{k} {100 * v:.0f}%" for k, v in MIX.items()))

    servers, notes = make_servers(args, zone, root, rng)
    for note in notes:
        log(f"note: {note}")
    if not servers:
        raise BenchError("no server to benchmark")
    try:
        for server in servers:
            server.start(args.start_timeout)
        return measure(args, root, servers, notes, lines, queries, expected_nx, rng)
    finally:
        for server in servers:
            server.stop()


def measure(args: argparse.Namespace, root: Path, servers: list[Server], notes: list[str],
            lines: list[tuple[str, str, str]], queries: Path, expected_nx: float,
            rng: random.Random) -> int:
    idle = memory_report(servers)
    check = check_answers(servers, check_queries(lines, rng))
    print_check(check, args.show_answers)
    rounds: list[Round] = []
    for round_no in range(1, args.rounds + 1):
        for server in servers:
            result = run_dnsperf(server, queries, args, round_no, root)
            rounds.append(result)
            log(f"round {round_no}/{args.rounds} {server.label:<14} {result.qps:>9.0f} q/s, "
                f"lost {result.lost_pct:.2f}%, avg {result.latency_ms:.3f} ms")
    scraping = scrape_cost(servers, queries, args, root) if args.scrape_metrics else {}
    memory = memory_report(servers)
    summary = summarise(servers, rounds, expected_nx)
    ratio_rows = ratios(summary)
    print_table(summary, ratio_rows, args)
    print_memory(memory)
    if args.json:
        document = {
            "params": {k: v for k, v in vars(args).items() if k != "json"},
            "versions": versions(servers), "notes": notes,
            "ports": {s.label: s.port for s in servers},
            "summary": summary, "ratios": ratio_rows,
            "rounds": [dataclasses.asdict(r) for r in rounds],
            "answer_check": check, "memory_idle": idle, "memory_after_load": memory,
            "scrape_cost": scraping,
        }
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
        log(f"results written to {args.json}")
    wrong = bool(check["mismatches"] or check["timeouts"]
                 or any(row["bad_rcodes"] for row in summary.values()))
    return EXIT_STRICT if args.strict and wrong else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def on_signal(signum: int, frame: object) -> None:
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    root = Path(tempfile.mkdtemp(prefix="healthdns-bench-"))
    try:
        return run(args, root)
    except BenchError as e:
        print(f"bench/run.py: error: {e}", file=sys.stderr)
        return EXIT_START
    except Interrupted as e:
        print(f"bench/run.py: {e}: servers stopped, nothing measured is reported",
              file=sys.stderr)
        return 128 + signal.Signals[str(e)].value
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
