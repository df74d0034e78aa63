"""Memory (issue #12): the running supervisor holds neither dnspython nor idna.

Together they cost the supervisor about 4.7 MiB (bench/memory.py). The configuration arrives
checked and normalised from supervisor/validate.py's process, so the supervisor handles names
as text: the status page, the metrics and the control API show what dnspython's parsing did
(tests/test_status_names.py compares the two).

Pure-Python modules leave no trace in /proc/PID/maps, so the supervisor reports its own
modules when it exits, after serving queries, /status and /metrics.
"""

from __future__ import annotations

import sys
from pathlib import Path

import harness
import pytest
from harness import Backend, Server
from test_control import TOKEN, call, config, get, total, wait

# The supervisor's entry point, with a report of the dnspython and idna modules it loaded
# (package stubs that `shared/lazy.py` needs to find a module lazily are left out: a few KiB).
REPORTING_SUPERVISOR = """
import atexit, sys, types
def report() -> None:
    loaded = sorted(name for name, module in sys.modules.items()
                    if type(module) is types.ModuleType  # a lazy placeholder is not loaded
                    and name.split(".")[0] in {"dns", "idna"}
                    and name not in {"dns", "dns.version", "dns.rdtypes"})
    print("loaded modules:", " ".join(loaded) or "none", flush=True)
atexit.register(report)
from healthdns.supervisor.main import main
sys.exit(main())
"""


def test_the_running_supervisor_loads_no_dnspython_nor_idna(
        tmp_path: Path, backends: tuple[Backend, Backend],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "supervisor_command",
                        lambda: [sys.executable, "-c", REPORTING_SUPERVISOR])
    server = Server([], tmp_path, config(backends[0].port, tmp_path / "o.json")).start()
    try:
        server.query("static.example.test")
        server.query("www.example.test", "AAAA")
        server.query("nowhere.invalid")  # REFUSED: counted under no zone
        # Every path that names things: zone labels of the counters, names, answer types.
        wait(lambda: total(server, "healthdns_dns_requests_total",
                           {"zone": "example.test", "type": "AAAA"}) == 1, "queries counted")
        assert total(server, "healthdns_dns_requests_total", {"zone": "."}) == 1
        wait(lambda: any(n["answers"] for n in call(server, "GET", "/status")[1]["names"]),
             "the signer's choices shown")
        code, doc = call(server, "GET", "/status", token=TOKEN)
        assert code == 200
        www = next(n for n in doc["names"] if n["name"] == "www.example.test")
        assert {a["type"] for a in www["answers"]} == {"A"}
        assert get(server, "/metrics")[0] == 200
    finally:
        assert server.stop() == 0
    reported = server.wait_for(r"loaded modules: (.*)", 5.0).group(1)
    assert reported == "none"
