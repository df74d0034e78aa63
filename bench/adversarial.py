#!/usr/bin/env python3
"""Attacks on the control endpoint, the transfer port and the responders' TCP (issue #20), each
beside a quiet baseline: what a Kubernetes probe, a real secondary and the processes' memory see.

Usage:
    .venv/bin/python bench/adversarial.py                        # every attack, about 5 minutes
    .venv/bin/python bench/adversarial.py --attacks reload,unread --seconds 10
    .venv/bin/python bench/adversarial.py --supervisor OLD/.venv/bin/healthdns-supervisor

Each attack gets a real `healthdns-supervisor` of its own on loopback (2 responders, a control
token, a `[transfer]` listener whose one secondary is 127.0.0.1 with a TSIG key, 100 pooled
names, `--names` for `idle`), started and warmed (every target checked), then two phases of
`--seconds` each on that one server: quiet, then under attack. In both phases:

  probe      GET /healthz on a new connection every 100 ms (`Connection: close`, as kubelet's
             httpGet probe), 1 s to answer 2xx: latency p50/p99/max; failed probes, and the
             longest run of them (kubelet restarts a container after `failureThreshold`, 3 by
             default, failures in a row);
  secondary  kdig pulling a TSIG-signed AXFR from the configured secondary's address, one a
             second (`+timeout=10`): the share that got the whole zone;
  memory     the highest RSS (VmRSS every 20 ms; the supervisor's VmHWM besides) less the RSS at
             the phase's start: the supervisor's, and the responders' together;
  restarts   children started during the phase (a child killed as hung, or crashed).

The measurements end before the attack does: an AXFR begun under attack finishes under it.

The attacks (`--attacks`, all by default), at the issue's sizes:

  body       item 1: GET /healthz, `Transfer-Encoding: chunked`, chunk size -1, then
             `--body-mib` (300) MiB streamed and the stream ended; one connection after another.
  headers    item 1: `--header-connections` (128, the cap) connections from 8 addresses, each
             sending 96 header lines of 64,000 bytes (6 MB) and never the line that ends them;
             one closed by the server is opened again a second later.
  idle       item 2, at `--names` (20,000) pooled names: `--keepalive` (160) clients on 8
             addresses, each sending GET /healthz every 8 s over a kept connection (opened again
             when the server closed it), and `--pollers` (32) clients on 4 addresses fetching
             /status back to back.
  strangers  item 4: `--strangers` (70) clients outside the transfer ACL, each on an address of
             its own, one SOA query every 5 s over a kept connection (opened again when closed).
  reload     item 6: bursts of `--bursts` (40,47,53,60) concurrent POST /reload with the write
             token, from 4 addresses, spread over the phase.
  unread     item 11: `--unread` (200) TCP connections to the responders from 4 addresses that
             pipeline queries for a 250-byte TXT and never read (SO_RCVBUF 4 KiB); one the
             server closes is opened again half a second later.

The targets (issue #20, "Done when"): every probe answered 2xx within 1 s, every AXFR whole,
and RSS growth at most 50 MiB for the supervisor and the responders alike.

The clients run in processes of their own (this script with `--worker KIND`), so that their
work does not delay the probe's. `--json PATH` writes every figure; exit 1 when a target is
missed under attack. Stdlib only, plus kdig; imports nothing from healthdns, so it measures any
version (`--supervisor`).
"""

from __future__ import annotations

import argparse
import json
import re
import select
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import BenchError, supervisor

TOKEN = "adversarial-bench-write-token"
KEY, SECRET = "xfr-bench", "YWR2ZXJzYXJpYWwtYmVuY2gta2V5LXNlY3JldA=="
SECONDARY = "127.0.0.1"  # the configured secondary, and the probe's address
CLOSED_PORT = 9  # nothing listens on loopback: each check is refused at once
SMALL_NAMES = 100  # pooled names of every attack's server but `idle`'s
MIB = 1024 * 1024
RSS_TARGET_MIB = 50.0
PROBE_EVERY, PROBE_TIMEOUT = 0.1, 1.0
AXFR_EVERY, AXFR_TIMEOUT = 1.0, 10
SAMPLE_EVERY = 0.02
START_TIMEOUT = 300.0

Params = dict[str, Any]
Figures = dict[str, Any]


# --- the server --------------------------------------------------------------------------------


