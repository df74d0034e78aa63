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
