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
import concurrent.futures
import contextlib
import dataclasses
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Self

ZONE = "example.test"
NS = "ns1.example.net"
HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
BASE_A = {
    "www": ("192.0.2.10", "192.0.2.11"),
    "mail": ("192.0.2.25",),
    "api": ("192.0.2.30",),
    "db": ("192.0.2.40",),
}
REFERENCES = ("gdnsd", "knot")
GOOD_RCODES = {"NOERROR", "NXDOMAIN"}
EXIT_START = 2
EXIT_STRICT = 1


class BenchError(Exception):
    """A failure that ends the run: the message says what and includes the evidence."""


class Interrupted(Exception):
    """SIGTERM or SIGINT: stop the servers and leave."""


def log(text: str) -> None:
    print(f"[bench] {text}", flush=True)


# ---------------------------------------------------------------------------------------------
# The zone, in each server's own format.


@dataclasses.dataclass(frozen=True)
class Zone:
    extra: int  # n00001..nNNNNN

    def width(self) -> int:
        return max(5, len(str(self.extra)))

    def extra_names(self) -> Iterator[tuple[str, str]]:
        for i in range(1, self.extra + 1):
            yield f"n{i:0{self.width()}d}", f"192.0.2.{(i - 1) % 254 + 1}"

    def a_records(self) -> Iterator[tuple[str, tuple[str, ...]]]:
        yield from BASE_A.items()
        for name, address in self.extra_names():
            yield name, (address,)

    def zone_file(self) -> str:
        lines = [
            f"$ORIGIN {ZONE}.",
            "$TTL 60",
            f"@ 3600 SOA {NS}. hostmaster.{ZONE}. 1 7200 3600 1209600 60",
            f"@ 3600 NS {NS}.",
            f"@ MX 10 mail.{ZONE}.",
        ]
        for name, addresses in self.a_records():
            lines.extend(f"{name} A {address}" for address in addresses)
        return "\n".join(lines) + "\n"

    def healthdns_toml(self, port: int, responders: int, packet_cache: int | None = None) -> str:
        lines = [
            "[server]",
            f'listen = ["{HOST}:{port}"]',
            f"responders = {responders}",
            *([f"packet_cache = {packet_cache}"] if packet_cache is not None else []),
            'log_level = "warning"',
            "",
            "[[zones]]",
            f'origin = "{ZONE}"',
            f'nameservers = ["{NS}"]',
            "ttl = 60",
            "ns_ttl = 3600",
            "",
            "[zones.soa]",
            "ttl = 3600",
            "refresh = 7200",
            "retry = 3600",
            "expire = 1209600",
            "minimum = 60",
            "",
            "[zones.records]",
            '"@" = { mx = ["10 mail"] }',
        ]
        for name, addresses in self.a_records():
            lines.append(f"{name} = {{ a = {json.dumps(list(addresses))} }}")
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Queries: the standard mix for the load, and a wider set for the answer check.


MIX = {  # share of the query file per kind
    "positive": 0.40, "nxdomain": 0.15, "nodata": 0.15, "soa": 0.10, "ns": 0.10, "mixed": 0.10,
}
NXDOMAIN_NAMES = ("nonexistent", "nope", "missing", "x.www", "deep.sub.mail", "wwww", "ww", "_srv")
NODATA = (("www", "AAAA"), ("mail", "MX"), ("db", "AAAA"), ("api", "TXT"))
MIXED = ("WwW.ExAmPlE.tEsT", "MAIL.EXAMPLE.TEST", "Api.Example.Test", "dB.eXaMpLe.TeSt")
CHECK_ONLY = (  # asked of every server before the load, not part of it
    (f"{ZONE}", "MX"), (f"{ZONE}", "A"), (f"{ZONE}", "AAAA"), (f"www.{ZONE}", "CNAME"),
    (f"WWW.{ZONE.upper()}", "AAAA"), (f"NoSuch.{ZONE}", "A"), ("ExAmPlE.TeSt", "SOA"),
    (f"sub.www.{ZONE}", "AAAA"), ("example.com", "A"), ("test", "SOA"), (f"www.{ZONE}", "ANY"),
    (f"{ZONE}", "DNSKEY"), (f"www.{ZONE}", "TYPE65280"),
)


