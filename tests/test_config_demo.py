"""The demo, as the README runs it: its backend (`python3 -m http.server`) stays quiet."""

from __future__ import annotations

import asyncio
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import msgspec

from healthdns.prober.checks import probe
from healthdns.supervisor import cli

CHECKS = 3


def test_the_demo_backend_sees_plain_requests_not_resets(tmp_path: Path) -> None:
    # A TCP check ends with a RST (right for ten thousand targets), which http.server prints
    # as a ConnectionResetError traceback once a second: the demo's check must close normally.
    cfg = cli.load(cli.parser().parse_args(["--demo"]))
    pool = cfg.zones[0].records["www"].pool
    assert pool is not None and pool.groups[0].check is not None
    backend = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    try:
        assert backend.stdout is not None and backend.stderr is not None
        ready = backend.stdout.readline()  # "Serving HTTP on 127.0.0.1 port N ..."
        port = int(ready.split(" port ")[1].split()[0])
        threading.Thread(target=_pump, args=(backend.stderr, lines), daemon=True).start()
        check = msgspec.structs.replace(pool.groups[0].check, port=port)
        for _ in range(CHECKS):
            assert asyncio.run(probe("127.0.0.1", check))[0]
        seen = _until(lines, lambda text: text.count('"GET / HTTP/1.1" 200') == CHECKS
                      or "Error" in text)
    finally:
        backend.terminate()
        backend.wait(10)
    assert "Traceback" not in seen and "ConnectionResetError" not in seen, seen
    assert seen.count('"GET / HTTP/1.1" 200') == CHECKS, seen


def _pump(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def _until(lines: queue.Queue[str], done: Callable[[str], bool], bound: float = 5.0) -> str:
    """The backend's log up to the line that makes `done` true (or all of it by `bound`)."""
    text, deadline = "", time.monotonic() + bound
    while not done(text) and time.monotonic() < deadline:
        try:
            text += lines.get(timeout=deadline - time.monotonic())
        except queue.Empty:
            break
    return text
