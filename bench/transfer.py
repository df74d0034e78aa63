#!/usr/bin/env python3
"""Zone transfers from healthdns (issue #11): AXFR and IXFR time and size, against Knot DNS
serving the same signed zone, and what a secondary pulling AXFR costs the responders.

Usage:
    python3 bench/transfer.py --rounds 5 --seconds 5
    python3 bench/transfer.py --names 10000 --pools 100 --rounds 3 --seconds 3 --json /tmp/t.json

The zone is bench/run.py's `example.test` with `--names` names, signed by healthdns (ECDSA
P-256, NSEC), of which `--pools` (1% by default) are pools p00000.. that go down, and as many
s00000.. that stay up, each pool health-checked on its own backend (a listening TCP socket on
127.1.x.y; with `policy = "empty"`, a pool whose backend is down loses its address). Measured, as the median of `--rounds`:

1. AXFR time and size (kdig, TSIG-signed) from healthdns's transfer listener, and from Knot
   serving the same records: Knot loads healthdns's AXFR output as its zone file (the records
   and signatures as they are, Knot does not sign), so both send the same zone.
2. IXFR time and size after every pool's backend goes down (1% of the names lose their
   addresses): from healthdns, and from Knot given healthdns's new AXFR as its new zone file
   (`zonefile-load: difference`: Knot computes the same change and serves it as IXFR).
3. dnsperf with bench/run.py's standard query mix on healthdns's responders, with and without
   a client pulling AXFR in a loop, in turns ABBA; the ratio of the medians (target >= 0.95).

Stdlib only, plus kdig, knotd, knotc, keymgr and dnsperf; imports nothing from healthdns.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Self

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # bench/run.py: the zone, the query mix, starting servers, dnsperf

ZONE = run.ZONE
HOST = run.HOST
KEY = "bench-transfer"
BACKEND_NET = "127.1"


class Backends:
    """Listening TCP sockets a TCP health check finds up; one thread accepts for all."""

    def __init__(self, count: int, port: int) -> None:
        self.addresses = [f"{BACKEND_NET}.{i // 250}.{i % 250 + 1}" for i in range(count)]
        self.port = port
        self.selector = selectors.DefaultSelector()
        self.sockets: list[socket.socket] = []
        self.running = True
        self.up()
        threading.Thread(target=self._accept, daemon=True).start()

    def up(self) -> None:
        for address in self.addresses:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, self.port))
            sock.listen(64)
            sock.setblocking(False)
            self.sockets.append(sock)
            self.selector.register(sock, selectors.EVENT_READ)

    def down(self, count: int | None = None) -> None:
        """The first `count` (all by default) closed: their checks' connections are refused."""
        for sock in self.sockets[:count]:
            self.selector.unregister(sock)
            sock.close()
        self.sockets = self.sockets[len(self.sockets) if count is None else count:]

    def _accept(self) -> None:
        while self.running:
            for key, _ in self.selector.select(timeout=0.1):
                try:
                    conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                    conn.close()
                except OSError:
                    continue

    def close(self) -> None:
        self.running = False
        self.down()


def healthdns_toml(zone: run.Zone, port: int, transfer_port: int, key_file: Path,
                   backends: Backends, csk: str) -> str:
    """The zone with a pool per backend: p00000.. on the backends that go down, then s00000..
    on as many that stay up (a prober that sees every target fail suspects its own network
    and keeps the last state)."""
    flipping = len(backends.addresses) // 2
    pools = [f'{"p" if i < flipping else "s"}{i % flipping:05d} = {{ pool = {{ '
             f'addresses = ["198.51.100.{i % 250 + 1}"], '
             f'policy = "empty", check = {{ address = "{address}", port = {backends.port}, '
             f'interval = 0.5, timeout = 0.4, rise = 1, fall = 1 }} }} }}'
             for i, address in enumerate(backends.addresses)]
    return (zone.healthdns_toml(port, 2) + "\n".join(pools) + "\n" + csk
            + f'\n[[tsig]]\nname = "{KEY}"\nfile = "{key_file}"\n'
            + f'\n[transfer]\nlisten = ["{HOST}:{transfer_port}"]\n'
            + f'allow = [{{ networks = ["127.0.0.0/8"], key = "{KEY}" }}]\n')