def query_mix(zone: Zone, rng: random.Random) -> list[tuple[str, str, str]]:
    """(kind, name, type) lines of the query file, shuffled, in the shares of MIX."""
    total = 1000 if zone.extra == 0 else 10000
    extra = [name for name, _ in zone.extra_names()]
    lines: list[tuple[str, str, str]] = []
    for kind, share in MIX.items():
        lines.extend((kind, *_pick(kind, rng, extra)) for _ in range(round(total * share)))
    rng.shuffle(lines)
    return lines


def _pick(kind: str, rng: random.Random, extra: Sequence[str]) -> tuple[str, str]:
    """One (name, type) of a kind; positives are half base names, half extra names (if any)."""
    match kind:
        case "positive":
            use_extra = bool(extra) and rng.random() >= 0.5
            owner = rng.choice(extra) if use_extra else rng.choice(list(BASE_A))
            return f"{owner}.{ZONE}", "A"
        case "nxdomain":
            return f"{rng.choice(NXDOMAIN_NAMES)}.{ZONE}", rng.choice(("A", "AAAA"))
        case "nodata":
            owner, rtype = rng.choice(NODATA)
            return f"{owner}.{ZONE}", rtype
        case "soa" | "ns":
            return ZONE, kind.upper()
        case "mixed":
            return rng.choice(MIXED), "A"
    raise ValueError(kind)


def check_queries(lines: Sequence[tuple[str, str, str]], rng: random.Random,
                  sample: int = 20) -> list[tuple[str, str]]:
    """Distinct load queries (at most `sample` of the extra names) plus the check-only ones."""
    distinct = sorted({(name, rtype) for _, name, rtype in lines})
    extra = [q for q in distinct if re.match(r"n\d+\.", q[0])]
    keep = set(rng.sample(extra, min(sample, len(extra))))
    chosen = [q for q in distinct if q not in extra or q in keep]
    return chosen + [q for q in CHECK_ONLY if q not in chosen]


# ---------------------------------------------------------------------------------------------
# Processes.


def free_port(taken: set[int], rng: random.Random) -> int:
    """A port free for both UDP and TCP on HOST right now (good enough for a bench script)."""
    for _ in range(200):
        port = rng.randint(20000, 60000)
        if port in taken:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, \
                    socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                u.bind((HOST, port))
                t.bind((HOST, port))
        except OSError:
            continue
        taken.add(port)
        return port
    raise BenchError("no free port found on 127.0.0.1 after 200 tries")


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no output)"
    return "\n".join("    | " + line for line in text.splitlines()[-lines:]) or "    | (empty)"