def config(names: int) -> str:
    """Two responders, a write token, transfers to one TSIG-signed secondary, a 250-byte TXT
    (large TCP answers), and `names` pooled names, each checked on a closed port."""
    lines = [f"""[server]
listen = ["127.0.0.1:0"]
responders = 2

[prober]
parallel = 4096

[control]
token = "{TOKEN}"

[[tsig]]
name = "{KEY}"
secret = "{SECRET}"

[transfer]
listen = ["127.0.0.1:0"]
secondaries = [{{ address = "{SECONDARY}", key = "{KEY}", notify = false }}]

[[zones]]
origin = "example.test"
nameservers = ["ns1.example.net"]

[zones.records.www]
txt = ['"{"x" * 250}"']
"""]
    for i in range(names):
        address = f"127.30.{i // 250}.{i % 250 + 1}"
        lines.append(f'[zones.records.n{i:05d}]\npool = {{ addresses = ["{address}"], check = '
                     f'{{ port = {CLOSED_PORT}, interval = 60, timeout = 1 }} }}\n')
    return "\n".join(lines)


TRANSFERS = re.compile(r"transfers on (\S+?):(\d+)")


class Supervisor(supervisor.Supervisor):
    """One `healthdns-supervisor` on loopback with its control endpoint and transfer listener."""

    def __init__(self, command: str, path: Path) -> None:
        super().__init__([command, "--config", str(path), "--control-listen", "127.0.0.1:0",
                          "--log-level", "info"], START_TIMEOUT)
        transfers = TRANSFERS.search(self.output())
        if not self.control or transfers is None:
            self.stop()
            raise BenchError(f"no control endpoint or transfer listener:\n"
                             f"{self.output()[-3000:]}")
        self.transfer_port = int(transfers.group(2))

    def responders(self) -> list[int]:
        return [pid for name, pid in self.pids.items() if re.fullmatch(r"responder\d+", name)]

    def exited(self) -> int | None:
        return self.process.poll()


def wait_checked(server: Supervisor, names: int) -> None:
    """Until every target has been checked once (the server's steady state)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        code, body = fetch(server.control, "/status")
        if code == 200 and sum(t["probed"] != "unknown"
                               for t in json.loads(body)["targets"]) >= names:
            return
        time.sleep(1.0)  # polling period
    raise BenchError("the targets were not all checked in time")


def fetch(control: str, path: str) -> tuple[int, bytes]:
    """One GET on a connection of its own: the status and the body."""
    host, port = control.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(request("GET", path, control))
        data = bytearray()
        while chunk := sock.recv(1 << 20):
            data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    return status_of(head), body


# --- HTTP on raw sockets: cheap for the clients, and exact about what is sent ------------------


def request(method: str, path: str, host: str, extra: str = "", close: bool = True) -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}"
            f"{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n").encode()


def status_of(head: bytes) -> int:
    found = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return int(found.group(1)) if found else 0


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, bool]:
    """Read one response (its body drained into `buffer`): its status, and whether the server
    closes the connection after it. OSError when the connection ends first."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the answer")
        head += chunk
    head, _, rest = head.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    left = (int(length.group(1)) if length else 0) - len(rest)
    view = memoryview(buffer)
    while left > 0:
        size = sock.recv_into(view[:min(left, len(buffer))])
        if not size:
            raise ConnectionError("closed inside the body")
        left -= size
    return status_of(head), re.search(rb"(?i)\r\nconnection:\s*close", head) is not None


def connect(address: tuple[str, int], source: str, timeout: float) -> socket.socket:
    return socket.create_connection(address, timeout=timeout, source_address=(source, 0))


def endpoint(control: str) -> tuple[str, int]:
    host, port = control.rsplit(":", 1)
    return host, int(port)


class KeptConnection:
    """One client's kept-alive connection: a request on it, opened (again) when needed, and a
    request that meets a connection the server closed meanwhile sent again on a new one."""

    def __init__(self, control: str, source: str, timeout: float) -> None:
        self.control, self.source, self.timeout = control, source, timeout
        self.sock: socket.socket | None = None
        self.buffer = bytearray(1 << 20)
        self.opened = 0

    def ask(self, wire: bytes) -> int:
        for attempt in (1, 2):
            fresh = self.sock is None
            try:
                if self.sock is None:
                    self.sock = connect(endpoint(self.control), self.source, self.timeout)
                    self.opened += 1
                self.sock.sendall(wire)
                code, closing = read_response(self.sock, self.buffer)
            except OSError:
                self.close()
                if fresh or attempt == 2:
                    return 0
                continue
            if closing:
                self.close()
            return code
        return 0

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


# --- the workers: each a process of its own, until its stdin ends ------------------------------

Work = Callable[[Params, threading.Event], Figures]


