#!/usr/bin/env python3
"""Failover at scale: 10,000 checked TCP addresses and 1,000 HTTPS targets, measured at the
DNS answers of the real `healthdns-supervisor`. Everything runs on 127.0.0.0/8.

Usage:
    .venv/bin/python bench/prober_scale.py                 # the issue's figures, ~3 minutes
    .venv/bin/python bench/prober_scale.py --targets 2000 --https 200 --singles 50   # quicker
    .venv/bin/python bench/prober_scale.py --json /tmp/prober.json
    # a-healthy-dns's --test-min-interval 1 --test-timeout 1: 10% silent, no slack
    .venv/bin/python bench/prober_scale.py --targets 2000 --mass 200 --timeout 1 --singles 50 \
        --mass-slack 0 --skip https --cpu-seconds 5

TCP phase: a listener process binds `--targets` listening sockets on 127.10.x.y, one port; the
zone has one name per `--per-name` addresses (n0000 A 127.10.0.1 ... ), each checked by TCP
connect at `--interval` with `--fall`/`--rise` and `--timeout`. Measured, in order:

  cpu       the prober's CPU (utime + stime from /proc/PID/stat; its pid is in the supervisor's
            log line "prober started (pid N)") over `--cpu-seconds` of steady state;
  single    `--singles` listeners closed one at a time, 50 ms apart, each in another name: the
            time from the close to the first DNS answer without the address (p50, p99, max),
            and back (all restarted at once);
  refused   `--mass` listeners closed at once (connections refused), then restarted at once;
  silent    `--mass` listeners made silent at once (a full accept queue: SYNs are dropped, so
            checks time out), then restored at once.

Bounds (the issue's): a single stop within interval x fall + timeout + 0.5 s at the 99th
percentile, the mass events within that plus `--mass-slack` (2 s; rise instead of fall on the
way back), and
the prober under half a core at steady state. DNS answers are polled over UDP with a small
parser, many names per burst, every `--poll` seconds.

HTTPS phase: a TLS server (certificate from a test CA made with trustme) listens on `--https`
addresses 127.20.x.y; a second supervisor checks each with kind = "https" (SNI and name
verification against the test CA) every `--https-interval` seconds for `--https-seconds`. The
server records every request: a missed round is a gap between two checks of one target longer
than 1.5 intervals, or a target that went down.

Exit status 0 when every bound holds, 1 otherwise. Needs the dev install (`.[test]`).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing
import os
import random
import re
import resource
import selectors
import socket
import ssl
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from harness import BenchError, supervisor

REPO = Path(__file__).resolve().parent.parent
PORT = 18080
HTTPS_PORT = 18443
NAME = "www.example.test"


def log(text: str) -> None:
    print(f"[prober-scale] {text}", flush=True)


def raise_file_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        raise SystemExit(f"the hard open files limit is {hard}; {wanted} are needed "
                         "(ulimit -Hn, or run with fewer --targets)")
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def address(base: int, i: int) -> str:
    """The i-th loopback address of a block: 127.<base>.x.y, y from 1 to 250."""
    return f"127.{base + i // 62500}.{i // 250 % 250}.{i % 250 + 1}"


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


# ---------------------------------------------------------------------------------------------
# The TCP backends: a child process holding every listening socket.


def listeners(conn: Connection, hosts: list[str], port: int, mode: str) -> None:
    """Serve the listeners; commands on `conn`: (verb, indexes) -> per-index monotonic times.

    verbs: "stop" (closed: refused), "silent" (a full accept queue: SYNs dropped), "start".
    mode "accept" accepts and closes every connection; "defer" sets TCP_DEFER_ACCEPT, so the
    kernel completes the handshake and the prober's reset drops it without any accept().
    """
    raise_file_limit(len(hosts) + 1000)
    selector = selectors.EpollSelector()
    socks: list[socket.socket | None] = [None] * len(hosts)
    fillers: dict[int, socket.socket] = {}

    def listen(i: int, backlog: int, defer: bool) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if defer:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 30)
        sock.bind((hosts[i], port))
        sock.listen(backlog)
        sock.setblocking(False)
        return sock

    def close(i: int) -> None:
        sock = socks[i]
        if sock is not None:
            if mode == "accept" and sock.fileno() in selector.get_map():
                selector.unregister(sock)
            sock.close()
            socks[i] = None
        filler = fillers.pop(i, None)
        if filler is not None:
            filler.close()

    def start(i: int) -> None:
        close(i)
        socks[i] = sock = listen(i, 4096, mode == "defer")
        if mode == "accept":
            selector.register(sock, selectors.EVENT_READ, i)

    def silent(i: int) -> None:
        close(i)
        socks[i] = listen(i, 0, False)
        filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        filler.setblocking(False)
        filler.connect_ex((hosts[i], port))  # fills the queue of one: later SYNs are dropped
        fillers[i] = filler

    for i in range(len(hosts)):
        start(i)
    conn.send(("ready", []))
    selector.register(conn, selectors.EVENT_READ, -1)
    verbs = {"stop": close, "silent": silent, "start": start}
    while True:
        for key, _ in selector.select():
            if key.data == -1:
                try:
                    verb, indexes = conn.recv()
                except EOFError:
                    return
                if verb == "exit":
                    return
                times = []
                for i in indexes:
                    verbs[verb](i)
                    times.append(time.monotonic())
                conn.send((verb, times))
                continue
            if socks[key.data] is not key.fileobj:
                continue  # closed by a command handled earlier in this batch
            while True:  # accept and drop, so the backlog never fills
                try:
                    accepted, _ = key.fileobj.accept()  # type: ignore[union-attr]
                except (BlockingIOError, ConnectionAbortedError):
                    break
                accepted.close()


class Listeners:
    def __init__(self, hosts: list[str], port: int, mode: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=listeners, args=(child, hosts, port, mode),
                                   daemon=True)
        self.process.start()
        child.close()
        verb, _ = self.conn.recv()
        assert verb == "ready"

    def do(self, verb: str, indexes: Iterable[int]) -> list[float]:
        self.conn.send((verb, list(indexes)))
        _, times = self.conn.recv()
        return times  # type: ignore[no-any-return]

    def close(self) -> None:
        self.conn.send(("exit", []))
        self.process.join(10)


# ---------------------------------------------------------------------------------------------
# The server under test, and reading its answers.


class Supervisor(supervisor.Supervisor):
    def __init__(self, config: Path, responders: int = 1) -> None:
        script = Path(sys.executable).parent / "healthdns-supervisor"
        try:
            super().__init__([str(script), "--config", str(config), "--responders",
                              str(responders), "--control-listen", "127.0.0.1:0"], 120)
        except BenchError as e:
            raise SystemExit(str(e)) from None
        self.prober = self.pids["prober"]


def cpu_seconds(pid: int) -> float:
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far: utime and stime of /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


class Poller:
    """Many A queries at once over one UDP socket; answers parsed just enough."""

    def __init__(self, host: str, port: int, names: list[str]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.connect((host, port))
        self.names = names
        self.wires = [self._query(i, n) for i, n in enumerate(names)]

    @staticmethod
    def _query(index: int, name: str) -> bytes:
        qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
        return struct.pack(">HHHHHH", index & 0xFFFF, 0, 1, 0, 0, 0) + qname + b"\0\1\0\1"

    def ask(self, indexes: list[int], timeout: float = 0.25) -> dict[int, tuple[float, set[bytes]]]:
        """index -> (time received, A rdata set) for the names that answered in time."""
        out: dict[int, tuple[float, set[bytes]]] = {}
        for start in range(0, len(indexes), 256):
            chunk = indexes[start:start + 256]
            by_id = {i & 0xFFFF: i for i in chunk}
            for i in chunk:
                self.sock.send(self.wires[i])
            deadline = time.monotonic() + timeout
            while len(by_id) > 0 and time.monotonic() < deadline:
                self.sock.settimeout(max(0.001, deadline - time.monotonic()))
                try:
                    data = self.sock.recv(4096)
                except TimeoutError:
                    break
                index = by_id.pop(struct.unpack(">H", data[:2])[0], None)
                if index is not None:
                    out[index] = (time.monotonic(), _a_records(data, len(self.wires[index])))
        return out


def _a_records(data: bytes, question_end: int) -> set[bytes]:
    ancount = struct.unpack(">H", data[6:8])[0]
    found, at = set(), question_end
    for _ in range(ancount):
        while data[at] != 0 and data[at] & 0xC0 != 0xC0:  # an owner written out in full
            at += data[at] + 1
        at += 2 if data[at] & 0xC0 == 0xC0 else 1
        rdtype, _, _, length = struct.unpack(">HHIH", data[at:at + 10])
        at += 10
        if rdtype == 1:
            found.add(data[at:at + length])
        at += length
    return found


def watch(poller: Poller, pending: dict[int, tuple[int, bytes, float]], present: bool,
          timeout: float, every: float) -> dict[int, float]:
    """Poll until each pending (name index, rdata, since) shows the rdata `present` or not;
    returns target -> seconds from `since` to the first answer that showed it."""
    took: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        answers = poller.ask(sorted({n for n, _, _ in pending.values()}))
        for target, (name, rdata, since) in list(pending.items()):
            if name in answers and (rdata in answers[name][1]) == present:
                took[target] = answers[name][0] - since
                del pending[target]
        time.sleep(every)
    return took


def summary(label: str, took: dict[int, float], wanted: int, bound: float) -> dict[str, Any]:
    values = list(took.values())
    result: dict[str, Any] = {"what": label, "count": len(values), "wanted": wanted,
                              "bound": bound}
    if values:
        result.update(p50=statistics.median(values), p99=percentile(values, 99),
                      max=max(values))
    result["ok"] = len(values) == wanted and bool(values) and result["p99"] <= bound
    shown = (f"p50 {result['p50']:.2f} s  p99 {result['p99']:.2f} s  max {result['max']:.2f} s"
             if values else "no sample")
    log(f"{label:<34} n={len(values)}/{wanted}  {shown}  bound {bound:.2f} s  "
        f"{'OK' if result['ok'] else 'FAIL'}")
    return result


# ---------------------------------------------------------------------------------------------
# The TCP phase.


def tcp_config(path: Path, hosts: list[str], args: argparse.Namespace) -> list[list[str]]:
    names = [hosts[i:i + args.per_name] for i in range(0, len(hosts), args.per_name)]
    check = (f"{{ port = {PORT}, interval = {args.interval}, timeout = {args.timeout}, "
             f"rise = {args.rise}, fall = {args.fall} }}")
    prober = ["[prober]", f"parallel = {args.parallel}", ""] if args.parallel else []
    lines = ["[server]", 'listen = ["127.0.0.1:0"]', 'log_level = "info"', "", *prober,
             "[[zones]]", 'origin = "scale.test"', 'nameservers = ["ns1.scale.test"]', "ttl = 1",
             ""]
    for n, group in enumerate(names):
        lines.append(f'[zones.records.n{n:04}]')
        lines.append(f"pool = {{ addresses = {json.dumps(group)}, check = {check} }}")
    path.write_text("\n".join(lines) + "\n")
    return names


def tcp_phase(args: argparse.Namespace, root: Path) -> list[dict[str, Any]]:
    hosts = [address(10, i) for i in range(args.targets)]
    config = root / "tcp.toml"
    names = tcp_config(config, hosts, args)
    name_of = [i // args.per_name for i in range(len(hosts))]
    rdata = [socket.inet_aton(h) for h in hosts]
    log(f"{len(hosts)} listeners ({args.listen_mode}) on {hosts[0]}..{hosts[-1]} port {PORT}")
    backends = Listeners(hosts, PORT, args.listen_mode)
    results: list[dict[str, Any]] = []
    started = time.monotonic()
    server = Supervisor(config)
    try:
        log(f"ready in {time.monotonic() - started:.1f} s; prober pid {server.prober}")
        poller = Poller(server.host, server.port, [f"n{n:04}.scale.test"
                                                    for n in range(len(names))])
        everything = {t: (name_of[t], rdata[t], time.monotonic()) for t in range(len(hosts))}
        watch(poller, everything, True, 30, 0.2)
        if everything:
            raise SystemExit(f"{len(everything)} addresses never served")
        results.append(cpu(server, args))
        down = args.interval * args.fall + args.timeout + 0.5
        back = args.interval * args.rise + args.timeout + 0.5
        results += singles(args, backends, poller, name_of, rdata, down, back)
        for verb in ("stop", "silent"):
            results += mass(args, backends, poller, name_of, rdata, verb,
                            down + args.mass_slack, back + args.mass_slack)
        results.append(cpu(server, args, "after the failures"))
        flaps = server.output().count("FENCED")
        results.append({"what": "fenced", "count": flaps, "ok": flaps == 0})
    finally:
        server.stop()
        backends.close()
    return results


def cpu(server: Supervisor, args: argparse.Namespace,
        when: str = "steady state") -> dict[str, Any]:
    time.sleep(2.0)
    (user0, sys0), t0 = cpu_split(server.prober), time.monotonic()
    time.sleep(args.cpu_seconds)
    (user1, sys1), elapsed = cpu_split(server.prober), time.monotonic() - t0
    user, system = (user1 - user0) / elapsed, (sys1 - sys0) / elapsed
    used = user + system
    log(f"prober CPU, {when}: {used:.3f} of one core (user {user:.3f}, system {system:.3f}; "
        f"{args.targets} targets, {args.targets / args.interval:.0f} checks/s)  "
        f"{'OK' if used < 0.5 else 'FAIL'}")
    return {"what": f"prober cpu, {when}", "cores": used, "user": user, "system": system,
            "ok": used < 0.5}


def singles(args: argparse.Namespace, backends: Listeners, poller: Poller, name_of: list[int],
            rdata: list[bytes], down: float, back: float) -> list[dict[str, Any]]:
    rng = random.Random(1)
    names = rng.sample(range(max(name_of) + 1), min(args.singles, max(name_of) + 1))
    chosen = [n * args.per_name + rng.randrange(args.per_name) for n in names]
    pending: dict[int, tuple[int, bytes, float]] = {}
    took: dict[int, float] = {}
    deadline = time.monotonic() + down * 3 + len(chosen) * 0.05
    queue_ = list(chosen)
    next_stop = time.monotonic()
    while (queue_ or pending) and time.monotonic() < deadline:
        while queue_ and time.monotonic() >= next_stop:  # one close every 50 ms
            target = queue_.pop(0)
            (when,) = backends.do("stop", [target])
            pending[target] = (name_of[target], rdata[target], when)
            next_stop += 0.05
        if pending:
            answers = poller.ask(sorted({n for n, _, _ in pending.values()}))
            for target, (name, data, since) in list(pending.items()):
                if name in answers and data not in answers[name][1]:
                    took[target] = answers[name][0] - since
                    del pending[target]
        time.sleep(args.poll)
    results = [summary("single listener stopped -> gone", took, len(chosen), down)]
    times = backends.do("start", chosen)
    pending = {t: (name_of[t], rdata[t], w) for t, w in zip(chosen, times, strict=True)}
    results.append(summary("  ... restarted -> served again", watch(
        poller, pending, True, back * 3, args.poll), len(chosen), back + 2))
    return results


def mass(args: argparse.Namespace, backends: Listeners, poller: Poller, name_of: list[int],
         rdata: list[bytes], verb: str, down: float, back: float) -> list[dict[str, Any]]:
    # One address of each name (when there are enough names): no name loses all of them.
    per = max(1, args.mass // (max(name_of) + 1))
    chosen = [t for t in range(len(name_of)) if t % args.per_name < per][:args.mass]
    time.sleep(2.0)  # let the previous phase settle
    times = backends.do(verb, chosen)
    pending = {t: (name_of[t], rdata[t], w) for t, w in zip(chosen, times, strict=True)}
    label = "refused" if verb == "stop" else "silent (timeouts)"
    results = [summary(f"{len(chosen)} at once, {label} -> gone", watch(
        poller, pending, False, down * 3, args.poll), len(chosen), down)]
    times = backends.do("start", chosen)
    pending = {t: (name_of[t], rdata[t], w) for t, w in zip(chosen, times, strict=True)}
    results.append(summary("  ... all back -> served again", watch(
        poller, pending, True, back * 3, args.poll), len(chosen), back))
    return results


# ---------------------------------------------------------------------------------------------
# The HTTPS phase.


def tls_server(conn: Connection, hosts: list[str], port: int, cert: str, key: str,
               seconds: float) -> None:
    """A minimal HTTPS server on every host: 200 "ok"; sends back host -> request times."""
    raise_file_limit(len(hosts) + 2000)
    seen: dict[str, list[float]] = {h: [] for h in hosts}

    class Health(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.host = transport.get_extra_info("sockname")[0]
            self.data = b""

        def data_received(self, data: bytes) -> None:
            self.data += data
            if b"\r\n\r\n" in self.data:
                seen[self.host].append(time.monotonic())
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"  # type: ignore[attr-defined]
                                     b"Connection: close\r\n\r\nok")
                self.transport.close()

    async def main() -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        loop = asyncio.get_running_loop()
        servers = []
        for host in hosts:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            servers.append(await loop.create_server(Health, sock=sock, ssl=context,
                                                    backlog=256))
        conn.send("ready")
        await loop.run_in_executor(None, conn.poll, None)  # until told to stop
        conn.recv()
        for server in servers:
            server.close()

    asyncio.run(main())
    conn.send(seen)


def https_phase(args: argparse.Namespace, root: Path) -> list[dict[str, Any]]:
    import trustme

    ca = trustme.CA()
    ca_file, cert_file, key_file = root / "ca.pem", root / "cert.pem", root / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    leaf = ca.issue_cert(NAME)
    leaf.cert_chain_pems[0].write_to_path(str(cert_file))
    leaf.private_key_pem.write_to_path(str(key_file))
    hosts = [address(20, i) for i in range(args.https)]
    ctx = multiprocessing.get_context("spawn")
    conn, child = ctx.Pipe()
    process = ctx.Process(target=tls_server, args=(child, hosts, HTTPS_PORT, str(cert_file),
                                                   str(key_file), args.https_seconds),
                          daemon=True)
    process.start()
    assert conn.recv() == "ready"
    check = (f'{{ kind = "https", port = {HTTPS_PORT}, path = "/health", host = "{NAME}", '
             f'ca_file = "{ca_file}", body = "ok", interval = {args.https_interval}, '
             f"timeout = 2, rise = 2, fall = 2 }}")
    lines = ["[server]", 'listen = ["127.0.0.1:0"]', "", "[[zones]]", 'origin = "tls.test"',
             'nameservers = ["ns1.tls.test"]', ""]
    for n in range(0, len(hosts), args.per_name):
        lines.append(f"[zones.records.h{n // args.per_name:04}]")
        lines.append(f"pool = {{ addresses = {json.dumps(hosts[n:n + args.per_name])}, "
                     f"check = {check} }}")
    config = root / "https.toml"
    config.write_text("\n".join(lines) + "\n")
    server = Supervisor(config)
    try:
        first = re.findall(r"first round: (\d+) of (\d+) targets up", server.output())[-1]
        log(f"{args.https} HTTPS targets every {args.https_interval:g} s: first round "
            f"{first[0]} of {first[1]} up")
        t0, c0 = time.monotonic(), cpu_seconds(server.prober)
        time.sleep(args.https_seconds)
        used = (cpu_seconds(server.prober) - c0) / (time.monotonic() - t0)
        t1 = time.monotonic()
    finally:
        server.stop()
        conn.send("stop")
        seen: dict[str, list[float]] = conn.recv()
        process.join(10)
    gaps = [b - a for times in seen.values() for a, b in itertools.pairwise(times)
            if t0 <= b <= t1]
    missed = sum(1 for g in gaps if g > 1.5 * args.https_interval)
    never = [h for h, times in seen.items() if not any(t0 <= t <= t1 for t in times)]
    downs = server.output().count("is down")
    checks = sum(1 for times in seen.values() for t in times if t0 <= t <= t1)
    ok = missed == 0 and not never and downs == 0 and first[0] == first[1]
    log(f"HTTPS: {checks} checks in {t1 - t0:.0f} s ({checks / (t1 - t0):.0f}/s, expected "
        f"{args.https / args.https_interval:.0f}/s); gaps p50 {statistics.median(gaps):.2f} s, "
        f"max {max(gaps):.2f} s; missed rounds {missed}; silent targets {len(never)}; "
        f"flips to down {downs}; prober CPU {used:.3f} of one core  {'OK' if ok else 'FAIL'}")
    return [{"what": "https", "targets": args.https, "checks": checks, "missed": missed,
             "max_gap": max(gaps), "downs": downs, "cores": used, "ok": ok}]


# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", type=int, default=10_000)
    p.add_argument("--per-name", type=int, default=10, help="addresses per DNS name")
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=0.5)
    p.add_argument("--fall", type=int, default=2)
    p.add_argument("--rise", type=int, default=2)
    p.add_argument("--parallel", type=int, default=0,
                   help="prober.parallel (default: left out, sized from the targets)")
    p.add_argument("--listen-mode", choices=("accept", "defer"), default="accept")
    p.add_argument("--cpu-seconds", type=float, default=20.0)
    p.add_argument("--singles", type=int, default=200)
    p.add_argument("--mass", type=int, default=1000)
    p.add_argument("--mass-slack", type=float, default=2.0,
                   help="seconds the mass events may take beyond the single-target bound")
    p.add_argument("--poll", type=float, default=0.02, help="seconds between DNS polls")
    p.add_argument("--https", type=int, default=1000)
    p.add_argument("--https-interval", type=float, default=5.0)
    p.add_argument("--https-seconds", type=float, default=30.0)
    p.add_argument("--skip", action="append", default=[], choices=("tcp", "https"))
    p.add_argument("--json", type=Path)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    raise_file_limit(4096)
    log(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="prober-scale-") as tmp:
        if "tcp" not in args.skip:
            results += tcp_phase(args, Path(tmp))
        if "https" not in args.skip and args.https:
            results += https_phase(args, Path(tmp))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    failed = [r["what"] for r in results if not r.get("ok", True)]
    log("all bounds hold" if not failed else f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