def make_key(root: Path) -> tuple[Path, str]:
    text = subprocess.run([_tool("keymgr"), "-t", KEY, "hmac-sha256"], check=True,
                          capture_output=True, text=True).stdout
    path = root / "tsig.key"
    path.write_text(text)
    path.chmod(0o600)
    found = re.search(r"secret: (\S+)", text)
    if found is None:
        raise run.BenchError(f"keymgr printed no secret:\n{text}")
    return path, f"hmac-sha256:{KEY}:{found.group(1)}"


def _tool(name: str) -> str:
    path = run.which(name)
    if path is None:
        raise run.BenchError(f"{name} is not installed (apt-get install knot knot-dnsutils "
                             "dnsperf)")
    return path


def xfr(port: int, tsig: str, kind: str = "AXFR", out: Path | None = None) -> dict[str, float]:
    """One transfer with kdig: seconds (wall, the client's start included), kdig's own time,
    kdig's CPU seconds, bytes, messages and records as kdig counts them. `out`: also keep the
    records (zone file lines)."""
    began = time.monotonic()
    shown = ["+answer"] if out is not None else []  # printing 40,000 records costs kdig CPU
    proc = subprocess.Popen([_tool("kdig"), f"@{HOST}", "-p", str(port), "-y", tsig, ZONE, kind,
                             "+noall", *shown, "+stats"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    text = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # reaped here, for its CPU time
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - began
    found = re.search(r"Received (\d+) B \((\d+) messages?, (\d+) records?\)", text)
    if proc.returncode != 0 or found is None or "; Transfer failed" in text:
        raise run.BenchError(f"kdig {kind} from port {port} failed:\n{text[-1500:]}")
    if out is not None:
        records = [line for line in text.splitlines() if line and not line.startswith(";")]
        out.write_text("\n".join(records[:-1]) + "\n")  # the closing SOA is the first again
    took = re.search(r"\) in ([\d.]+) ms", text)
    return {"seconds": seconds, "kdig_ms": float(took.group(1)) if took else -1.0,
            "kdig_cpu": usage.ru_utime + usage.ru_stime, "bytes": int(found.group(1)),
            "messages": int(found.group(2)), "records": int(found.group(3))}


def serial(port: int, tsig: str) -> int:
    out = subprocess.run([_tool("kdig"), f"@{HOST}", "-p", str(port), "+tcp", "-y", tsig, ZONE,
                          "SOA", "+short"], check=False, capture_output=True, text=True,
                         timeout=10).stdout.split()
    if len(out) < 3 or not out[2].isdigit():
        raise run.BenchError(f"no SOA from port {port}: {out}")
    return int(out[2])


def wait_serial(port: int, tsig: str, newer_than: int, timeout: float = 60,
                settle: float = 2.0) -> int:
    """A serial after `newer_than` that then stays `settle` seconds (checks fail over one
    interval, each a new generation: measure the change as a whole)."""
    deadline = time.monotonic() + timeout
    last, since = newer_than, time.monotonic()
    while time.monotonic() < deadline:
        current = serial(port, tsig)
        if current != last:
            last, since = current, time.monotonic()
        elif last != newer_than and time.monotonic() - since >= settle:
            return last
        time.sleep(0.1)  # polling for the new serial
    raise run.BenchError(f"port {port}: no settled serial after {newer_than} within {timeout} s")


def median_of(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}


def knot_primary(root: Path, port: int, key_file: Path, zone_file: Path) -> run.Server:
    """Knot serving the zone file as it is (no signing), with IXFR from the differences of a
    reloaded zone file."""
    workdir = root / "knot"
    workdir.mkdir()
    conf = workdir / "knot.conf"
    conf.write_text(
        f"server:\n  listen: {HOST}@{port}\n  rundir: {workdir}\n"
        f"database:\n  storage: {workdir}\n"
        "log:\n  - target: stderr\n    any: info\n"
        f"include: {key_file}\n"
        f"acl:\n  - id: xfr\n    address: 127.0.0.0/8\n    key: {KEY}\n    action: transfer\n"
        f"zone:\n  - domain: {ZONE}\n    file: {zone_file}\n    acl: xfr\n"
        "    zonefile-sync: -1\n    zonefile-load: difference\n    journal-content: changes\n"
        "    semantic-checks: off\n")
    return run.Server("knot", "knot", [_tool("knotd"), "-c", str(conf)], port, workdir,
                      ready_probe=(ZONE, "SOA", None))


def transfers(args: argparse.Namespace, port: int, tsig: str, label: str,
              root: Path) -> dict[str, Any]:
    xfr(port, tsig, out=root / f"{label}.axfr.zone")
    rounds = [xfr(port, tsig) for _ in range(args.rounds)]
    result = median_of(rounds)
    run.log(f"{label} AXFR: {result['seconds'] * 1000:.0f} ms with kdig's start "
            f"({result['kdig_ms']:.0f} ms by kdig), {result['bytes']:.0f} B, "
            f"{result['messages']:.0f} messages, {result['records']:.0f} records "
            f"(median of {args.rounds})")
    return result


def ixfr(args: argparse.Namespace, port: int, tsig: str, old: int, label: str) -> dict[str, Any]:
    result = median_of([xfr(port, tsig, f"IXFR={old}") for _ in range(args.rounds)])
    run.log(f"{label} IXFR from {old}: {result['seconds'] * 1000:.0f} ms "
            f"({result['kdig_ms']:.1f} ms by kdig), "
            f"{result['bytes']:.0f} B, {result['messages']:.0f} messages, "
            f"{result['records']:.0f} records")
    return result


class Puller:
    """A secondary pulling AXFR in a loop (kdig) while the responders are under load."""

    def __init__(self, port: int, tsig: str) -> None:
        self.port = port
        self.tsig = tsig
        self.count = 0
        self.client_cpu = 0.0  # kdig's CPU seconds
        self.running = False
        self.thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self.running = True
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        return self

    def _loop(self) -> None:
        while self.running:
            self.client_cpu += xfr(self.port, self.tsig)["kdig_cpu"]
            self.count += 1

    def __exit__(self, *_: object) -> None:
        self.running = False
        if self.thread is not None:
            self.thread.join()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def transfer_pid(server: run.Server) -> int:
    found = re.search(r"transfer started \(pid (\d+)\)", server.stderr_path.read_text())
    if found is None:
        raise run.BenchError(f"no transfer process in the log:\n{run.tail(server.stderr_path)}")
    return int(found.group(1))


def throughput(args: argparse.Namespace, server: run.Server, transfer_port: int, tsig: str,
               root: Path) -> dict[str, Any]:
    """dnsperf on the responders, alone and with an AXFR puller, in turns ABBA; and the CPU
    the transfer process and the puller (kdig) took meanwhile, on the same cores."""
    zone = run.Zone(args.names - 2 * args.pools)
    queries = root / "queries.txt"
    queries.write_text("".join(f"{name} {rtype}\n" for _, name, rtype in
                               run.query_mix(zone, random.Random(args.seed))))
    perf = argparse.Namespace(seconds=args.seconds, clients=8, threads=2, outstanding=500,
                              edns=True, dnssec=True)
    plain: list[float] = []
    pulled: list[float] = []
    pulls = 0
    kdig_cpu = transfer_cpu = 0.0
    pid = transfer_pid(server)
    for i in range(args.rounds):
        for with_pull in ((False, True) if i % 2 == 0 else (True, False)):
            if with_pull:
                began = cpu_seconds(pid)
                with Puller(transfer_port, tsig) as puller:
                    pulled.append(run.run_dnsperf(server, queries, perf, len(pulled) + 100,
                                                  root).qps)
                transfer_cpu += cpu_seconds(pid) - began
                pulls += puller.count
                kdig_cpu += puller.client_cpu
            else:
                plain.append(run.run_dnsperf(server, queries, perf, len(plain), root).qps)
            run.log(f"round {i + 1}: {'with AXFR pulls' if with_pull else 'alone':<16} "
                    f"{(pulled if with_pull else plain)[-1]:.0f} q/s")
    ratio = statistics.median(pulled) / statistics.median(plain)
    run.log(f"responders: {statistics.median(plain):.0f} q/s alone, "
            f"{statistics.median(pulled):.0f} q/s while AXFR is pulled ({pulls} AXFRs): "
            f"ratio {ratio:.3f} (target >= 0.95)")
    busy = args.rounds * args.seconds
    run.log(f"while pulled ({busy:g} s): the transfer process used {transfer_cpu:.2f} CPU-s, "
            f"kdig {kdig_cpu:.2f} CPU-s ({transfer_cpu / max(pulls, 1) * 1000:.1f} and "
            f"{kdig_cpu / max(pulls, 1) * 1000:.1f} ms per AXFR), on the responders' cores")
    return {"qps_alone": plain, "qps_pulled": pulled, "axfrs_pulled": pulls, "ratio": ratio,
            "transfer_cpu_s": transfer_cpu, "kdig_cpu_s": kdig_cpu}


def measure(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    command = run.healthdns_command(args.healthdns)
    if command is None:
        raise run.BenchError("healthdns-supervisor not found (give --healthdns PATH)")
    rng = random.Random(args.seed)
    ports: set[int] = set()
    port, transfer_port, knot_port = (run.free_port(ports, rng) for _ in range(3))
    key_file, tsig = make_key(root)
    backends = Backends(2 * args.pools, run.free_port(ports, rng))
    workdir = root / "healthdns"
    workdir.mkdir()
    config = workdir / "healthdns.toml"
    config.write_text(healthdns_toml(run.Zone(args.names - 2 * args.pools), port, transfer_port,
                                     key_file, backends, run.healthdns_dnssec(command, workdir)))
    healthdns = run.Server("healthdns", "healthdns",
                           [command, "--config", str(config), "--log-level", "info",
                            "--control-listen", f"{HOST}:0"],
                           port, workdir, ready_line="ready: serving", responders=2)
    knot: run.Server | None = None
    try:
        healthdns.start(args.start_timeout)
        report: dict[str, Any] = {"names": args.names, "pools": args.pools}
        report["healthdns_axfr"] = transfers(args, transfer_port, tsig, "healthdns", root)
        zone_file = root / "knot.zone"
        zone_file.write_text((root / "healthdns.axfr.zone").read_text())
        knot = knot_primary(root, knot_port, key_file, zone_file)
        knot.start(args.start_timeout)
        report["knot_axfr"] = transfers(args, knot_port, tsig, "knot", root)
        report["throughput"] = throughput(args, healthdns, transfer_port, tsig, root)
        old = serial(transfer_port, tsig)
        backends.down(args.pools)
        run.log(f"{args.pools} of {len(backends.addresses)} backends down; waiting for a serial "
                f"after {old}")
        wait_serial(transfer_port, tsig, old)
        report["healthdns_ixfr"] = ixfr(args, transfer_port, tsig, old, "healthdns")
        xfr(transfer_port, tsig, out=zone_file)
        subprocess.run([_tool("knotc"), "-s", str(root / "knot" / "knot.sock"), "zone-reload",
                        ZONE], check=True, capture_output=True)
        wait_serial(knot_port, tsig, old)
        report["knot_ixfr"] = ixfr(args, knot_port, tsig, old, "knot")
        return report
    finally:
        for server in (knot, healthdns):
            if server is not None:
                server.stop()
        backends.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--names", type=int, default=10000, help="names in the zone (default 10000)")
    p.add_argument("--pools", type=int, default=0,
                   help="of which pools, each on its own backend that goes down for the IXFR "
                        "(default: 1%% of --names; as many more stay up)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per figure (default 3)")
    p.add_argument("--seconds", type=float, default=3.0, help="dnsperf -l per run (default 3)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--healthdns", metavar="PATH", help="healthdns-supervisor to run")
    p.add_argument("--start-timeout", type=float, default=180.0)
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args(argv)
    args.pools = args.pools or max(1, args.names // 100)
    if not 0 < 2 * args.pools < args.names or args.pools > 30000 or args.rounds < 1:
        p.error("need 0 < 2 * --pools < --names, --pools <= 30000 and --rounds >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="healthdns-transfer-bench-"))
    try:
        report = measure(args, root)
    except run.BenchError as e:
        print(f"bench/transfer.py: {e}", file=sys.stderr)
        return run.EXIT_START
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if not args.keep:
        subprocess.run(["rm", "-rf", str(root)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