def children(pid: int) -> list[int]:
    """PIDs whose parent is `pid` (from /proc/*/stat)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            out.append(int(entry.name))
    return sorted(out)


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@dataclasses.dataclass
class Server:
    """One server process: how to start it, when it is ready, how to stop it."""

    label: str  # "healthdns r=2", "gdnsd", ...
    kind: str  # "healthdns", "gdnsd", "knot", "a-healthy-dns"
    argv: list[str]
    port: int
    workdir: Path
    ready_line: str | None = None
    ready_probe: tuple[str, str, tuple[str, ...] | None] = (f"www.{ZONE}", "A", BASE_A["www"])
    responders: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    stderr_path: Path = dataclasses.field(init=False)
    start_seconds: float | None = None
    leftover: list[int] = dataclasses.field(default_factory=list)
    control_port: int | None = None  # healthdns: its control endpoint (/metrics)

    def __post_init__(self) -> None:
        self.stderr_path = self.workdir / f"{self.label.replace(' ', '_').replace('=', '')}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, deadline_s: float) -> None:
        log(f"starting {self.label} on {HOST}:{self.port}: {' '.join(self.argv[:4])} ...")
        began = time.monotonic()
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=err,
                                         stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = began + deadline_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.label} exited with status {self.proc.returncode} "
                                 f"before it was ready; its output:\n{tail(self.stderr_path)}")
            if self._ready():
                self.start_seconds = time.monotonic() - began
                log(f"{self.label} ready in {self.start_seconds:.2f} s (pid {self.pid})")
                return
            time.sleep(0.1)
        raise BenchError(f"{self.label} was not ready within {deadline_s:g} s; its output:\n"
                         f"{tail(self.stderr_path)}")

    def _ready(self) -> bool:
        if self.ready_line is not None:
            text = self.stderr_path.read_bytes().decode(errors="replace")
            if self.ready_line not in text:
                return False
        name, rtype, expect = self.ready_probe
        try:
            out = subprocess.run(["dig", "+short", "+tries=1", "+time=1", f"@{HOST}", "-p",
                                  str(self.port), name, rtype],
                                 check=False, capture_output=True, text=True, timeout=5).stdout
        except subprocess.TimeoutExpired:
            return False
        got = {line.strip() for line in out.splitlines() if line.strip()}
        if expect is None:
            return bool(got) and not any(line.startswith(";;") for line in got)
        return got == set(expect)

    def stop(self, deadline_s: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        kids = children(self.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(deadline_s)
        except subprocess.TimeoutExpired:
            log(f"{self.label} (pid {self.pid}) did not stop within {deadline_s:g} s: SIGKILL")
            self.proc.kill()
            self.proc.wait(5)
        # Children of a killed supervisor should leave on pipe EOF; give them a moment.
        end = time.monotonic() + 5
        while any(alive(k) for k in kids) and time.monotonic() < end:
            time.sleep(0.05)
        for kid in kids:
            if alive(kid):
                self.leftover.append(kid)
                log(f"{self.label}: child pid {kid} outlived its parent: SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(kid, signal.SIGKILL)

    def processes(self) -> list[dict[str, Any]]:
        """The server's process and its direct children, with their VmRSS in KiB."""
        rows: list[dict[str, Any]] = [{"pid": self.pid, "role": "main",
                                       "rss_kib": rss_kib(self.pid)}]
        roles = self._roles_from_log()
        unknown = []
        for kid in children(self.pid):
            line = cmdline(kid)
            role = roles.get(kid) or ("resource_tracker" if "resource_tracker" in line else None)
            row: dict[str, Any] = {"pid": kid, "role": role, "rss_kib": rss_kib(kid)}
            if role is None:
                unknown.append(row)
            rows.append(row)
        # healthdns's responders log nothing at info: the spawned children nobody named are
        # the responders when their count says so.
        guess = "responder" if self.responders == len(unknown) else "child"
        for row in unknown:
            row["role"] = guess
        return rows

    def _roles_from_log(self) -> dict[int, str]:
        text = self.stderr_path.read_bytes().decode(errors="replace")
        return {int(pid): role for role, pid in re.findall(r"\b([a-z]+)\[(\d+)\]", text)}


