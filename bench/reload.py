"""Changing a running server under load (issue #10): reloads, a restart, a stopped responder.

healthdns with 2 responders serves a signed zone (Ed25519, NSEC) on loopback while dnsperf sends
DO=1 queries at about half of the maximum rate measured first (`dnsperf -Q`), and a checker
client sends its own queries alongside (a new socket each, so they reach every responder) and
compares every answer with what the configurations written so far allow:

* `gen.bench.test TXT` holds the number of the configuration: an answer must name one that was
  written, and never one older than a configuration already seen served everywhere;
* `www.bench.test A` is a pool of two checked loopback backends: a non-empty subset of them;
* `static.bench.test A` never changes.

Experiments:
1. ten reloads that change a record, ten that change the responder count (2 <-> 3), ten that
   fail validation (bad TOML): dnsperf's answered share, the checker's wrong and lost answers;
2. a restart by the procedure of docs/operations.md (a new supervisor with `--replace`, its
   ready line, SIGTERM to the old one) with one backend down: the answered share, and whether
   the new process's first answers (told apart by NSID) already leave that backend out;
3. one responder SIGSTOPped for 30 s while a backend flips every 3 s: how long the answers take
   to follow each flip, against flips with every responder running.

    .venv/bin/python bench/reload.py [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.edns
import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
from harness import BenchError
from harness.backend import Backend
from harness.dnsperf import parse_dnsperf
from harness.servers import free_port, healthdns_command, which

TOKEN = "bench-reload-token"
HOST = "127.0.0.1"
INTERVAL, TIMEOUT = 0.5, 0.25  # the checks: a flip is seen within about one interval
NAMES = ("www", "gen", "static")


class Supervisor:
    """One healthdns-supervisor process and the lines it logged."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.lines: list[str] = []
        self.control = ""
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout: float, start: int = 0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[start:]:
                found = re.search(pattern, line)
                if found:
                    return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)  # polling a log, not waiting for readiness blindly
        raise BenchError(f"no {pattern!r} within {timeout} s:\n{''.join(self.lines[-30:])}")

    def ready(self) -> Supervisor:
        self.wait_for("ready: serving", 60)
        self.control = "http://" + self.wait_for(r"control: listening on (\S+)", 5).group(1)
        return self

    def reload(self) -> tuple[int, str]:
        request = urllib.request.Request(self.control + "/reload", method="POST",
                                         headers={"Authorization": f"Bearer {TOKEN}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def count(self, pattern: str) -> int:
        return sum(1 for line in self.lines if re.search(pattern, line))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(15)


class Checker:
    """Queries one after another from a few threads; every answer judged."""

    def __init__(self, port: int, threads: int = 3, gen: int = 1) -> None:
        self.port = port
        self.written = {gen}  # configuration numbers written so far
        self.floor = gen  # the newest configuration seen served everywhere
        self.www = {"127.0.0.1", "127.0.0.2"}
        self.sent = self.lost = 0
        self.wrong: list[str] = []
        self.seen: list[tuple[float, str, str, frozenset[str]]] = []  # time, nsid, name, rdata
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=(i,)) for i in range(threads)]

    def start(self) -> Checker:
        for thread in self.threads:
            thread.start()
        return self

    def stop(self) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join()

    def _loop(self, index: int) -> None:
        turn = index
        while not self.done.is_set():
            name = NAMES[turn % len(NAMES)]
            turn += 1
            floor = self.floor
            rdtype = "TXT" if name == "gen" else "A"
            try:
                nsid, rcode, rdata = ask(self.port, f"{name}.bench.test", rdtype)
            except dns.exception.Timeout:
                self.sent += 1
                self.lost += 1
                continue
            self.sent += 1
            self.seen.append((time.monotonic(), nsid, name, rdata))
            problem = self._judge(name, rcode, rdata, floor)
            if problem:
                self.wrong.append(f"{name}: {problem}")

    def _judge(self, name: str, rcode: int, rdata: frozenset[str], floor: int) -> str:
        if rcode != dns.rcode.NOERROR:
            return dns.rcode.to_text(rcode)
        if name == "static":
            return "" if rdata == {"192.0.2.1"} else f"{sorted(rdata)}"
        if name == "www":
            return "" if rdata and rdata <= {"127.0.0.1", "127.0.0.2"} else f"{sorted(rdata)}"
        numbers = {int(r.strip('"').removeprefix("gen-")) for r in rdata}
        if len(numbers) != 1 or not numbers <= self.written or min(numbers) < floor:
            return f"{sorted(rdata)} (written {sorted(self.written)}, served {floor})"
        return ""


