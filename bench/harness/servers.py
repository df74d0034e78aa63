"""One server process: ports, starting it until it answers, stopping it, its processes."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import HOST, REPO, BenchError, log
from harness.procfs import alive, children, cmdline, rss_kib
from harness.zone import BASE_A, ZONE


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