def which(name: str) -> str | None:
    for directory in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def healthdns_command(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    for candidate in (Path(sys.executable).parent / "healthdns-supervisor",
                      REPO / ".venv" / "bin" / "healthdns-supervisor"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("healthdns-supervisor")


def make_servers(args: argparse.Namespace, zone: Zone, root: Path,
                 rng: random.Random) -> tuple[list[Server], list[str]]:
    """The servers to run (one healthdns per responder count), and notes about skipped ones."""
    servers: list[Server] = []
    notes: list[str] = []
    ports: set[int] = set()
    skip = set(args.skip or ())

    command = healthdns_command(args.healthdns)
    if "healthdns" in skip:
        notes.append("healthdns skipped (--skip)")
    elif command is None:
        notes.append("healthdns skipped: healthdns-supervisor not found (give --healthdns PATH)")
    else:
        variants = [(count, cache) for count in args.responders_list
                    for cache in (args.packet_cache_list or [None])]
        for count, cache in variants:
            port = free_port(ports, rng)
            suffix = "" if cache is None else f"-c{cache}"
            workdir = root / f"healthdns-r{count}{suffix}"
            workdir.mkdir()
            config = workdir / "healthdns.toml"
            toml = zone.healthdns_toml(port, count, cache)
            if args.dnssec:
                toml += healthdns_dnssec(command, workdir)
            config.write_text(toml)
            control = free_port(ports, rng)  # each its own: the default port is one
            label = "healthdns"
            if len(args.responders_list) > 1:
                label += f" r={count}"
            if cache is not None and len(variants) > 1:
                label += f" cache={cache}"
            servers.append(Server(label, "healthdns",
                                  [command, "--config", str(config), "--log-level", "info",
                                   "--responders", str(count),
                                   "--control-listen", f"{HOST}:{control}"],
                                  port, workdir, ready_line="ready: serving", responders=count,
                                  control_port=control))

    for kind, binary, build in (("gdnsd", "gdnsd", gdnsd_server), ("knot", "knotd", knot_server),
                                ("a-healthy-dns", "a-healthy-dns", ahd_server)):
        path = which(binary)
        if kind in skip:
            notes.append(f"{kind} skipped (--skip)")
        elif args.dnssec and kind != "knot":
            notes.append(f"{kind} skipped: it does not sign (--dnssec)")
        elif path is None:
            if kind != "a-healthy-dns":
                notes.append(f"{kind} skipped: {binary} not found")
        else:
            workdir = root / kind
            workdir.mkdir()
            server = build(path, zone, free_port(ports, rng), workdir)
            if args.dnssec and kind == "knot":
                sign_knot(workdir)
            servers.append(server)
    return servers, notes


def healthdns_dnssec(command: str, workdir: Path) -> str:
    """A [zones.dnssec] table with an ECDSA P-256 key made by healthdns-key."""
    key = workdir / "csk.pem"
    tool = str(Path(command).parent / "healthdns-key")
    subprocess.run([tool, "generate", "--zone", ZONE, "--out", str(key)], check=True,
                   capture_output=True)
    return f'\n[zones.dnssec]\ncsk = "{key}"\n'


def sign_knot(workdir: Path) -> None:
    """Knot's automatic signing with the same algorithm and a single signing key."""
    conf = workdir / "knot.conf"
    text = conf.read_text().replace(
        "zone:\n",
        "policy:\n  - id: p\n    algorithm: ecdsap256sha256\n    single-type-signing: on\n"
        "zone:\n", 1)
    conf.write_text(text + "    dnssec-signing: on\n    dnssec-policy: p\n")


def gdnsd_server(binary: str, zone: Zone, port: int, workdir: Path) -> Server:
    (workdir / "zones").mkdir()
    (workdir / "config").write_text(f"options => {{ listen => [ {HOST}:{port} ] }}\n")
    (workdir / "zones" / ZONE).write_text(zone.zone_file())
    # gdnsd 3.x runs in the foreground by default; its old -f flag only prints a warning now.
    return Server("gdnsd", "gdnsd", [binary, "-c", str(workdir), "start"], port, workdir)


def knot_server(binary: str, zone: Zone, port: int, workdir: Path) -> Server:
    zone_path = workdir / f"{ZONE}.zone"
    zone_path.write_text(zone.zone_file())
    conf = workdir / "knot.conf"
    conf.write_text(
        "server:\n"
        f"  listen: {HOST}@{port}\n"
        f"  rundir: {workdir}\n"
        "database:\n"
        f"  storage: {workdir}\n"
        "log:\n"
        "  - target: stderr\n"
        "    any: info\n"
        "zone:\n"
        f"  - domain: {ZONE}\n"
        f"    file: {zone_path}\n"
        "    zonefile-sync: -1\n"
        "    journal-content: none\n"
    )
    return Server("knot", "knot", [binary, "-c", str(conf)], port, workdir)


def ahd_server(binary: str, zone: Zone, port: int, workdir: Path) -> Server:
    # a-healthy-dns answers only for healthy addresses; the documentation addresses here are not
    # reachable, so it is benchmarked but its answers are not held against the references.
    resolutions = {name: {"ips": list(addresses), "health_port": 80}
                   for name, addresses in zone.a_records()}
    argv = [binary, "--hosted-zone", ZONE, "--ns", json.dumps([NS]), "--port", str(port),
            "--zone-resolutions", json.dumps(resolutions)]
    return Server("a-healthy-dns", "a-healthy-dns", argv, port, workdir,
                  ready_probe=(ZONE, "SOA", None))


# ---------------------------------------------------------------------------------------------
# The answer check: dig every distinct query at every server, compare with the references.


@dataclasses.dataclass(frozen=True)
class Answer:
    status: str
    aa: bool
    answer: tuple[str, ...]
    authority: tuple[str, ...]
    ttls: tuple[str, ...]  # "owner type ttl", for notes only
    owners: tuple[str, ...]  # owner names as sent, for the case note
    additional: int

    def key(self) -> tuple[Any, ...]:
        return (self.status, self.aa, self.answer, self.authority)

    def show(self) -> str:
        flags = " aa" if self.aa else " (no aa)"
        answer = "; ".join(self.answer) or "-"
        authority = "; ".join(self.authority) or "-"
        return f"{self.status}{flags} | answer: {answer} | authority: {authority}"


def normalise_rr(line: str) -> tuple[str, str, str]:
    """(comparable text, ttl note, owner as sent) of one dig RR line."""
    owner, ttl, rclass, rtype, *rdata = line.split()
    if rtype == "SOA" and len(rdata) == 7:
        rdata[2] = "<serial>"
    text = f"{owner.lower()} {rclass} {rtype} {' '.join(rdata).lower()}"
    return text, f"{owner.lower()} {rtype} ttl {ttl}", owner


def parse_dig(text: str) -> Answer:
    status = re.search(r"status: ([A-Z]+)", text)
    if status is None:
        reason = "TIMEOUT" if "timed out" in text or "no servers" in text else "NO-ANSWER"
        return Answer(reason, False, (), (), (), (), 0)
    flags = re.search(r";; flags:([^;]*);", text)
    additional = re.search(r"ADDITIONAL: (\d+)", text)
    sections: dict[str, list[tuple[str, str, str]]] = {"ANSWER": [], "AUTHORITY": []}
    current: str | None = None
    for line in text.splitlines():
        header = re.match(r";; (\w+) SECTION:", line)
        if header:
            current = header.group(1) if header.group(1) in sections else None
        elif not line.strip() or line.startswith(";"):
            current = None if not line.strip() else current
        elif current is not None:
            sections[current].append(normalise_rr(line))
    rrs = sections["ANSWER"] + sections["AUTHORITY"]
    return Answer(
        status=status.group(1),
        aa=flags is not None and "aa" in flags.group(1).split(),
        answer=tuple(sorted(r[0] for r in sections["ANSWER"])),
        authority=tuple(sorted(r[0] for r in sections["AUTHORITY"])),
        ttls=tuple(sorted({r[1] for r in rrs})),
        owners=tuple(sorted({r[2] for r in rrs})),
        additional=int(additional.group(1)) if additional else 0,
    )


VARIANTS = {"udp": [], "udp no edns": ["+noedns"], "tcp": ["+tcp"]}


def dig(port: int, name: str, rtype: str, variant: str) -> Answer:
    argv = ["dig", *VARIANTS[variant], "+norec", "+noall", "+answer", "+authority", "+comments",
            "+tries=1", "+time=2", f"@{HOST}", "-p", str(port), name, rtype]
    try:
        result = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return Answer("TIMEOUT", False, (), (), (), (), 0)
    return parse_dig(result.stdout + result.stderr)


def check_answers(servers: Sequence[Server],
                  queries: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Ask every server every query (UDP with and without EDNS, TCP); compare the answers."""
    jobs = [(s, q, v) for s in servers for q in queries for v in VARIANTS]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda j: dig(j[0].port, j[1][0], j[1][1], j[2]), jobs))
    table: dict[tuple[str, str, str], dict[str, Answer]] = {}
    for (server, (name, rtype), variant), answer in zip(jobs, answers, strict=True):
        table.setdefault((name, rtype, variant), {})[server.label] = answer
    refs = [s.label for s in servers if s.kind in REFERENCES]
    compared = [s.label for s in servers if s.kind not in REFERENCES and s.kind != "a-healthy-dns"]
    report: dict[str, Any] = {"references": refs, "queries": len(queries), "mismatches": [],
                              "reference_disagreements": [], "notes": [], "timeouts": [],
                              "answers": {}}
    for (name, rtype, variant), by_server in table.items():
        query = f"{name} {rtype} ({variant})"
        report["answers"][query] = {
            label: {"answer": a.show(), "ttls": list(a.ttls), "additional": a.additional}
            for label, a in by_server.items()}
        for label, answer in by_server.items():
            if answer.status in ("TIMEOUT", "NO-ANSWER"):
                report["timeouts"].append({"server": label, "query": query})
        if not refs:
            continue
        ref_keys = {by_server[r].key() for r in refs}
        if len(ref_keys) > 1:
            report["reference_disagreements"].append(
                {"query": query, "answers": {r: by_server[r].show() for r in refs}})
        for label in compared:
            mine = by_server[label]
            if mine.key() not in ref_keys:
                report["mismatches"].append({
                    "server": label, "query": query, "got": mine.show(),
                    "expected": {r: by_server[r].show() for r in refs}})
            else:
                report["notes"].extend(_notes(label, query, mine, by_server, refs, name))
    return report


def _notes(label: str, query: str, mine: Answer, by_server: dict[str, Answer],
           refs: Sequence[str], qname: str) -> list[dict[str, str]]:
    """Differences that do not make an answer wrong: TTLs, owner-name case, additional count."""
    out = []
    ref = by_server[refs[0]]
    if mine.ttls != ref.ttls and all(by_server[r].ttls != mine.ttls for r in refs):
        out.append({"server": label, "query": query, "what": "ttl",
                    "got": ", ".join(mine.ttls),
                    "references": " / ".join(f"{r}: {', '.join(by_server[r].ttls)}"
                                             for r in refs)})
    ref_owners = {by_server[r].owners for r in refs}
    if mine.owners not in ref_owners and qname != qname.lower():
        out.append({"server": label, "query": query, "what": "owner name case",
                    "got": ", ".join(mine.owners),
                    "references": " / ".join(f"{r}: {', '.join(by_server[r].owners)}"
                                             for r in refs)})
    if mine.additional not in {by_server[r].additional for r in refs}:
        out.append({"server": label, "query": query, "what": "additional count",
                    "got": str(mine.additional),
                    "references": " / ".join(f"{r}: {by_server[r].additional}" for r in refs)})
    return out


def print_check(report: dict[str, Any], show_all: bool) -> None:
    refs = " and ".join(report["references"]) or "no reference server"
    log(f"answer check: {report['queries']} distinct queries x ({', '.join(VARIANTS)}) "
        f"against {refs}")
    if show_all:
        for query, by_server in report["answers"].items():
            print(f"  {query}")
            for label, entry in by_server.items():
                ttls = ", ".join(t.split(" ttl ")[1] for t in entry["ttls"]) or "-"
                print(f"      {label:<16} {entry['answer']} | ttl {ttls} | "
                      f"additional {entry['additional']}")
    for t in report["timeouts"]:
        print(f"  NO ANSWER  {t['server']}: {t['query']}")
    for query, m in _collapse(report["mismatches"], "got", "expected"):
        print(f"  MISMATCH   {m['server']}: {query}")
        print(f"      got       {m['got']}")
        for ref, text in m["expected"].items():
            print(f"      {ref:<9} {text}")
    for query, d in _collapse(report["reference_disagreements"], "answers"):
        print(f"  references disagree (not counted against healthdns): {query}")
        for ref, text in d["answers"].items():
            print(f"      {ref:<9} {text}")
    for kind in ("ttl", "owner name case", "additional count"):
        notes = [n for n in report["notes"] if n["what"] == kind]
        for n in _dedupe_notes(notes)[:12]:
            print(f"  note ({kind}) {n['server']}: {n['query']}: {n['got']}  "
                  f"[{n['references']}]")
        if len(_dedupe_notes(notes)) > 12:
            print(f"  note ({kind}): {len(_dedupe_notes(notes)) - 12} more in the JSON output")
    if not report["mismatches"] and not report["timeouts"]:
        print("  all answers match the references (rcode, AA, answer and authority RRsets)")


def _collapse(entries: list[dict[str, Any]],
              *fields: str) -> list[tuple[str, dict[str, Any]]]:
    """Entries that differ only in the transport variant, as one ("name type (v1, v2)", entry)."""
    groups: dict[str, tuple[str, list[str], dict[str, Any]]] = {}
    for entry in entries:
        question, _, variant = entry["query"].rpartition(" (")
        key = json.dumps([entry.get("server"), question, *(entry[f] for f in fields)],
                         sort_keys=True)
        groups.setdefault(key, (question, [], entry))[1].append(variant.rstrip(")"))
    return [(f"{q} ({', '.join(v)})", e) for q, v, e in groups.values()]


def _dedupe_notes(notes: list[dict[str, str]]) -> list[dict[str, str]]:
    seen: set[tuple[str, str]] = set()
    out = []
    for n in sorted(notes, key=lambda n: (n["server"], n["query"])):
        key = (n["query"], n["got"] + n["references"])
        if key not in seen:
            seen.add(key)
            out.append(n)
    return out


# ---------------------------------------------------------------------------------------------
# Load.


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


def run_dnsperf(server: Server, queries: Path, args: argparse.Namespace, round_no: int,
                root: Path) -> Round:
    argv = ["dnsperf", "-s", HOST, "-p", str(server.port), "-d", str(queries),
            "-l", f"{args.seconds:g}", "-c", str(args.clients), "-T", str(args.threads),
            "-q", str(args.outstanding)]
    if args.edns:
        argv.append("-e")
    if args.dnssec:
        argv.append("-D")  # the DO bit: signed answers
    out_path = root / f"dnsperf-{server.label.replace(' ', '_').replace('=', '')}-{round_no}.txt"
    with open(out_path, "wb") as out:
        result = subprocess.run(argv, check=False, stdout=out, stderr=subprocess.STDOUT,
                                timeout=args.seconds + 60)
    text = out_path.read_text(errors="replace")
    if result.returncode != 0:
        raise BenchError(f"dnsperf against {server.label} exited {result.returncode}:\n"
                         f"{text[-1500:]}")
    if server.proc is not None and server.proc.poll() is not None:
        raise BenchError(f"{server.label} died during the load (status {server.proc.returncode})"
                         f"; its output:\n{tail(server.stderr_path)}")
    stats = parse_dnsperf(text)
    rss = {str(p["pid"]): p["rss_kib"] for p in server.processes()}
    return Round(server=server.label, round=round_no, rss_kib=rss, **stats)


# ---------------------------------------------------------------------------------------------
# Report.


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


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
