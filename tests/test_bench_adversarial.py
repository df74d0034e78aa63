"""bench/adversarial.py at tiny sizes, so that it does not rot: every attack's clients run for
a short phase against one real server and do what they are for (the server's own answers to
them are tested elsewhere), the measurements come back whole, and the verdict and the report
read them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import need_tool
from harness import bench_module, supervisor_command

bench = bench_module("adversarial.py", "bench_adversarial")
TINY = ["--seconds", "0.5", "--names", "5", "--body-mib", "4", "--header-connections", "4",
        "--keepalive", "4", "--pollers", "2", "--strangers", "3", "--bursts", "3,2",
        "--unread", "4"]


def tiny_args(*more: str) -> Any:
    need_tool("kdig")
    return bench.parse_args([*TINY, "--supervisor", supervisor_command()[0], *more])


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    with bench.serving(tiny_args(), 5) as running:
        yield running


# What each attack's clients must have done in half a second against a server that holds.
DID = {
    "body": lambda f: f["body"]["connections"] >= 1 and "200" in f["body"]["codes"],
    "headers": lambda f: f["headers"]["connections"] >= 4 and "431" in f["headers"]["codes"],
    "idle": lambda f: "200" in f["keepalive"]["codes"] and "200" in f["pollers"]["codes"],
    "strangers": lambda f: set(f["strangers"]["rcodes"]) == {"5"},  # REFUSED
    "reload": lambda f: (f["reloads"]["requests"] >= 3
                         and f["reloads"]["codes"] == {"200": f["reloads"]["requests"]}),
    "unread": lambda f: f["unread"]["connections_opened"] >= 4 and f["unread"]["kib_sent"] > 0,
}


@pytest.mark.parametrize("attack", bench.ATTACKS, ids=lambda a: a.name)
def test_each_attack_runs_beside_the_probe_and_the_secondary(server: Any, attack: Any) -> None:
    figures = bench.phase(server, attack, tiny_args())
    assert DID[attack.name](figures), figures
    assert figures["probe"]["count"] >= 2 and figures["axfr"]["count"] >= 1, figures
    assert figures["axfr"]["whole"] == figures["axfr"]["count"], figures
    assert set(figures["memory"]) >= {"supervisor_growth_mib", "responders_growth_mib"}
    assert figures["memory"]["responders_mib_at_start"] > 0  # both responders were found
    assert figures["exit"] is None


def quiet_figures(**changes: Any) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "probe": {"count": 10, "failed": 0, "failed_in_a_row": 0, "p50_ms": 1.0,
                  "p99_ms": 2.0, "max_ms": 3.0, "codes": {"200": 10}},
        "axfr": {"count": 2, "whole": 2, "share": 1.0, "median_s": 0.1},
        "memory": {"supervisor_mib_at_start": 30.0, "supervisor_growth_mib": 0.5,
                   "responders_mib_at_start": 40.0, "responders_growth_mib": 50.0},
        "restarts": 0, "exit": None}
    for path, value in changes.items():
        section, _, key = path.partition("__")
        if key:
            figures[section][key] = value
        else:
            figures[section] = value
    return figures


@pytest.mark.parametrize(("changes", "missed"), [
    ({}, ""),
    ({"probe__failed": 1}, "1 of 10 probes not answered 2xx within 1 s"),
    ({"probe__count": 0}, "0 of 0 probes"),
    ({"axfr__whole": 1}, "1 of 2 AXFRs failed"),
    ({"axfr__count": 0, "axfr__whole": 0}, "0 of 0 AXFRs failed"),
    ({"memory__supervisor_growth_mib": 50.1}, "supervisor RSS grew 50.1 MiB"),
    ({"memory__responders_growth_mib": 300.0}, "responders RSS grew 300.0 MiB"),
    ({"exit": 70}, "the supervisor exited (70)"),
])
def test_the_verdict_names_each_target_missed(changes: dict[str, Any], missed: str) -> None:
    found = bench.verdict(quiet_figures(**changes))
    assert (found == []) if not missed else (len(found) == 1 and missed in found[0])


def test_the_probes_failed_in_a_row_are_counted() -> None:
    figures = bench.probe_figures([(0.001, 200), (1.0, 0), (1.0, 0), (0.002, 200), (0.5, 503),
                                   (0.001, 200)])
    assert (figures["failed"], figures["failed_in_a_row"]) == (3, 2)
    assert figures["codes"] == {"200": 3, "0": 2, "503": 1}


def test_the_command_line_runs_an_attack_and_writes_its_figures(tmp_path: Path,
                                                                capsys: Any) -> None:
    out = tmp_path / "figures.json"
    assert bench.main([*TINY, "--supervisor", supervisor_command()[0], "--attacks", "reload",
                       "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "item 6 (reload)" in printed and "targets: met" in printed
    result = json.loads(out.read_text())["results"][0]
    assert result["attack"] == "reload" and result["missed"] == []
    assert result["quiet"]["probe"]["count"] >= 2