def probe(params: Params, stop: threading.Event) -> Figures:
    """kubelet's httpGet probe, every PROBE_EVERY s: (seconds, status) of each; 0 for none."""
    wire = request("GET", "/healthz", params["control"],
                   "User-Agent: kube-probe/1.29\r\nAccept: */*\r\n")
    probes: list[tuple[float, int]] = []
    while not stop.is_set():
        started = time.monotonic()
        code = _probe_once(params["control"], wire, started + PROBE_TIMEOUT)
        took = time.monotonic() - started
        probes.append((round(took, 4), code))
        stop.wait(max(0.0, PROBE_EVERY - took))
    return {"probes": probes}


def _probe_once(control: str, wire: bytes, deadline: float) -> int:
    try:
        with socket.create_connection(endpoint(control), timeout=PROBE_TIMEOUT) as sock:
            sock.sendall(wire)
            head = b""
            while b"\r\n" not in head:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
    except OSError:
        return 0
    return status_of(head) if time.monotonic() <= deadline else 0


def axfr(params: Params, stop: threading.Event) -> Figures:
    """The secondary: kdig AXFR, TSIG-signed, one every AXFR_EVERY s: (seconds, whole) each."""
    command = [params["kdig"], f"@{SECONDARY}", "-p", str(params["port"]), "+retry=0",
               f"+timeout={AXFR_TIMEOUT}", "-y", f"hmac-sha256:{KEY}:{SECRET}", "AXFR",
               "example.test."]
    pulls: list[tuple[float, bool]] = []
    while not stop.is_set():
        started = time.monotonic()
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False,
                                  timeout=3 * AXFR_TIMEOUT)
            whole = (done.returncode == 0 and done.stdout.count("\tSOA\t") >= 2
                     and "www.example.test." in done.stdout)
        except subprocess.TimeoutExpired:
            whole = False
        took = time.monotonic() - started
        pulls.append((round(took, 3), whole))
        stop.wait(max(0.0, AXFR_EVERY - took))
    return {"pulls": pulls}


def body(params: Params, stop: threading.Event) -> Figures:
    """Item 1: a chunk size of -1 and `mib` MiB behind it, one connection after another."""
    head = request("GET", "/healthz", params["control"], "Transfer-Encoding: chunked\r\n",
                   close=False) + b"-1\r\n"
    block = memoryview(b"x" * MIB)
    taken: list[int] = []
    codes: Counter[int] = Counter()
    while not stop.is_set():
        try:
            with connect(endpoint(params["control"]), "127.0.2.1", 15) as sock:
                sent, answer = stream(sock, head, params["mib"] * MIB,
                                      lambda at: block[:MIB - at % MIB], stop)
        except OSError:
            sent, answer = 0, b""
        taken.append(sent)
        codes[status_of(answer)] += 1
    return {"connections": len(taken), "mib_taken_max": round(max(taken, default=0) / MIB, 1),
            "codes": dict(codes)}


def headers(params: Params, stop: threading.Event) -> Figures:
    """Item 1: connections up to the cap, each sending 6 MB of header lines that never end."""
    head = request("GET", "/healthz", params["control"], close=False).removesuffix(b"\r\n")
    # 96 lines: with Host, under the 100 header lines the standard library allows, so a
    # server that keeps them holds them until the request's deadline.
    filler = memoryview(b"".join(b"X-Filler-%02d: %s\r\n" % (i, b"a" * 64000)
                                 for i in range(96)))
    taken: list[int] = []
    codes: Counter[int] = Counter()
    lock = threading.Lock()

    def hold(source: str) -> None:
        while not stop.is_set():
            try:
                with connect(endpoint(params["control"]), source, 15) as sock:
                    sent, answer = stream(sock, head, len(filler), lambda at: filler[at:], stop,
                                          end=False)
            except OSError:
                sent, answer = 0, b""
            with lock:
                taken.append(sent)
                codes[status_of(answer)] += 1
            stop.wait(1.0)  # reopened a second later

    _threads(hold, params["sources"], params["connections"], stop)
    return {"connections": len(taken), "mib_taken_max": round(max(taken, default=0) / MIB, 1),
            "codes": dict(codes)}


def stream(sock: socket.socket, head: bytes, size: int, piece: Callable[[int], memoryview],
           stop: threading.Event, end: bool = True, timeout: float = 15.0) -> tuple[int, bytes]:
    """Send `head`, then `size` bytes (`piece(offset)` gives what follows `offset`), reading
    whatever the server answers meanwhile; then (`end`: with the stream ended) wait for its
    answer and its close, `timeout` at most in all. The bytes of `size` the connection took
    (the kernel's buffers and the server), and the start of the answer."""
    deadline = time.monotonic() + timeout
    sock.sendall(head)
    sock.setblocking(False)
    sent, answer = 0, b""
    try:
        while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            writing = [sock] if sent < size else []
            readable, writable, _ = select.select([sock], writing, [], min(left, 0.2))
            if readable:
                chunk = sock.recv(4096)
                if not chunk:
                    break  # closed: the answer, if any, is in
                answer = (answer + chunk)[:4096]
            if writable:
                sent += sock.send(piece(sent)[:size - sent])
                if sent == size and end:
                    sock.shutdown(socket.SHUT_WR)  # the end of the body: an answer is due
    except OSError:
        pass  # reset: the server would not take more
    return sent, answer


