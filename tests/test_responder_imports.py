"""Memory (issue #12): a responder holds neither dnspython, nor cryptography, aiohttp or RE2.

Each costs every responder megabytes (bench/memory.py) and none is used on its path: the signer
renders, the prober checks, the supervisor validates.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.harness import Server

# What a spawned responder runs: `child.enter` imports its role's main module, `child.start`
# decodes its part of the configuration, the server loads a snapshot and answers a query.
RESPONDER_PATH = """
import sys, types
from healthdns.shared import child, config, messages, tables
from healthdns.responder import main
from healthdns.responder.query import Answerer
from healthdns.responder.table import Table
cfg = config.decode(config.encode(config.Config()))
answer = tables.Answer(0x8400, 0, 0, 0, b"")
zone = tables.ZoneTable(b"\\x07example\\x04test\\x00", {}, {}, answer, 1)
answerer = Answerer(cfg.server.udp_payload_size, cfg.server.nsid.encode())
answerer.table = Table(messages.Snapshot(1, [zone]), cfg.server.packet_cache)
query = bytes.fromhex("00010000000100000000000003777777076578616d706c6504746573740000010001")
assert answerer.answer(query, False)
loaded = sorted(name for name, module in sys.modules.items()
                if type(module) is types.ModuleType  # not a placeholder of shared/lazy.py
                and name.split(".")[0] in {"dns", "cryptography", "aiohttp", "re2", "_re2"}
                and name not in {"dns", "dns.version", "dns.rdtypes"})  # package stubs
print(" ".join(loaded))
"""


def test_responder_code_path_imports_none_of_them() -> None:
    done = subprocess.run([sys.executable, "-c", RESPONDER_PATH], capture_output=True,
                          text=True, check=False, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []


def test_spawned_responders_map_none_of_their_libraries() -> None:
    """The real processes: spawn re-runs the parent's main module in each child, which
    imported the whole supervisor; a library's shared objects show in /proc/PID/maps."""
    server = Server(["--demo", "--listen", "127.0.0.1:0", "--responders", "2"]).start()
    try:
        responders = [int(pid) for pid in
                      re.findall(r"responder\d started \(pid (\d+)\)", server.output())]
        assert len(responders) == 2
        for pid in responders:
            maps = Path(f"/proc/{pid}/maps").read_text()
            for library in ("/cryptography/", "/aiohttp/", "_re2."):
                assert library not in maps, f"responder {pid} maps {library}"
        found = re.search(r"signer started \(pid (\d+)\)", server.output())
        assert found is not None
        signer = int(found.group(1))
        assert "/cryptography/" in Path(f"/proc/{signer}/maps").read_text()  # the check works
    finally:
        assert server.stop() == 0
