"""Load: running dnsperf against one server and reading its output."""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import HOST, BenchError
from harness.servers import Server, tail


@dataclasses.dataclass(frozen=True)
class Round:
    server: str
    round: int
    qps: float
    sent: int
    completed: int
    lost: int
    lost_pct: float
    latency_ms: float
    latency_max_ms: float
    rcodes: dict[str, int]
    rss_kib: dict[str, int | None]


def parse_dnsperf(text: str) -> dict[str, Any]:
    def number(pattern: str) -> str:
        match = re.search(pattern, text)
        if match is None:
            raise BenchError(f"dnsperf output has no {pattern!r}:\n{text[-1500:]}")
        return match.group(1)

    rcodes = {code: int(count) for code, count in
              re.findall(r"([A-Z]+) (\d+) \([\d.]+%\)", number(r"Response codes:\s+(.*)"))}
    latency = re.search(r"Average Latency \(s\):\s+([\d.]+) \(min ([\d.]+), max ([\d.]+)\)", text)
    if latency is None:
        raise BenchError(f"dnsperf output has no average latency:\n{text[-1500:]}")
    return {
        "sent": int(number(r"Queries sent:\s+(\d+)")),
        "completed": int(number(r"Queries completed:\s+(\d+)")),
        "lost": int(number(r"Queries lost:\s+(\d+)")),
        "lost_pct": float(number(r"Queries lost:\s+\d+ \(([\d.]+)%\)")),
        "qps": float(number(r"Queries per second:\s+([\d.]+)")),
        "latency_ms": float(latency.group(1)) * 1000,
        "latency_max_ms": float(latency.group(3)) * 1000,
        "rcodes": rcodes,
    }


CLIENT_CPU = "0"  # dnsperf's CPU when a benchmark pins (servers take SERVER_CPU)
SERVER_CPU = "1"


def dnsperf(server: Server, queries: Path, args: argparse.Namespace, out: Path,
            extra: Sequence[str] = (), pinned: bool = False) -> str:
    """One dnsperf run against `server` (`args`: seconds, clients, threads, outstanding), its
    output kept in `out` and returned once dnsperf and the server have both come through it;
    `pinned` runs dnsperf on CLIENT_CPU alone."""
    argv = [*(["taskset", "-c", CLIENT_CPU] if pinned else []), "dnsperf", "-s", HOST,
            "-p", str(server.port), "-d", str(queries), "-l", f"{args.seconds:g}",
            "-c", str(args.clients), "-T", str(args.threads), "-q", str(args.outstanding),
            *extra]
    with open(out, "wb") as sink:
        result = subprocess.run(argv, check=False, stdout=sink, stderr=subprocess.STDOUT,
                                timeout=args.seconds + 60)
    text = out.read_text(errors="replace")
    if result.returncode != 0:
        raise BenchError(f"dnsperf against {server.label} exited {result.returncode}:\n"
                         f"{text[-1500:]}")
    if server.proc is not None and server.proc.poll() is not None:
        raise BenchError(f"{server.label} died during the load (status {server.proc.returncode})"
                         f"; its output:\n{tail(server.stderr_path)}")
    return text


def run_dnsperf(server: Server, queries: Path, args: argparse.Namespace, round_no: int,
                root: Path) -> Round:
    extra = [*(["-e"] if args.edns else []), *(["-D"] if args.dnssec else [])]  # -D: DO bit
    out_path = root / f"dnsperf-{server.label.replace(' ', '_').replace('=', '')}-{round_no}.txt"
    stats = parse_dnsperf(dnsperf(server, queries, args, out_path, extra))
    rss = {str(p["pid"]): p["rss_kib"] for p in server.processes()}
    return Round(server=server.label, round=round_no, rss_kib=rss, **stats)
