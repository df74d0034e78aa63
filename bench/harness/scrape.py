"""The cost of scraping /metrics: throughput with a scraper over throughput without."""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from harness import HOST, log
from harness.dnsperf import run_dnsperf
from harness.procfs import cpu_seconds
from harness.servers import Server

SCRAPE_PERIOD = 0.1  # seconds between two scrapes: ten times as often as a fast Prometheus


def scrape_cost(servers: Sequence[Server], queries: Path, args: argparse.Namespace,
                root: Path) -> dict[str, Any]:
    """Throughput with a /metrics scraper over throughput without, per healthdns server.

    Each round is a pair of runs, one plain and one scraped, in turns ABBA (plain first in
    odd rounds, scraped first in even ones), so a drift of the machine's load hits both alike;
    the cost is the median of the per-pair ratios. The supervisor's own CPU time (what the
    scrapes cost where they are served) is measured beside it, per second of load."""
    out: dict[str, Any] = {}
    for server in servers:
        if server.control_port is None:
            continue
        ratios: list[float] = []
        cpu: dict[bool, list[float]] = {False: [], True: []}
        scrapes = failed = 0
        for round_no in range(1, args.rounds + 1):
            qps: dict[bool, float] = {}
            for scraping in (False, True) if round_no % 2 else (True, False):
                before, started = cpu_seconds(server.pid), time.monotonic()
                run_no = (200 if scraping else 100) + round_no
                if scraping:
                    with Scraper(f"http://{HOST}:{server.control_port}/metrics") as scraper:
                        qps[scraping] = run_dnsperf(server, queries, args, run_no, root).qps
                    scrapes += scraper.count
                    failed += scraper.failed
                else:
                    qps[scraping] = run_dnsperf(server, queries, args, run_no, root).qps
                cpu[scraping].append((cpu_seconds(server.pid) - before)
                                     / (time.monotonic() - started))
            ratios.append(qps[True] / qps[False])
        ratio = statistics.median(ratios)
        supervisor = {k: statistics.median(v) for k, v in cpu.items()}
        out[server.label] = {"ratios": ratios, "ratio": ratio, "scrapes": scrapes,
                             "failed_scrapes": failed, "supervisor_cpu": supervisor}
        log(f"{server.label}: scraping /metrics every {SCRAPE_PERIOD * 1000:.0f} ms: median "
            f"ratio of {len(ratios)} pairs {ratio:.3f} (cost {100 * (1 - ratio):.1f}%; pairs "
            f"{' '.join(f'{r:.3f}' for r in ratios)}), {scrapes} scrapes, {failed} failed; "
            f"supervisor CPU {supervisor[True]:.4f} core scraped, {supervisor[False]:.4f} "
            f"not")
    return out



class Scraper:
    """A thread that fetches a URL every SCRAPE_PERIOD while in its `with` block."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.count = self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(SCRAPE_PERIOD):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    response.read()
                self.count += 1
            except OSError:
                self.failed += 1

