"""A `healthdns-supervisor` on loopback whose output is followed line by line: its ready line
(the DNS address), its control endpoint and the pids of the children it starts."""

from __future__ import annotations

import queue
import re
import subprocess
import threading
import time

from harness import BenchError

READY = re.compile(r"ready: serving \d+ zone\(s\) on (\S+?):(\d+)[, ]")
CONTROL = re.compile(r"control: listening on ([^\s\"]+)")  # a text or a JSON line
STARTED = re.compile(r"(\S+) started \(pid (\d+)\)")


class Supervisor:
    """One supervisor process; the constructor returns once it says it is ready."""

    def __init__(self, argv: list[str], timeout: float) -> None:
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)
        self.lines: list[str] = []
        self.pids: dict[str, int] = {}  # child name (prober, responder0, ...) -> latest pid
        self.starts = 0  # children started, respawns included
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        try:
            ready = self.wait_for(READY, timeout)
        except BenchError:
            self.stop()
            raise
        self.host, self.port = ready.group(1).strip("[]"), int(ready.group(2))
        control = CONTROL.search(self.output())  # logged before the ready line
        self.control = control.group(1) if control else ""  # ADDR:PORT

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if found := STARTED.search(line):
                self.pids[found.group(1)] = int(found.group(2))
                self.starts += 1
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: re.Pattern[str] | str, timeout: float) -> re.Match[str]:
        """The first output line from now on that matches `pattern`."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise BenchError(f"no {regex.pattern!r} within {timeout} s:\n"
                                 f"{self.output()[-3000:]}") from None
            if line is None:
                raise BenchError(f"the supervisor exited:\n{self.output()[-3000:]}")
            if found := regex.search(line):
                return found

    def output(self) -> str:
        return "".join(self.lines)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
