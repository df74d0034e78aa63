#!/usr/bin/env python3
"""Zone transfers from healthdns (issue #11): AXFR and IXFR time and size, against Knot DNS
serving the same signed zone, and what a secondary pulling AXFR costs the responders.

Usage:
    python3 bench/transfer.py --rounds 5 --seconds 5
    python3 bench/transfer.py --names 10000 --pools 100 --rounds 3 --seconds 3 --json /tmp/t.json

The zone is bench/run.py's `example.test` with `--names` names, signed by healthdns (ECDSA
P-256, NSEC), of which `--pools` (1% by default) are pools p00000.. that go down, and as many
s00000.. that stay up, each pool health-checked on its own backend (a listening TCP socket on
127.1.x.y; with `policy = "empty"`, a pool whose backend is down loses its address). Measured,
as the median of `--rounds`:

1. AXFR time and size (kdig, TSIG-signed) from healthdns's transfer listener, and from Knot
   serving the same records: Knot loads healthdns's AXFR output as its zone file (the records
   and signatures as they are, Knot does not sign), so both send the same zone.
2. IXFR time and size after every pool's backend goes down (1% of the names lose their
   addresses): from healthdns, and from Knot given healthdns's new AXFR as its new zone file
   (`zonefile-load: difference`: Knot computes the same change and serves it as IXFR).
3. dnsperf with bench/run.py's standard query mix on healthdns's responders, alone and with a
   client pulling AXFR back to back, interleaved: alone, kdig, alone, python, alone, ...,
   alone (`--rounds` runs with each puller, an alone run on either side of each). Each run
   with a puller is divided by the mean of its two alone neighbours, so a host whose speed
   drifts (alone runs range 139k-179k q/s on a shared machine) does not decide the figure;
   the ratio reported is the median of these paired ratios, with their range (target >= 0.95).
   Pullers (`--puller`): kdig, and a minimal secondary in Python (`pull_axfr`: one
   TSIG-signed AXFR, every byte of the stream read to the closing SOA, records not parsed).
   Each runs as a process of its own, whose CPU time is reported beside the transfer
   process's, with the AXFRs pulled per second. A real secondary is on another machine: the
   puller runs at `--puller-nice` (19 by default) so that what is measured is the transfer
   process's cost to the responders, not the stand-in secondary's; `--puller-nice 0` shows
   both together.
4. The reference in the same runs (`--reference knot`, the default; `none` halves the
   runs): Knot, serving the same zone as in 1. with 2 UDP workers (as many as healthdns's
   responders), takes the same dnsperf runs alone and while the same puller pulls AXFR from
   it. The servers take turns at every step: healthdns alone, Knot alone, healthdns with
   kdig, Knot with kdig, healthdns alone, ... (`interleave`), so a slow period of the host
   hits both, and each server's run with a puller stays midway between its own two alone
   runs (healthdns alone, healthdns with kdig, Knot alone, Knot with kdig would not: a steady
   drift would then move the ratios). Knot's ratio is logged on a line of its own under
   healthdns's, with its AXFRs/s and the CPU per AXFR of knotd's TCP threads (the threads
   that stayed idle while Knot answered queries alone; knotd names every thread "knotd").
   A host that costs Knot as much as healthdns is the host's doing. Knot serves an AXFR
   faster, so a back-to-back puller pulls more from it: `--python-every` gives both the
   same pace. JSON: `throughput` holds healthdns's figures as before, `throughput.knot`
   Knot's in the same shape, `throughput.runs` the [server, run] pairs in the order run;
   each puller's figures include `axfrs_per_s`, `transfer_ms_per_axfr` (the server's CPU:
   healthdns's transfer process, Knot's TCP threads) and `client_ms_per_axfr`.

Stdlib only, plus kdig, knotd, knotc, keymgr and dnsperf; imports nothing from healthdns.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import random
import re
import selectors
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Self

from harness import EXIT_START, HOST, BenchError, log
from harness.dnsperf import run_dnsperf
from harness.kinds import healthdns_dnssec
from harness.procfs import cpu_seconds
from harness.queries import query_mix
from harness.servers import Server, free_port, healthdns_command, tail, which
from harness.zone import ZONE, Zone

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


def healthdns_toml(zone: Zone, port: int, transfer_port: int, key_file: Path,
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
        raise BenchError(f"keymgr printed no secret:\n{text}")
    return path, f"hmac-sha256:{KEY}:{found.group(1)}"


def _tool(name: str) -> str:
    path = which(name)
    if path is None:
        raise BenchError(f"{name} is not installed (apt-get install knot knot-dnsutils "
                         "dnsperf)")
    return path


def xfr(port: int, tsig: str, kind: str = "AXFR", out: Path | None = None,
        nice: int = 0) -> dict[str, float]:
    """One transfer with kdig: seconds (wall, the client's start included), kdig's own time,
    kdig's CPU seconds, bytes, messages and records as kdig counts them. `out`: also keep the
    records (zone file lines)."""
    began = time.monotonic()
    shown = ["+answer"] if out is not None else []  # printing 40,000 records costs kdig CPU
    niced = ["nice", "-n", str(nice)] if nice else []  # execs kdig: the same pid, for wait4
    proc = subprocess.Popen([*niced, _tool("kdig"), f"@{HOST}", "-p", str(port), "-y", tsig,
                             ZONE, kind, "+noall", *shown, "+stats"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    text = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # reaped here, for its CPU time
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - began
    found = re.search(r"Received (\d+) B \((\d+) messages?, (\d+) records?\)", text)
    if proc.returncode != 0 or found is None or "; Transfer failed" in text:
        raise BenchError(f"kdig {kind} from port {port} failed:\n{text[-1500:]}")
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
        raise BenchError(f"no SOA from port {port}: {out}")
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
    raise BenchError(f"port {port}: no settled serial after {newer_than} within {timeout} s")


def median_of(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}


def knot_primary(root: Path, port: int, key_file: Path, zone_file: Path) -> Server:
    """Knot serving the zone file as it is (no signing), with IXFR from the differences of a
    reloaded zone file."""
    workdir = root / "knot"
    workdir.mkdir()
    conf = workdir / "knot.conf"
    conf.write_text(
        f"server:\n  listen: {HOST}@{port}\n  rundir: {workdir}\n"
        "  udp-workers: 2\n"  # as many as healthdns's responders, on any machine
        f"database:\n  storage: {workdir}\n"
        "log:\n  - target: stderr\n    any: info\n"
        f"include: {key_file}\n"
        f"acl:\n  - id: xfr\n    address: 127.0.0.0/8\n    key: {KEY}\n    action: transfer\n"
        f"zone:\n  - domain: {ZONE}\n    file: {zone_file}\n    acl: xfr\n"
        "    zonefile-sync: -1\n    zonefile-load: difference\n    journal-content: changes\n"
        "    semantic-checks: off\n")
    return Server("knot", "knot", [_tool("knotd"), "-c", str(conf)], port, workdir,
                  ready_probe=(ZONE, "SOA", None))


def transfers(args: argparse.Namespace, port: int, tsig: str, label: str,
              root: Path) -> dict[str, Any]:
    xfr(port, tsig, out=root / f"{label}.axfr.zone")
    rounds = [xfr(port, tsig) for _ in range(args.rounds)]
    result = median_of(rounds)
    log(f"{label} AXFR: {result['seconds'] * 1000:.0f} ms with kdig's start "
        f"({result['kdig_ms']:.0f} ms by kdig), {result['bytes']:.0f} B, "
        f"{result['messages']:.0f} messages, {result['records']:.0f} records "
        f"(median of {args.rounds})")
    return result


def ixfr(args: argparse.Namespace, port: int, tsig: str, old: int, label: str) -> dict[str, Any]:
    result = median_of([xfr(port, tsig, f"IXFR={old}") for _ in range(args.rounds)])
    log(f"{label} IXFR from {old}: {result['seconds'] * 1000:.0f} ms "
        f"({result['kdig_ms']:.1f} ms by kdig), "
        f"{result['bytes']:.0f} B, {result['messages']:.0f} messages, "
        f"{result['records']:.0f} records")
    return result


def _name(text: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in
                    text.rstrip(".").split(".")) + b"\0"


def axfr_query(tsig: str, qid: int, now: int) -> bytes:
    """An AXFR query for ZONE signed with TSIG (RFC 8945 4.3): `tsig` as kdig's -y takes it."""
    algorithm, key, secret = tsig.split(":")
    question = _name(ZONE) + struct.pack("!HH", 252, 1)  # AXFR, IN
    timers = now.to_bytes(6, "big") + struct.pack("!H", 300)  # time signed, fudge
    variables = (_name(key.lower()) + struct.pack("!HI", 255, 0) + _name(algorithm) + timers
                 + struct.pack("!HH", 0, 0))  # class ANY, TTL 0; error, other length
    mac = hmac.new(base64.b64decode(secret), struct.pack("!6H", qid, 0, 1, 0, 0, 0) + question
                   + variables, hashlib.sha256).digest()
    rdata = _name(algorithm) + timers + struct.pack("!H", len(mac)) + mac \
        + struct.pack("!3H", qid, 0, 0)
    return (struct.pack("!6H", qid, 0, 1, 0, 0, 1) + question + _name(key)
            + struct.pack("!HHIH", 250, 255, 0, len(rdata)) + rdata)


def _skip_name(wire: bytes, pos: int) -> int:
    while wire[pos]:
        if wire[pos] & 0xC0 == 0xC0:
            return pos + 2
        pos += 1 + wire[pos]
    return pos + 1


def pull_axfr(port: int, tsig: str, qid: int) -> tuple[int, int]:
    """One AXFR as a minimal secondary: every message read to the end of the stream, which is
    the second time the SOA (its type, class, TTL and rdata, taken from the first RR) occurs;
    no other record is parsed, and the MACs are not checked. Bytes and messages received."""
    query = axfr_query(tsig, qid, int(time.time()))
    received = messages = soas = 0
    soa = b""
    with socket.create_connection((HOST, port), timeout=30) as sock, \
            sock.makefile("rb", buffering=1 << 16) as stream:
        sock.sendall(len(query).to_bytes(2, "big") + query)
        while soas < 2:
            size = stream.read(2)
            message = stream.read(int.from_bytes(size, "big")) if len(size) == 2 else b""
            if len(message) < 12 or len(message) != int.from_bytes(size, "big"):
                raise BenchError(f"AXFR from port {port}: the stream ended after "
                                 f"{messages} messages, before the closing SOA")
            if message[3] & 0x0F or message[:2] != query[:2]:
                raise BenchError(f"AXFR from port {port}: rcode {message[3] & 0x0F}")
            if not soa:  # the first RR, after the question
                pos = _skip_name(message, _skip_name(message, 12) + 4)
                soa = message[pos:pos + 10 + int.from_bytes(message[pos + 8:pos + 10], "big")]
            soas += message.count(soa)
            received += 2 + len(message)
            messages += 1
    return received, messages


def pull_loop(port: int, tsig: str, every: float) -> None:
    """`--pull PORT`: AXFR after AXFR (one started every `every` seconds at most) until stdin
    closes; then the count, bytes and messages."""
    count = received = messages = 0
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    began = time.monotonic()
    while not done.is_set():
        got, parts = pull_axfr(port, tsig, count & 0xFFFF)
        count, received, messages = count + 1, received + got, messages + parts
        done.wait(began + count * every - time.monotonic())  # the pace, not a readiness wait
    print(json.dumps({"axfrs": count, "bytes": received, "messages": messages}))


class Puller:
    """A secondary pulling AXFR in a loop while the responders are under load: kdig, one
    process per AXFR, or the minimal Python secondary (`pull_loop`), one process for all."""

    def __init__(self, port: int, tsig: str, kind: str, every: float = 0.0,
                 nice: int = 0) -> None:
        self.port = port
        # A secondary runs on another machine: `nice` keeps this stand-in's own CPU from
        # being counted against the responders it shares the cores with (0: compete fully).
        self.nice = nice
        self.every = every
        self.tsig = tsig
        self.kind = kind
        self.count = 0
        self.client_cpu = 0.0  # the puller's CPU seconds
        self.running = False
        self.thread: threading.Thread | None = None
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> Self:
        self.running = True
        if self.kind == "python":
            self.process = subprocess.Popen(
                ["nice", "-n", str(self.nice), sys.executable, __file__, "--pull",
                 str(self.port), "--tsig", self.tsig, "--python-every", str(self.every)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        else:
            self.thread = threading.Thread(target=self._loop, daemon=True)
            self.thread.start()
        return self

    def _loop(self) -> None:
        while self.running:
            self.client_cpu += xfr(self.port, self.tsig, nice=self.nice)["kdig_cpu"]
            self.count += 1

    def __exit__(self, *_: object) -> None:
        self.running = False
        if self.thread is not None:
            self.thread.join()
        if self.process is not None:
            assert self.process.stdin is not None and self.process.stdout is not None
            self.process.stdin.close()
            out = self.process.stdout.read()
            _, status, usage = os.wait4(self.process.pid, 0)
            self.process.returncode = os.waitstatus_to_exitcode(status)
            if self.process.returncode != 0:
                raise BenchError(f"the Python puller failed (exit {self.process.returncode})")
            self.count = json.loads(out)["axfrs"]
            self.client_cpu = usage.ru_utime + usage.ru_stime


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of `pid` (knotd runs every worker as a thread of one
    process, all named "knotd")."""
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = cpu_seconds_of(task / "stat")
        except OSError:  # the thread ended between the listing and the read
            continue
    return out


def cpu_seconds_of(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def transfer_pid(server: Server) -> int:
    found = re.search(r"transfer started \(pid (\d+)\)", server.stderr_path.read_text())
    if found is None:
        raise BenchError(f"no transfer process in the log:\n{tail(server.stderr_path)}")
    return int(found.group(1))


class Target:
    """One server in the throughput runs: where dnsperf and the puller go, and the CPU of what
    serves its AXFRs. healthdns: its transfer process. Knot: the threads of knotd that were
    idle during its alone runs (its UDP workers answer dnsperf then; the TCP workers, which
    serve AXFR, wait), found by `alone_run`."""

    def __init__(self, name: str, server: Server, xfr_port: int, serves_axfr: str,
                 transfer: int | None = None) -> None:
        self.name = name
        self.server = server
        self.xfr_port = xfr_port
        self.serves_axfr = serves_axfr  # how the log lines name what `cpu` counts
        self.transfer = transfer  # a process of its own that serves AXFR, if there is one
        self.query_threads: set[int] = set()

    def threads(self) -> dict[int, float]:
        if self.transfer is not None:
            return {self.transfer: cpu_seconds(self.transfer)}
        return thread_cpu(self.server.pid)

    def alone_run(self, before: dict[int, float], after: dict[int, float],
                  seconds: float) -> None:
        """Threads busy while only queries came in (more than 1% of a core) answer queries:
        their CPU is not the transfers'."""
        if self.transfer is None:
            self.query_threads |= {tid for tid, cpu in after.items()
                                   if cpu - before.get(tid, 0.0) > 0.01 * seconds}

    def transfer_cpu(self, before: dict[int, float], after: dict[int, float]) -> float:
        return sum(cpu - before.get(tid, 0.0) for tid, cpu in after.items()
                   if tid not in self.query_threads)


def schedule(pullers: list[str], rounds: int) -> list[str]:
    """The order of one server's dnsperf runs: an alone run before and after every run with a
    puller, the pullers in turn, `rounds` runs each: alone, kdig, alone, python, alone, kdig,
    ..., alone. Each run with a puller is compared with the alone runs on either side of it, so
    a drift of the host's speed over the minutes of the bench (other load, CPU frequency)
    cancels out instead of deciding the ratio."""
    order = ["alone"]
    for _ in range(rounds):
        for kind in pullers:
            order += [kind, "alone"]
    return order


def interleave(order: list[str], servers: list[str]) -> list[tuple[str, str]]:
    """Every step of `order` on each server in turn: healthdns alone, knot alone, healthdns
    with kdig, knot with kdig, healthdns alone, ... A slow period of the host hits both
    servers, and each server's runs stay evenly spaced, so each run with a puller is still
    midway between its two alone runs and a steady drift still cancels (healthdns alone,
    healthdns with kdig, knot alone, knot with kdig would put each puller run a quarter of the
    way between its alone runs)."""
    return [(server, kind) for kind in order for server in servers]


def paired_ratios(order: list[str], qps: list[float], kind: str) -> list[float]:
    """For each run of `kind`: its q/s over the mean q/s of the alone runs next to it."""
    return [over_neighbours(qps, i, f"run {i + 1} (with {kind})")
            for i, ran in enumerate(order) if ran == kind]


def over_neighbours(qps: list[float], i: int, what: str) -> float:
    """Run `i`'s q/s over the mean of the runs either side of it. When those answered no query
    (dnsperf against a server that stopped answering) no ratio can be told: the bench fails
    saying so, rather than report one made of nothing."""
    either_side = statistics.mean((qps[i - 1], qps[i + 1]))
    if either_side <= 0:
        raise BenchError(f"the alone runs either side of {what} answered {qps[i - 1]:g} "
                         f"and {qps[i + 1]:g} q/s: the server stopped answering, so no "
                         "ratio can be told")
    return qps[i] / either_side


class Tally:
    """One server's figures over the throughput runs, in the order of `schedule`."""

    def __init__(self, pullers: list[str]) -> None:
        self.qps: list[float] = []
        self.pulls = dict.fromkeys(pullers, 0)
        self.client_cpu = dict.fromkeys(pullers, 0.0)
        self.transfer_cpu = dict.fromkeys(pullers, 0.0)


def throughput(args: argparse.Namespace, targets: list[Target], tsig: str,
               root: Path) -> dict[str, Any]:
    """dnsperf on each server, alone and with each AXFR puller, the servers' runs interleaved
    (`schedule`, `interleave`); each server's paired ratios (`paired_ratios`), and the CPU its
    transfers and the puller took meanwhile, on the same cores."""
    zone = Zone(args.names - 2 * args.pools)
    queries = root / "queries.txt"
    queries.write_text("".join(f"{name} {rtype}\n" for _, name, rtype in
                               query_mix(zone, random.Random(args.seed))))
    perf = argparse.Namespace(seconds=args.seconds, clients=8, threads=2, outstanding=500,
                              edns=True, dnssec=True)
    order = schedule(args.puller, args.rounds)
    steps = interleave(order, [t.name for t in targets])
    tallies = {t.name: Tally(args.puller) for t in targets}
    by_name = {t.name: t for t in targets}
    log(f"{len(steps)} dnsperf runs of {args.seconds:g} s: "
        f"{' '.join(f'{s}:{k}' for s, k in steps)}; puller at nice {args.puller_nice}; "
        + "; ".join(f"{t.name}'s AXFRs served by its {t.serves_axfr}" for t in targets))
    for number, (name, kind) in enumerate(steps, 1):
        _step(args, by_name[name], tallies[name], kind, number, queries, perf, tsig, root)
    # healthdns's figures where they were before a reference was measured beside them
    report = _figures(args, targets[0], order, tallies[targets[0].name])
    report["runs"] = [list(step) for step in steps]
    for target in targets[1:]:
        report[target.name] = _figures(args, target, order, tallies[target.name])
    return report


def _step(args: argparse.Namespace, target: Target, tally: Tally, kind: str, number: int,
          queries: Path, perf: argparse.Namespace, tsig: str, root: Path) -> None:
    """One dnsperf run on one server, with a puller unless `kind` is "alone"."""
    before = target.threads()
    if kind == "alone":
        tally.qps.append(run_dnsperf(target.server, queries, perf, number, root).qps)
        target.alone_run(before, target.threads(), args.seconds)
        log(f"run {number:>2}: {target.name:<9} {kind:<6} {tally.qps[-1]:>8.0f} q/s")
        return
    with Puller(target.xfr_port, tsig, kind, args.python_every, args.puller_nice) as puller:
        tally.qps.append(run_dnsperf(target.server, queries, perf, number, root).qps)
    used = target.transfer_cpu(before, target.threads())
    tally.transfer_cpu[kind] += used
    tally.pulls[kind] += puller.count
    tally.client_cpu[kind] += puller.client_cpu
    log(f"run {number:>2}: {target.name:<9} {kind:<6} {tally.qps[-1]:>8.0f} q/s, "
        f"{puller.count} AXFRs, {target.serves_axfr} {used * 1000:.0f} CPU-ms")


def _figures(args: argparse.Namespace, target: Target, order: list[str],
             tally: Tally) -> dict[str, Any]:
    """One server's ratios, noise floor and CPU split, logged and as a dict."""
    name, qps = target.name, tally.qps
    alone = [q for q, kind in zip(qps, order, strict=True) if kind == "alone"]
    report: dict[str, Any] = {"order": order, "qps": qps, "qps_alone": alone}
    try:
        noise = [over_neighbours(alone, i, f"alone run {i + 1} of {len(alone)}")
                 for i in range(1, len(alone) - 1)]
        ratios = {kind: paired_ratios(order, qps, kind) for kind in args.puller}
    except BenchError as e:
        raise BenchError(f"{name}: {e}") from None
    if noise:  # the same pairing with no puller at all: how far the ratios move by chance
        log(f"{name} noise: alone runs {min(alone):.0f}-{max(alone):.0f} q/s; each alone "
            f"run over the mean of the alone runs either side: median "
            f"{statistics.median(noise):.3f}, range {min(noise):.3f}-{max(noise):.3f} "
            f"(1.000 on a quiet host)")
        report["noise_ratios"] = noise
    for kind in args.puller:
        report[kind] = _summary(args, target, kind, ratios[kind], tally.pulls[kind],
                                tally.transfer_cpu[kind], tally.client_cpu[kind])
    return report


def _summary(args: argparse.Namespace, target: Target, kind: str, ratios: list[float],
             pulls: int, transfer_cpu: float, client_cpu: float) -> dict[str, Any]:
    """One server's figures with one puller, logged in a line that reads on its own, and as a
    dict."""
    busy = args.rounds * args.seconds
    n = max(pulls, 1)
    ratio = statistics.median(ratios)
    name = target.name
    log(f"{name:<9} {kind}: queries while {kind} pulls AXFR / queries alone = {ratio:.3f} "
        f"(median of {len(ratios)} paired runs, each over the mean of the alone runs either "
        f"side; range {min(ratios):.3f}-{max(ratios):.3f}; target >= 0.95). {pulls} AXFRs "
        f"in {busy:g} s ({pulls / busy:.1f}/s); {name}'s {target.serves_axfr} "
        f"{transfer_cpu:.2f} CPU-s "
        f"({transfer_cpu / n * 1000:.1f} ms per AXFR), {kind} {client_cpu:.2f} CPU-s "
        f"({client_cpu / n * 1000:.1f} ms per AXFR), on the same cores")
    return {"ratio": ratio, "ratios": ratios, "ratio_min": min(ratios),
            "ratio_max": max(ratios), "axfrs_pulled": pulls, "axfrs_per_s": pulls / busy,
            "transfer_cpu_s": transfer_cpu, "client_cpu_s": client_cpu,
            "transfer_ms_per_axfr": transfer_cpu / n * 1000,
            "client_ms_per_axfr": client_cpu / n * 1000}


def _nice(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[16])


def measure(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    command = healthdns_command(args.healthdns)
    if command is None:
        raise BenchError("healthdns-supervisor not found (give --healthdns PATH)")
    rng = random.Random(args.seed)
    ports: set[int] = set()
    port, transfer_port, knot_port = (free_port(ports, rng) for _ in range(3))
    key_file, tsig = make_key(root)
    backends = Backends(2 * args.pools, free_port(ports, rng))
    workdir = root / "healthdns"
    workdir.mkdir()
    config = workdir / "healthdns.toml"
    config.write_text(healthdns_toml(Zone(args.names - 2 * args.pools), port, transfer_port,
                                     key_file, backends, healthdns_dnssec(command, workdir)))
    healthdns = Server("healthdns", "healthdns",
                       [command, "--config", str(config), "--log-level", "info",
                        "--control-listen", f"{HOST}:0"],
                       port, workdir, ready_line="ready: serving", responders=2)
    knot: Server | None = None
    try:
        healthdns.start(args.start_timeout)
        report: dict[str, Any] = {"names": args.names, "pools": args.pools}
        report["healthdns_axfr"] = transfers(args, transfer_port, tsig, "healthdns", root)
        zone_file = root / "knot.zone"
        zone_file.write_text((root / "healthdns.axfr.zone").read_text())
        knot = knot_primary(root, knot_port, key_file, zone_file)
        knot.start(args.start_timeout)
        report["knot_axfr"] = transfers(args, knot_port, tsig, "knot", root)
        targets = [Target("healthdns", healthdns, transfer_port, "transfer process",
                          transfer_pid(healthdns))]
        if args.reference == "knot":  # the same runs on Knot: what the host does to both
            targets.append(Target("knot", knot, knot_port, "TCP threads"))
        report["throughput"] = throughput(args, targets, tsig, root)
        old = serial(transfer_port, tsig)
        backends.down(args.pools)
        log(f"{args.pools} of {len(backends.addresses)} backends down; waiting for a serial "
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
    p.add_argument("--rounds", type=int, default=3,
                   help="transfers timed per figure, and dnsperf runs with each puller "
                        "(each between two alone runs; default 3)")
    p.add_argument("--seconds", type=float, default=3.0, help="dnsperf -l per run (default 3)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--healthdns", metavar="PATH", help="healthdns-supervisor to run")
    p.add_argument("--start-timeout", type=float, default=180.0)
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--puller", choices=["kdig", "python", "both"], default="both",
                   help="who pulls AXFR during the throughput runs: kdig, the minimal Python "
                        "secondary, or each in turn (default)")
    p.add_argument("--python-every", type=float, default=0.0, metavar="SECONDS",
                   help="the Python puller starts an AXFR every SECONDS at most (default 0: "
                        "back to back; kdig's pace makes the two pull the same AXFRs/s)")
    p.add_argument("--puller-nice", type=int, default=19, metavar="N",
                   help="run the puller at this nice value: a real secondary is on another "
                        "machine, so its CPU is not the responders' to lose (default 19; 0: "
                        "the puller competes with the responders for the cores)")
    p.add_argument("--reference", choices=["knot", "none"], default="knot",
                   help="also load Knot (serving the same zone, 2 UDP workers) in the same "
                        "interleaved runs, alone and while the puller pulls AXFR from it: its "
                        "ratio tells the host's share from healthdns's (default knot; none: "
                        "healthdns only, half the runs)")
    p.add_argument("--pull", type=int, metavar="PORT", help=argparse.SUPPRESS)
    p.add_argument("--tsig", help=argparse.SUPPRESS)  # with --pull: the puller process
    args = p.parse_args(argv)
    args.puller = ["kdig", "python"] if args.puller == "both" else [args.puller]
    args.pools = args.pools or max(1, args.names // 100)
    if not 0 < 2 * args.pools < args.names or args.pools > 30000 or args.rounds < 1:
        p.error("need 0 < 2 * --pools < --names, --pools <= 30000 and --rounds >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.pull is not None:
        pull_loop(args.pull, args.tsig, args.python_every)
        return 0
    root = Path(tempfile.mkdtemp(prefix="healthdns-transfer-bench-"))
    try:
        report = measure(args, root)
    except BenchError as e:
        print(f"bench/transfer.py: {e}", file=sys.stderr)
        return EXIT_START
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if not args.keep:
        subprocess.run(["rm", "-rf", str(root)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