def ask(port: int, name: str, rdtype: str) -> tuple[str, int, frozenset[str]]:
    """One query from a new socket, with DO=1 and NSID: (nsid, rcode, rdata of the type)."""
    query = dns.message.make_query(name, rdtype, want_dnssec=True,
                                   options=[dns.edns.GenericOption(dns.edns.NSID, b"")])
    query.flags &= ~0x0100
    response = dns.query.udp(query, HOST, port=port, timeout=2.0)
    nsid = next((getattr(o, "nsid", getattr(o, "data", b"")) for o in response.options
                 if o.otype == dns.edns.NSID), b"")
    rdata = frozenset(rd.to_text() for rrset in response.answer
                      if rrset.rdtype == dns.rdatatype.from_text(rdtype) for rd in rrset)
    return nsid.decode(errors="replace"), response.rcode(), rdata


def config(port: int, backend: int, key: Path, state: Path, *, gen: int, responders: int,
           nsid: str) -> str:
    return textwrap.dedent(f"""
        [server]
        listen = ["{HOST}:{port}"]
        responders = {responders}
        nsid = "{nsid}"
        warm_start_max_age = 10.0

        [control]
        token = "{TOKEN}"
        state_file = "{state}"

        [[zones]]
        origin = "bench.test"
        nameservers = ["ns1.bench.test"]

        [zones.dnssec]
        algorithm = "ED25519"
        csk = "{key}"

        [zones.records.ns1]
        a = ["192.0.2.53"]

        [zones.records.www]
        ttl = 5
        pool = {{ addresses = ["127.0.0.1", "127.0.0.2"], check = {{ port = {backend}, interval = {INTERVAL}, timeout = {TIMEOUT}, rise = 1, fall = 1 }} }}

        [zones.records.gen]
        txt = ['"gen-{gen}"']

        [zones.records.static]
        a = ["192.0.2.1"]
    """)


def dnsperf(port: int, queries: Path, out: Path, rate: float | None,
            seconds: float) -> subprocess.Popen[bytes]:
    argv = ["dnsperf", "-s", HOST, "-p", str(port), "-d", str(queries), "-D", "-l",
            f"{seconds:g}", "-c", "8", "-T", "2", "-q", "500"]
    if rate is not None:
        argv += ["-Q", str(int(rate))]
    return subprocess.Popen(argv, stdout=out.open("wb"), stderr=subprocess.STDOUT)


def finish(perf: subprocess.Popen[bytes], out: Path, interrupt: bool = True) -> dict[str, Any]:
    if interrupt and perf.poll() is None:
        perf.send_signal(signal.SIGINT)  # dnsperf prints its statistics when interrupted
    perf.wait(60)
    stats = parse_dnsperf(out.read_text(errors="replace"))
    stats["answered_pct"] = 100.0 * stats["completed"] / max(1, stats["sent"])
    return stats


def wait_served(checker: Checker, port: int, gen: int, timeout: float = 15.0) -> None:
    """Until 20 answers in a row (each from a new socket) name configuration `gen`."""
    deadline, streak = time.monotonic() + timeout, 0
    while streak < 20:
        if time.monotonic() > deadline:
            raise BenchError(f"configuration {gen} not served within {timeout} s")
        try:
            streak = streak + 1 if ask(port, "gen.bench.test", "TXT")[2] == {f'"gen-{gen}"'} \
                else 0
        except dns.exception.Timeout:
            streak = 0
    checker.floor = gen


