"""Memory (issue #12): a prober loads aiohttp (10 MiB) only once it makes an HTTP check.

A prober with TCP checks only, or none, never needs it; the first HTTP check loads it.
"""

from __future__ import annotations

import subprocess
import sys

PROBER = """
import asyncio, socket, sys, types
from healthdns.prober import main
from healthdns.prober import checks
from healthdns.shared.config import CheckSpec

def loaded():
    return any(type(m) is types.ModuleType for n, m in sys.modules.items()
               if n.split(".")[0] == "aiohttp")

closed = socket.socket()
closed.bind(("127.0.0.1", 0))  # bound, not listening: a connection is refused at once
port = closed.getsockname()[1]
print(loaded())
print(asyncio.run(checks.probe("127.0.0.1", CheckSpec(kind="tcp", port=port, timeout=1.0)))[0])
print(loaded())
print(asyncio.run(checks.probe("127.0.0.1", CheckSpec(kind="http", port=port, timeout=1.0)))[0])
print(loaded())
"""


def test_aiohttp_is_loaded_by_the_first_http_check_only() -> None:
    done = subprocess.run([sys.executable, "-c", PROBER], capture_output=True, text=True,
                          check=False, timeout=30)
    assert done.returncode == 0, done.stderr
    # not loaded; the TCP check fails (refused) without it; the HTTP check fails and loads it
    assert done.stdout.split() == ["False", "False", "False", "False", "True"]


FIRST_HTTP_CHECK = """
import asyncio, http.server, sys, threading
from healthdns.prober import checks
from healthdns.shared.config import CheckSpec

class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass

httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
threading.Thread(target=httpd.serve_forever, daemon=True).start()
spec = CheckSpec(kind="http", port=httpd.server_address[1], timeout=float(sys.argv[1]))
print(*asyncio.run(checks.probe("127.0.0.1", spec)))
"""
IMPORT_TIME = "import time; t = time.perf_counter(); import aiohttp; print(time.perf_counter() - t)"


def test_loading_aiohttp_does_not_count_in_the_first_checks_timeout() -> None:
    """A prober's first HTTP check loads aiohttp; that load happened inside the check's
    timeout, so a healthy backend failed its first check when the timeout was shorter than
    the import (a busy machine, a short interval): its pool started empty."""
    took = subprocess.run([sys.executable, "-c", IMPORT_TIME], capture_output=True, text=True,
                          check=True, timeout=30)
    timeout = max(float(took.stdout) / 2, 0.05)  # shorter than the import, ample on loopback
    done = subprocess.run([sys.executable, "-c", FIRST_HTTP_CHECK, str(timeout)],
                          capture_output=True, text=True, check=False, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "status", "200"], (timeout, done.stdout)