def keepalive(params: Params, stop: threading.Event) -> Figures:
    """Item 2: clients sending GET /healthz every `every` s over a kept connection."""
    wire = request("GET", "/healthz", params["control"], close=False)
    codes: Counter[int] = Counter()
    opened: list[int] = []
    lock = threading.Lock()
    count = params["clients"]

    def client(source: str, n: int) -> None:
        kept = KeptConnection(params["control"], source, 10)
        stop.wait(n * params["every"] / count)  # staggered, as independent clients are
        while not stop.is_set():
            code = kept.ask(wire)
            with lock:
                codes[code] += 1
            stop.wait(params["every"])
        kept.close()
        with lock:
            opened.append(kept.opened)

    _threads(client, params["sources"], count, stop, numbered=True)
    return {"clients": count, "codes": dict(codes), "connections_opened": sum(opened)}


def pollers(params: Params, stop: threading.Event) -> Figures:
    """Item 2: clients fetching /status back to back, each over a kept connection."""
    wire = request("GET", "/status", params["control"], close=False)
    codes: Counter[int] = Counter()
    lock = threading.Lock()

    def client(source: str) -> None:
        kept = KeptConnection(params["control"], source, 60)
        while not stop.is_set():
            code = kept.ask(wire)
            with lock:
                codes[code] += 1
            if code == 0:
                stop.wait(0.1)  # refused: not a busy loop
        kept.close()

    _threads(client, params["sources"], params["clients"], stop)
    return {"clients": params["clients"], "codes": dict(codes)}


def _threads(target: Callable[..., None], sources: list[str], count: int,
             stop: threading.Event, numbered: bool = False) -> None:
    """`count` threads of `target(source[, n])`, the sources taken in turn; until they end."""
    threads = [threading.Thread(target=target, daemon=True,
                                args=(sources[n % len(sources)], n) if numbered
                                else (sources[n % len(sources)],)) for n in range(count)]
    for thread in threads:
        thread.start()
    stop.wait()
    for thread in threads:
        thread.join(30)


def strangers(params: Params, stop: threading.Event) -> Figures:
    """Item 4: clients outside the transfer ACL, each on its own address, an SOA query every
    `every` s over a connection kept (and opened again when the server closes it)."""
    query = _soa_query()
    count, every = params["clients"], params["every"]
    due = {i: time.monotonic() + i * every / count for i in range(count)}
    socks: dict[int, socket.socket] = {}
    rcodes: Counter[int] = Counter()
    tally: Counter[str] = Counter()
    with selectors.DefaultSelector() as selector:
        while not stop.is_set():
            now = time.monotonic()
            for i, when in due.items():
                if when <= now:
                    due[i] = now + every
                    _ask_soa(params["port"], i, socks, selector, query, tally)
            for key, _ in selector.select(0.05):
                _read_soa(key.data, socks, selector, rcodes, tally)
        for sock in socks.values():
            sock.close()
    return {"clients": count, "rcodes": dict(rcodes), **tally}


def _soa_query() -> bytes:
    """An SOA query for example.test over TCP (length-prefixed), id 0x2a2a, RD off."""
    name = b"".join(bytes([len(label)]) + label for label in (b"example", b"test")) + b"\0"
    wire = b"\x2a\x2a\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00" + name + b"\x00\x06\x00\x01"
    return len(wire).to_bytes(2, "big") + wire


def _ask_soa(port: int, i: int, socks: dict[int, socket.socket],
             selector: selectors.BaseSelector, query: bytes, tally: Counter[str]) -> None:
    try:
        if i not in socks:
            sock = connect(("127.0.0.1", port), f"127.0.4.{i % 250 + 1}", 2)
            socks[i] = sock
            selector.register(sock, selectors.EVENT_READ, i)
            tally["connections_opened"] += 1
        socks[i].sendall(query)
        tally["queries"] += 1
    except OSError:
        tally["refused_or_reset"] += 1
        _drop(i, socks, selector)


def _read_soa(i: int, socks: dict[int, socket.socket], selector: selectors.BaseSelector,
              rcodes: Counter[int], tally: Counter[str]) -> None:
    try:
        data = socks[i].recv(4096)
    except OSError:
        data = b""
    if len(data) >= 6:
        rcodes[data[5] & 0x0F] += 1
    if not data:
        tally["closed_by_server"] += 1
        _drop(i, socks, selector)