def reloads(server: Supervisor, checker: Checker, write: Any, port: int,
            measure: Callable[[str], Callable[[], dict[str, Any]]]) -> dict[str, Any]:
    """The three kinds of reload, each under its own dnsperf run (`measure`)."""
    gen, responders, results = 1, 2, {"records": 0, "responders": 0, "failed": 0}
    done = measure("records")
    for _ in range(10):  # records
        gen += 1
        checker.written.add(gen)
        write(gen=gen, responders=responders)
        assert server.reload()[0] == 200
        wait_served(checker, port, gen)
        results["records"] += 1
    results["records_dnsperf"] = done()
    done = measure("responders")
    for _ in range(10):  # the responder count: every responder is rolled each time
        exits = server.count("exited with code 0, replaced") + responders
        responders = 5 - responders
        write(gen=gen, responders=responders)
        mark = len(server.lines)
        assert server.reload()[0] == 200
        server.wait_for(f"responder{responders - 1} \\(pid \\d+\\) ready, taking over", 30, mark)
        deadline = time.monotonic() + 30
        while server.count("exited with code 0, replaced") < exits:
            if time.monotonic() > deadline:
                raise BenchError("old responders did not exit")
            time.sleep(0.05)
        results["responders"] += 1
    results["responders_dnsperf"] = done()
    done = measure("failed")
    for _ in range(10):  # fails validation: the file is not TOML
        write(gen=gen, responders=responders).write_text("[server\n")
        if server.reload()[0] == 422:
            results["failed"] += 1
        time.sleep(0.5)  # pacing: spread over the load
    results["failed_dnsperf"] = done()
    write(gen=gen, responders=responders)  # a valid file again, as it was
    return results


def first_answers(checker: Checker, nsid: str, count: int = 20) -> list[list[str]]:
    return [sorted(r) for _, n, name, r in checker.seen if n == nsid and name == "www"][:count]


def flip_follow(checker: Checker, flips: list[tuple[float, set[str]]], end: float) -> list[float]:
    """Per flip: seconds from the flip until the last answer that still showed the old state."""
    delays = []
    for i, (when, want) in enumerate(flips):
        until = flips[i + 1][0] if i + 1 < len(flips) else end
        stale = [t for t, _, name, r in list(checker.seen)
                 if name == "www" and when <= t < until and set(r) != want]
        delays.append(round(max(stale) - when, 3) if stale else 0.0)
    return delays


