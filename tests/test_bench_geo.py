"""bench/geo.py in its quick mode, so that it does not rot: every measurement runs against real
servers at tiny sizes and comes back whole and sane (the figures themselves are the script's
full run, quoted in bench/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import need_tool
from harness import bench_module, supervisor_command

bench = bench_module("geo.py", "bench_geo")


def test_the_quick_mode_measures_everything(tmp_path: Path) -> None:
    for tool in ("gdnsd", "dnsperf", "unbound"):
        need_tool(tool)
    out = tmp_path / "geo.json"
    assert bench.main(["--quick", "--healthdns", supervisor_command()[0],
                       "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["agreement"]["clients"] >= 1000  # healthdns and gdnsd answered alike
    assert len(report["agreement"]["sites"]) >= 3
    row = report["unpinned"]
    assert set(row["median"]) == set(bench.LABELS)
    assert all(qps > 0 for qps in row["median"].values())
    assert not row["bad_rcodes"]
    load = report["load"]
    assert load["geo_responder"]["responders"] == load["plain_responder"]["responders"] >= 1
    assert 0 < load["geo_start_s"] < 60
    failover = report["failover"]
    assert all(failover[label]["max"] < 30 for label in (bench.GEO, bench.GDNSD))
    unbound = report["unbound"]
    # Every block of the second map is a /24 like the clients' prefixes: no answer can be
    # shared between two clients, so every first query of a (name, client) reaches healthdns.
    assert unbound["source_length"]["scopes_seen"] == {"24": unbound["queries"]}
    assert unbound["source_length"]["upstream"] >= unbound["clients"] * unbound["names"]
    assert unbound["merged"]["upstream"] < unbound["source_length"]["upstream"]