def _drop(i: int, socks: dict[int, socket.socket], selector: selectors.BaseSelector) -> None:
    sock = socks.pop(i, None)
    if sock is not None:
        selector.unregister(sock)
        sock.close()


def reloads(params: Params, stop: threading.Event) -> Figures:
    """Item 6: bursts of concurrent POST /reload with the write token, `every` s apart."""
    wire = request("POST", "/reload", params["control"],
                   f"Authorization: Bearer {TOKEN}\r\nContent-Length: 0\r\n")
    answers: list[tuple[float, int]] = []
    for size in params["bursts"]:
        if stop.is_set():
            break
        started = time.monotonic()
        answers += _burst(params["control"], wire, size, params["sources"])
        stop.wait(max(0.0, params["every"] - (time.monotonic() - started)))
    codes = Counter(code for _, code in answers)
    return {"requests": len(answers), "codes": dict(codes),
            "slowest_s": round(max((t for t, _ in answers), default=0.0), 2)}


def _burst(control: str, wire: bytes, size: int, sources: list[str]) -> list[tuple[float, int]]:
    start = threading.Barrier(size)
    answers: list[tuple[float, int]] = []

    def post(source: str) -> None:
        code = 0
        try:
            start.wait(10)
            began = time.monotonic()
            with connect(endpoint(control), source, 60) as sock:
                sock.sendall(wire)
                code = read_response(sock, bytearray(4096))[0]
        except (OSError, threading.BrokenBarrierError):
            began = time.monotonic()
        answers.append((time.monotonic() - began, code))

    threads = [threading.Thread(target=post, args=(sources[n % len(sources)],))
               for n in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    return answers


def unread(params: Params, stop: threading.Event) -> Figures:
    """Item 11: TCP connections that pipeline queries and never read their answers."""
    query = _txt_query()
    chunk = query * 1000
    tally: Counter[str] = Counter()
    closed: dict[int, float] = {}  # connection number -> when it may be opened again
    socks: dict[int, socket.socket] = {}
    with selectors.DefaultSelector() as selector:
        for n in range(params["connections"]):
            closed[n] = 0.0
        while not stop.is_set():
            _reopen(params, closed, socks, selector, tally)
            for key, _ in selector.select(0.05):
                n = key.data
                try:
                    tally["kib_sent"] += socks[n].send(chunk) // 1024
                except BlockingIOError:
                    continue
                except OSError:
                    selector.unregister(socks[n])
                    socks.pop(n).close()
                    closed[n] = time.monotonic() + 0.5
                    tally["closed_by_server"] += 1
        for sock in socks.values():
            sock.close()
    return {"connections": params["connections"], **tally}


def _reopen(params: Params, closed: dict[int, float], socks: dict[int, socket.socket],
            selector: selectors.BaseSelector, tally: Counter[str]) -> None:
    now = time.monotonic()
    for n, when in list(closed.items()):
        if when > now:
            continue
        sources = params["sources"]
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # takes few answers
        try:
            sock.bind((sources[n % len(sources)], 0))
            sock.connect(("127.0.0.1", params["port"]))
        except OSError:
            sock.close()
            closed[n] = now + 0.5
            continue
        sock.setblocking(False)
        socks[n] = sock
        del closed[n]
        selector.register(sock, selectors.EVENT_WRITE, n)
        tally["connections_opened"] += 1


def _txt_query() -> bytes:
    name = b"".join(bytes([len(label)]) + label for label in (b"www", b"example", b"test"))
    wire = b"\x11\x11\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00" + name + b"\0\x00\x10\x00\x01"
    return len(wire).to_bytes(2, "big") + wire


WORKERS: dict[str, Work] = {"probe": probe, "axfr": axfr, "body": body, "headers": headers,
                            "keepalive": keepalive, "pollers": pollers,
                            "strangers": strangers, "reloads": reloads, "unread": unread}


def worker_main(kind: str, params: Params) -> int:
    """Say "ready", run WORKERS[kind] from the line "go" on stdin until stdin ends, then print
    its figures as one JSON line."""
    stop = threading.Event()
    figures: Figures = {}
    print("ready", flush=True)
    if sys.stdin.readline() != "go\n":
        return 0  # the bench gave up before the phase began
    thread = threading.Thread(target=lambda: figures.update(WORKERS[kind](params, stop)),
                              daemon=True)
    thread.start()
    sys.stdin.read()  # EOF: the phase is over, or the bench is gone
    stop.set()
    thread.join()
    print(json.dumps(figures))
    return 0


class Worker:
    """A worker process of this script: `start()` once it is ready, `stop()` for its figures.
    Its interpreter starts before the phase does (half a second on a busy host)."""

    def __init__(self, kind: str, params: Params) -> None:
        self.kind = kind
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", kind,
             json.dumps(params)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)

    def ready(self) -> Worker:
        assert self.process.stdout is not None
        if self.process.stdout.readline() != "ready\n":
            self.stop()
        return self

    def start(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def stop(self, timeout: float = 120.0) -> Figures:
        try:
            out, err = self.process.communicate("", timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
        if self.process.returncode != 0 or not out.strip():
            raise BenchError(f"the {self.kind} worker failed:\n{err[-3000:]}")
        result: Figures = json.loads(out.splitlines()[-1])
        return result


# --- memory ------------------------------------------------------------------------------------


def rss(pid: int, field_name: str = "VmRSS") -> int:
    """The process's resident memory (or `field_name` of /proc/PID/status), bytes; 0 when gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(rf"^{field_name}:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else 0


@dataclass
class Memory:
    """The highest RSS of the supervisor and of the responders together, sampled in a thread
    from `start()` until `stop()`, against their RSS at the start."""

    server: Supervisor
    start_rss: tuple[int, int] = (0, 0)
    highest: list[int] = field(default_factory=lambda: [0, 0])
    peak_reset: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def now(self) -> tuple[int, int]:
        return rss(self.server.pid), sum(rss(pid) for pid in self.server.responders())

    def start(self) -> None:
        try:  # VmHWM from now (proc(5), clear_refs): a peak between two samples counts too
            Path(f"/proc/{self.server.pid}/clear_refs").write_text("5")
            self.peak_reset = True
        except OSError:
            self.peak_reset = False
        self.start_rss = self.now()
        self.highest = list(self.start_rss)
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            for i, value in enumerate(self.now()):
                self.highest[i] = max(self.highest[i], value)

    def stop(self) -> Figures:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        supervisor = self.highest[0]
        if self.peak_reset:
            supervisor = max(supervisor, rss(self.server.pid, "VmHWM"))
        return {"supervisor_mib_at_start": round(self.start_rss[0] / MIB, 1),
                "supervisor_growth_mib": round((supervisor - self.start_rss[0]) / MIB, 1),
                "responders_mib_at_start": round(self.start_rss[1] / MIB, 1),
                "responders_growth_mib": round((self.highest[1] - self.start_rss[1]) / MIB, 1)}


# --- attacks and phases -----------------------------------------------------------------------


def addresses(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(1, count + 1)]


@dataclass(frozen=True)
class Attack:
    name: str
    item: str
    what: Callable[[argparse.Namespace], str]
    workers: Callable[[Supervisor, argparse.Namespace], list[tuple[str, Params]]]
    big: bool = False  # its server has --names pooled names, not SMALL_NAMES


ATTACKS = [
    Attack("body", "1", lambda a: f"chunk size -1, then {a.body_mib} MiB streamed, one "
           "connection after another",
           lambda s, a: [("body", {"control": s.control, "mib": a.body_mib})]),
    Attack("headers", "1", lambda a: f"{a.header_connections} connections, each sending 6 MB "
           "of header lines that never end",
           lambda s, a: [("headers", {"control": s.control, "connections": a.header_connections,
                                      "sources": addresses("127.0.3.", 8)})]),
    Attack("idle", "2", lambda a: f"{a.keepalive} keep-alive clients (a request every 8 s) and "
           f"{a.pollers} polling /status, {a.names:,} names",
           lambda s, a: [("keepalive", {"control": s.control, "clients": a.keepalive,
                                        "every": 8.0, "sources": addresses("127.0.7.", 8)}),
                         ("pollers", {"control": s.control, "clients": a.pollers,
                                      "sources": addresses("127.0.8.", 4)})], big=True),
    Attack("strangers", "4", lambda a: f"{a.strangers} clients outside the transfer ACL, a "
           "query every 5 s each, kept connections",
           lambda s, a: [("strangers", {"port": s.transfer_port, "clients": a.strangers,
                                        "every": 5.0})]),
    Attack("reload", "6", lambda a: "bursts of " + "/".join(map(str, a.bursts))
           + " concurrent authenticated POST /reload",
           lambda s, a: [("reloads", {"control": s.control, "bursts": a.bursts,
                                      "every": a.seconds / len(a.bursts),
                                      "sources": addresses("127.0.6.", 4)})]),
    Attack("unread", "11", lambda a: f"{a.unread} TCP connections that pipeline queries and "
           "never read",
           lambda s, a: [("unread", {"port": s.port, "connections": a.unread,
                                     "sources": addresses("127.0.11.", 4)})]),
]


def phase(server: Supervisor, attack: Attack | None, args: argparse.Namespace) -> Figures:
    """`args.seconds` of probes and AXFRs, under `attack` or quiet; the figures."""
    attackers = [Worker(kind, params) for kind, params in attack.workers(server, args)] \
        if attack is not None else []
    watchers = [Worker("probe", {"control": server.control}),
                Worker("axfr", {"kdig": args.kdig, "port": server.transfer_port})]
    workers = [w.ready() for w in [*attackers, *watchers]]
    memory = Memory(server)
    memory.start()
    starts = server.starts
    for worker in workers:
        worker.start()
    time.sleep(args.seconds)  # the phase: the workers run meanwhile
    seen = [w.stop() for w in watchers]  # the measurements end first, under the attack
    figures: Figures = {w.kind: w.stop() for w in attackers}
    figures["memory"] = memory.stop()
    figures["probe"] = probe_figures(seen[0]["probes"])
    figures["axfr"] = axfr_figures(seen[1]["pulls"])
    figures["restarts"] = server.starts - starts
    figures["exit"] = server.exited()
    return figures


def probe_figures(probes: list[tuple[float, int]]) -> Figures:
    times = sorted(t for t, _ in probes) or [0.0]
    failed = [not 200 <= code < 400 for _, code in probes]
    run, longest = 0, 0
    for bad in failed:
        run = run + 1 if bad else 0
        longest = max(longest, run)
    return {"count": len(probes), "failed": sum(failed), "failed_in_a_row": longest,
            "p50_ms": round(statistics.median(times) * 1000, 1),
            "p99_ms": round(times[min(len(times) - 1, int(0.99 * len(times)))] * 1000, 1),
            "max_ms": round(times[-1] * 1000, 1),
            "codes": dict(Counter(str(code) for _, code in probes))}


def axfr_figures(pulls: list[tuple[float, bool]]) -> Figures:
    whole = sum(ok for _, ok in pulls)
    return {"count": len(pulls), "whole": whole,
            "share": round(whole / len(pulls), 3) if pulls else 0.0,
            "median_s": round(statistics.median(t for t, _ in pulls), 2) if pulls else 0.0}


def verdict(figures: Figures) -> list[str]:
    """The targets `figures` misses (none: it meets them all)."""
    missed = []
    probe_, axfr_, memory = figures["probe"], figures["axfr"], figures["memory"]
    if probe_["failed"] or not probe_["count"]:
        missed.append(f"{probe_['failed']} of {probe_['count']} probes not answered 2xx "
                      "within 1 s")
    if axfr_["whole"] < axfr_["count"] or not axfr_["count"]:
        missed.append(f"{axfr_['count'] - axfr_['whole']} of {axfr_['count']} AXFRs failed")
    for who in ("supervisor", "responders"):
        if memory[f"{who}_growth_mib"] > RSS_TARGET_MIB:
            missed.append(f"{who} RSS grew {memory[f'{who}_growth_mib']} MiB")
    if figures["exit"] is not None:
        missed.append(f"the supervisor exited ({figures['exit']})")
    return missed


@contextmanager
def serving(args: argparse.Namespace, names: int) -> Iterator[Supervisor]:
    with tempfile.TemporaryDirectory(prefix="adversarial-") as tmp:
        path = Path(tmp) / "healthdns.toml"
        path.write_text(config(names))
        server = Supervisor(args.supervisor, path)
        try:
            wait_checked(server, names)
            yield server
        finally:
            server.stop()


def run_attack(attack: Attack, args: argparse.Namespace) -> Figures:
    names = args.names if attack.big else SMALL_NAMES
    with serving(args, names) as server:
        quiet = phase(server, None, args)
        loud = phase(server, attack, args) if quiet["exit"] is None else quiet
    return {"attack": attack.name, "item": attack.item, "what": attack.what(args),
            "names": names, "quiet": quiet, "attack_phase": loud, "missed": verdict(loud)}


# --- the report --------------------------------------------------------------------------------


def rows(result: Figures) -> list[tuple[str, str, str]]:
    """(figure, quiet, under attack) lines of one attack's report."""
    def probe_(f: Figures) -> str:
        p = f["probe"]
        return f"{p['p50_ms']:g} / {p['p99_ms']:g} / {p['max_ms']:g}"

    def failed(f: Figures) -> str:
        p = f["probe"]
        return f"{p['failed']} of {p['count']} ({p['failed_in_a_row']} in a row)"

    def axfr_(f: Figures) -> str:
        a = f["axfr"]
        return f"{a['whole']} of {a['count']} ({a['share']:.0%})"

    def growth(who: str) -> Callable[[Figures], str]:
        return lambda f: (f"{f['memory'][who + '_growth_mib']:+.1f} MiB "
                          f"(from {f['memory'][who + '_mib_at_start']:.0f})")

    lines: list[tuple[str, Callable[[Figures], str]]] = [
        ("/healthz p50 / p99 / max ms", probe_), ("/healthz failed", failed),
        ("secondary AXFR whole", axfr_), ("supervisor RSS growth", growth("supervisor")),
        ("responders RSS growth", growth("responders")),
        ("children started", lambda f: str(f["restarts"])),
        ("supervisor exited", lambda f: "no" if f["exit"] is None else str(f["exit"]))]
    return [(label, show(result["quiet"]), show(result["attack_phase"]))
            for label, show in lines]


def report(result: Figures) -> str:
    out = [f"item {result['item']} ({result['attack']}): {result['what']}"]
    out += [f"  {label:<30} {quiet:<32} {loud}" for label, quiet, loud in
            [("", "quiet", "under attack"), *rows(result)]]
    clients = {k: v for k, v in result["attack_phase"].items()
               if k in {kind for kind in WORKERS if kind not in ("probe", "axfr")}}
    out.append(f"  {'the attackers':<30} {json.dumps(clients)}")
    missed = result["missed"]
    out.append("  targets: " + ("met" if not missed else "MISSED: " + "; ".join(missed)))
    return "\n".join(out)


def summary(results: list[Figures]) -> str:
    head = (f"{'attack':<16} {'healthz p99 ms':>16} {'failed probes':>14} {'AXFR whole':>12} "
            f"{'supervisor MiB':>16} {'responders MiB':>16}  targets")
    under = (f"{'':<16} {'quiet / attack':>16} {'quiet / attack':>14} {'quiet / att.':>12} "
             f"{'quiet / attack':>16} {'quiet / attack':>16}")
    return "\n".join(["", head, under, *(_summary_line(r) for r in results)])


def _summary_line(result: Figures) -> str:
    quiet, loud = result["quiet"], result["attack_phase"]

    def pair(get: Callable[[Figures], Any]) -> str:
        return f"{get(quiet)} / {get(loud)}"

    return (f"{result['item'] + ' ' + result['attack']:<16} "
            f"{pair(lambda f: f['probe']['p99_ms']):>16} "
            f"{pair(lambda f: f['probe']['failed']):>14} "
            f"{pair(lambda f: format(f['axfr']['share'], '.0%')):>12} "
            f"{pair(lambda f: format(f['memory']['supervisor_growth_mib'], '+.1f')):>16} "
            f"{pair(lambda f: format(f['memory']['responders_growth_mib'], '+.1f')):>16}  "
            f"{'met' if not result['missed'] else 'MISSED'}")


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--attacks", default=",".join(a.name for a in ATTACKS),
                        help="which, comma-separated (default: all)")
    parser.add_argument("--seconds", type=float, default=20.0, help="of each phase")
    parser.add_argument("--supervisor", default=str(Path(sys.executable).parent
                                                    / "healthdns-supervisor"))
    parser.add_argument("--names", type=int, default=20000, help="pooled names for `idle`")
    parser.add_argument("--body-mib", type=int, default=300)
    parser.add_argument("--header-connections", type=int, default=128)
    parser.add_argument("--keepalive", type=int, default=160)
    parser.add_argument("--pollers", type=int, default=32)
    parser.add_argument("--strangers", type=int, default=70)
    parser.add_argument("--bursts", default="40,47,53,60")
    parser.add_argument("--unread", type=int, default=200)
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    args.bursts = [int(b) for b in args.bursts.split(",")]
    known = {a.name: a for a in ATTACKS}
    wanted = args.attacks.split(",")
    if unknown := [w for w in wanted if w not in known]:
        parser.error(f"unknown attack {', '.join(unknown)}; known: {', '.join(known)}")
    args.attacks = [known[w] for w in wanted]
    args.kdig = shutil.which("kdig")
    if args.kdig is None:
        parser.error("kdig is needed (apt-get install knot-dnsutils)")
    if not Path(args.supervisor).exists():
        parser.error(f"no {args.supervisor}: run `./dev test --co -q` first, or give "
                     "--supervisor")
    return args


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 4 and sys.argv[1] == "--worker":
        return worker_main(sys.argv[2], json.loads(sys.argv[3]))
    args = parse_args(argv)
    results = []
    for attack in args.attacks:
        result = run_attack(attack, args)
        print(report(result), flush=True)
        results.append(result)
    print(summary(results))
    if args.json:
        args.json.write_text(json.dumps({"seconds": args.seconds, "supervisor":
                                         args.supervisor, "results": results}, indent=2))
    return 1 if any(r["missed"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