def flips(backend: Backend, checker: Checker, count: int, period: float) -> list[tuple[float, set[str]]]:
    done = []
    for i in range(count):
        if i % 2 == 0:
            backend.down()
            want = {"127.0.0.1"}
        else:
            backend.up()
            want = {"127.0.0.1", "127.0.0.2"}
        done.append((time.monotonic(), want))
        time.sleep(period)  # the experiment's pacing, not a readiness guess
    return done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--stop-seconds", type=float, default=30.0)
    args = p.parse_args(argv)
    command = healthdns_command(None)
    if command is None or which("dnsperf") is None:
        raise BenchError("needs healthdns-supervisor and dnsperf")
    from healthdns.signer import keys

    root = Path(tempfile.mkdtemp(prefix="bench-reload-"))
    key, state = root / "csk.pem", root / "state.json"
    keys.write(keys.generate(keys.Algorithm.ED25519), str(key))
    first, second = Backend("127.0.0.1"), Backend("127.0.0.2")
    second.close()
    second = Backend("127.0.0.2", first.port)
    first.up()
    second.up()
    port = free_port(set(), random.Random())
    files = {"old": root / "old.toml", "new": root / "new.toml"}

    def write(gen: int, responders: int, which: str = "old") -> Path:
        files[which].write_text(config(port, first.port, key, state, gen=gen,
                                       responders=responders, nsid=which))
        return files[which]

    queries = root / "queries.txt"
    queries.write_text("".join(f"{n}.bench.test {'TXT' if n == 'gen' else 'A'}\n"
                               for n in NAMES * 100))
    results: dict[str, Any] = {}
    old = Supervisor([command, "--config", str(write(1, 2)), "--control-listen", f"{HOST}:0"])
    new = None
    try:
        old.ready()
        top = finish(dnsperf(port, queries, root / "max.txt", None, 3), root / "max.txt",
                     interrupt=False)
        rate = top["qps"] / 2
        results["max_qps"], results["rate"] = top["qps"], rate
        print(f"maximum {top['qps']:.0f} q/s; loads at {rate:.0f} q/s", flush=True)

        # The same load with nothing changing: what the machine itself loses at this rate.
        results["baseline_dnsperf"] = finish(dnsperf(port, queries, root / "base.txt", rate, 10),
                                             root / "base.txt", interrupt=False)
        print(f"0. baseline: answered {results['baseline_dnsperf']['answered_pct']:.4f}%",
              flush=True)
        def measure(kind: str) -> Callable[[], dict[str, Any]]:
            # A fixed run that outlasts the reloads: interrupting dnsperf would count the
            # queries in flight at that moment as lost.
            out, started = root / f"{kind}.txt", time.monotonic()
            seconds = 40 if kind == "responders" else 12
            perf = dnsperf(port, queries, out, rate, seconds)

            def done() -> dict[str, Any]:
                if time.monotonic() - started > seconds:
                    raise BenchError(f"the {kind} reloads outlasted the {seconds} s load")
                return finish(perf, out, interrupt=False)
            return done

        checker = Checker(port).start()
        results["reloads"] = reloads(old, checker, write, port, measure)
        checker.stop()
        results["reloads_checker"] = {"sent": checker.sent, "lost": checker.lost,
                                      "wrong": len(checker.wrong), "examples": checker.wrong[:5]}
        for kind in ("records", "responders", "failed"):
            perf = results["reloads"][f"{kind}_dnsperf"]
            print(f"1. ten reloads ({kind}): {results['reloads'][kind]} done, dnsperf answered "
                  f"{perf['completed']} of {perf['sent']} ({perf['answered_pct']:.4f}%)",
                  flush=True)
        print("1. checker:", json.dumps(results["reloads_checker"]), flush=True)

        second.down()
        wait = time.monotonic() + 10
        while ask(port, "www.bench.test", "A")[2] != {"127.0.0.1"}:
            if time.monotonic() > wait:
                raise BenchError("127.0.0.2 not seen down")
        time.sleep(1.5)  # pacing: the old server writes its health once a second
        gen = int(next(iter(ask(port, "gen.bench.test", "TXT")[2])).strip('"').removeprefix("gen-"))
        checker = Checker(port, gen=gen).start()
        perf = dnsperf(port, queries, root / "restart.txt", rate, 12)
        started = time.monotonic()
        new = Supervisor([command, "--config", str(write(gen, 2, "new")), "--replace",
                          "--control-listen", f"{HOST}:0"]).ready()
        ready_after = time.monotonic() - started
        old.stop()
        results["restart_dnsperf"] = finish(perf, root / "restart.txt", interrupt=False)
        checker.stop()
        early = first_answers(checker, "new")
        results["restart"] = {
            "ready_after_s": round(ready_after, 2),
            "warm_start": any("warm start: serving" in line for line in new.lines),
            "first_new_answers_exclude_down": bool(early) and all(a == ["127.0.0.1"] for a in early),
            "first_new_answers": early[:5], "checker_lost": checker.lost,
            "checker_wrong": len(checker.wrong), "examples": checker.wrong[:5]}
        print("2. restart:", json.dumps(results["restart"]),
              f"answered {results['restart_dnsperf']['answered_pct']:.4f}%", flush=True)

        second.up()
        checker = Checker(port).start()
        base = flips(second, checker, 6, 3.0)
        victim = int(new.wait_for(r"responder1 started \(pid (\d+)\)", 1).group(1))
        os.kill(victim, signal.SIGSTOP)
        stopped_at = time.monotonic()
        during = flips(second, checker, int(args.stop_seconds // 3), 3.0)
        try:
            os.kill(victim, signal.SIGCONT)
        except ProcessLookupError:
            pass  # killed as hung, as it should be
        end = time.monotonic()
        checker.stop()
        results["stopped"] = {
            "flip_follow_s_all_running": flip_follow(checker, base, stopped_at),
            "flip_follow_s_one_stopped": flip_follow(checker, during, end),
            "hung_killed": new.count(rf"responder1 \(pid {victim}\) sent nothing"),
            "checker_lost": checker.lost, "checker_sent": checker.sent}
        print("3. stopped responder:", json.dumps(results["stopped"]), flush=True)
    finally:
        for server in (new, old):
            if server is not None:
                server.stop()
        first.close()
        second.close()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
