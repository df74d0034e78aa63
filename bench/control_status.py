#!/usr/bin/env python3
"""What `/status` costs the supervisor at scale, and what clients polling it do to `/healthz`.

Usage:
    .venv/bin/python bench/control_status.py                   # 20,000 names, 32 pollers
    .venv/bin/python bench/control_status.py --names 2000 --seconds 5

Starts the real `healthdns-supervisor` on loopback with `--names` pooled names, each with its
own address on 127.30.0.0/16 checked by TCP on a closed port (refused at once, every 60 s),
waits until every target has been checked, then measures:

  sequential  the supervisor's CPU (utime + stime from /proc/PID/stat) per `/status` request,
              over `--requests` requests one after another, less its CPU while idle;
  pollers     `--pollers` clients (in 4 processes) fetching `/status` back to back for
              `--seconds`, while another process asks `/healthz` every 100 ms: requests
              answered, the supervisor's CPU per request and cores kept busy, the
              `/healthz` latency (p50, p99, max) and its status codes, and how much the
              supervisor's peak RSS grew.

Stdlib only; needs the dev install (`.venv/bin/healthdns-supervisor`).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from harness import BenchError, supervisor
from harness.procfs import cpu_seconds

CLOSED_PORT = 9  # discard: nothing listens on loopback, so each check is refused at once


def config(names: int) -> str:
    lines = ['[server]\nlisten = ["127.0.0.1:0"]\nresponders = 1\n',
             '[prober]\nparallel = 4096\n',
             '[[zones]]\norigin = "example.test"\nnameservers = ["ns1.example.net"]\n']
    for i in range(names):
        address = f"127.30.{i // 250}.{i % 250 + 1}"
        lines.append(f'[zones.records.n{i:05d}]\npool = {{ addresses = ["{address}"], check = '
                     f'{{ port = {CLOSED_PORT}, interval = 60, timeout = 1 }} }}\n')
    return "\n".join(lines)


class Supervisor(supervisor.Supervisor):
    def __init__(self, path: Path) -> None:
        script = Path(sys.executable).parent / "healthdns-supervisor"
        try:
            super().__init__([str(script), "--config", str(path), "--control-listen",
                              "127.0.0.1:0"], 300)
        except BenchError as e:
            raise SystemExit(str(e)) from None

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def peak(self) -> int:
        """VmHWM: the largest RSS since the last reset, in bytes."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) * 1024  # type: ignore[union-attr]


def fetch(control: str, path: str, timeout: float = 30.0) -> tuple[int, bytes]:
    host, port = control.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_checked(control: str, names: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = json.loads(fetch(control, "/status")[1])
        if sum(t["probed"] != "unknown" for t in doc["targets"]) >= names:
            return
        time.sleep(1.0)  # polling period
    raise SystemExit("the targets were not all checked in time")


def poller_process(control: str, threads: int, seconds: float, out: Any) -> None:
    counts: list[int] = []

    def poll() -> None:
        done, end = 0, time.monotonic() + seconds
        host, port = control.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        while time.monotonic() < end:
            try:
                connection.request("GET", "/status")
                response = connection.getresponse()
                response.read()
                done += response.status == 200
                closing = response.getheader("Connection") == "close"
            except (http.client.RemoteDisconnected, ConnectionError):
                closing = True  # closed while idle, for another client's connection
            if closing:
                connection.close()
                connection = http.client.HTTPConnection(host, int(port), timeout=60)
        counts.append(done)

    workers = [threading.Thread(target=poll) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out.put(sum(counts))


def probe_process(control: str, seconds: float, out: Any) -> None:
    times, codes = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        try:
            code = fetch(control, "/healthz", timeout=10)[0]
        except OSError:
            code = 0
        times.append(time.monotonic() - started)
        codes.append(code)
        time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))
    out.put((times, codes))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def measure(args: argparse.Namespace, server: Supervisor) -> dict[str, Any]:
    idle_before = server.cpu()
    time.sleep(2.0)  # the idle baseline's window
    idle_rate = (server.cpu() - idle_before) / 2.0
    size = len(fetch(server.control, "/status")[1])
    started, cpu = time.monotonic(), server.cpu()
    for _ in range(args.requests):
        fetch(server.control, "/status")
    elapsed = time.monotonic() - started
    sequential = (server.cpu() - cpu - idle_rate * elapsed) / args.requests
    results: multiprocessing.Queue[Any] = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=poller_process,
                                     args=(server.control, args.pollers // 4, args.seconds,
                                           results)) for _ in range(4)]
    probe = multiprocessing.Process(target=probe_process,
                                    args=(server.control, args.seconds, results))
    Path(f"/proc/{server.process.pid}/clear_refs").write_text("5")  # peak RSS from now
    rss = server.peak()
    cpu, started = server.cpu(), time.monotonic()
    for proc in [*procs, probe]:
        proc.start()
    gathered = [results.get(timeout=args.seconds + 120) for _ in range(5)]
    for proc in [*procs, probe]:
        proc.join()
    used, elapsed = server.cpu() - cpu, time.monotonic() - started
    answered = sum(g for g in gathered if isinstance(g, int))
    times, codes = next(g for g in gathered if isinstance(g, tuple))
    return {"names": args.names, "status_bytes": size,
            "sequential_cpu_ms_per_request": round(sequential * 1000, 1),
            "pollers": args.pollers, "seconds": args.seconds, "status_answered": answered,
            "polled_cpu_ms_per_request": round(used / max(1, answered) * 1000, 1),
            "supervisor_cores_busy": round(used / elapsed, 2),
            "healthz_p50_ms": round(statistics.median(times) * 1000, 1),
            "healthz_p99_ms": round(percentile(times, 99) * 1000, 1),
            "healthz_max_ms": round(max(times) * 1000, 1),
            "healthz_codes": {str(c): codes.count(c) for c in sorted(set(codes))},
            "rss_mib_before": round(rss / 2**20), "rss_peak_growth_mib": round(
                (server.peak() - rss) / 2**20)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", type=int, default=20000)
    parser.add_argument("--pollers", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "healthdns.toml"
        path.write_text(config(args.names))
        server = Supervisor(path)
        try:
            wait_checked(server.control, args.names)
            report = measure(args, server)
        finally:
            server.stop()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
