"""The report: medians per server, ratios to the references, memory, versions."""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
from collections.abc import Sequence
from typing import Any

from harness import REPO
from harness.dnsperf import Round
from harness.kinds import REFERENCES
from harness.servers import Server

GOOD_RCODES = {"NOERROR", "NXDOMAIN"}


def summarise(servers: Sequence[Server], rounds: Sequence[Round],
              expected_nx_pct: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for server in servers:
        mine = [r for r in rounds if r.server == server.label]
        if not mine:
            continue
        rcodes: dict[str, int] = {}
        for r in mine:
            for code, count in r.rcodes.items():
                rcodes[code] = rcodes.get(code, 0) + count
        answered = sum(rcodes.values()) or 1
        out[server.label] = {
            "kind": server.kind,
            "qps": statistics.median(r.qps for r in mine),
            "lost_pct": statistics.median(r.lost_pct for r in mine),
            "latency_ms": statistics.median(r.latency_ms for r in mine),
            "qps_rounds": [round(r.qps, 1) for r in mine],
            "rcodes": rcodes,
            "bad_rcodes": {c: n for c, n in rcodes.items() if c not in GOOD_RCODES},
            "nxdomain_pct": 100.0 * rcodes.get("NXDOMAIN", 0) / answered,
            "expected_nxdomain_pct": expected_nx_pct,
            "start_seconds": server.start_seconds,
        }
    return out


def ratios(summary: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for label, row in summary.items():
        if row["kind"] != "healthdns":
            continue
        for ref, ref_row in summary.items():
            if ref_row["kind"] in REFERENCES and ref_row["qps"] > 0:
                out.append({"server": label, "reference": ref,
                            "qps_ratio": row["qps"] / ref_row["qps"],
                            "latency_ratio": row["latency_ms"] / ref_row["latency_ms"]
                            if ref_row["latency_ms"] else None})
    return out


def print_table(summary: dict[str, Any], ratio_rows: list[dict[str, Any]],
                args: argparse.Namespace) -> None:
    print()
    print(f"Medians over {args.rounds} round(s) of {args.seconds:g} s "
          f"(dnsperf -c {args.clients} -T {args.threads} -q {args.outstanding}"
          f"{' -e' if args.edns else ''}), zone with {args.names} extra names:")
    header = (f"{'server':<16} {'qps':>10} {'lost %':>7} {'avg ms':>8}  "
              f"{'rcodes (all rounds)':<40}  qps by round")
    print(header)
    print("-" * len(header))
    for label, row in summary.items():
        codes = ", ".join(f"{c} {100.0 * n / (sum(row['rcodes'].values()) or 1):.1f}%"
                          for c, n in sorted(row["rcodes"].items()))
        rounds = " / ".join(f"{q:.0f}" for q in row["qps_rounds"])
        print(f"{label:<16} {row['qps']:>10.0f} {row['lost_pct']:>7.2f} "
              f"{row['latency_ms']:>8.3f}  {codes:<40}  {rounds}")
    if ratio_rows:
        print()
        for r in ratio_rows:
            lat = f", latency x{r['latency_ratio']:.2f}" if r["latency_ratio"] else ""
            print(f"{r['server']} / {r['reference']}: qps x{r['qps_ratio']:.2f}{lat}")
    for label, row in summary.items():
        if row["bad_rcodes"]:
            print(f"WRONG RCODES under load from {label}: {row['bad_rcodes']}")
        if abs(row["nxdomain_pct"] - row["expected_nxdomain_pct"]) > 1.0:
            print(f"NXDOMAIN share off for {label}: {row['nxdomain_pct']:.1f}% "
                  f"(the query file has {row['expected_nxdomain_pct']:.1f}%)")


def memory_report(servers: Sequence[Server]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for server in servers:
        if server.proc is None or server.proc.poll() is not None:
            continue
        rows = server.processes()
        out[server.label] = {"processes": rows,
                             "total_kib": sum(r["rss_kib"] or 0 for r in rows),
                             "children_kib": sum(r["rss_kib"] or 0 for r in rows[1:])}
    return out


def print_memory(memory: dict[str, Any]) -> None:
    print()
    print("Memory after the load (VmRSS):")
    for label, entry in memory.items():
        rows = entry["processes"]
        responders = [r for r in rows if r["role"] == "responder"]
        extra = (f", responders {sum(r['rss_kib'] or 0 for r in responders) / 1024:.1f} MiB"
                 if responders else "")
        print(f"  {label}: total {entry['total_kib'] / 1024:.1f} MiB in {len(rows)} process(es)"
              f"{extra}")
        if len(rows) > 1:
            for r in rows:
                rss = f"{r['rss_kib'] / 1024:.1f} MiB" if r["rss_kib"] is not None else "?"
                print(f"      pid {r['pid']:<8} {r['role']:<17} {rss}")


# ---------------------------------------------------------------------------------------------
# Main.


def versions(servers: Sequence[Server]) -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        try:
            r = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        text = (r.stdout + r.stderr).strip().splitlines()
        return text[-1] if text else "unknown"

    out = {"dnsperf": first_line(["sh", "-c", "dnsperf -h 2>&1 | grep -m1 Version"]),
           "python": platform.python_version(), "cpus": str(os.cpu_count())}
    for s in servers:
        if s.kind == "gdnsd":
            text = s.stderr_path.read_text(errors="replace")
            match = re.search(r"gdnsd version (\S+)", text)
            out["gdnsd"] = match.group(1) if match else "unknown"
        elif s.kind == "knot":
            out["knot"] = first_line([s.argv[0], "-V"])
    git = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                         check=False, capture_output=True, text=True)
    out["healthdns_git"] = git.stdout.strip() or "unknown"
    return out

