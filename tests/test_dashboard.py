"""docs/grafana-dashboard.json: every metric any panel (or variable) asks Prometheus for is one
a real supervisor exposes, with a series, so that no panel shows "No data" for a name that does
not exist; and it has the panels operations.md tells an operator to watch.

The supervisor runs with a transfer process (transfer and NOTIFY counters), a backend that is
down (check failures by reason) and a health change (publish time), and answers a query.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Backend, Server
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
# PromQL's functions, aggregations and keywords (the words that are not metric names).
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "rate", "irate", "increase", "delta", "idelta",
    "deriv", "histogram_quantile", "abs", "absent", "clamp_min", "clamp_max", "label_replace",
    "sort", "sort_desc", "time", "vector", "scalar", "max_over_time", "min_over_time",
    "avg_over_time", "sum_over_time", "changes", "resets", "label_values", "inf", "nan",
}


def expressions() -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable."""
    for panel in DASHBOARD["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in DASHBOARD["templating"]["list"]:
        if variable.get("type") == "query":
            yield f"variable {variable['name']}", variable["query"]


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: strings, label matchers, ranges, grouping
    labels and the label argument of label_values() taken out, then what is not a word of
    PromQL."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\blabel_values\(\s*([\w:]+)\s*,\s*\w+\s*\)", r" \1 ", text)
    words = set(re.findall(r"(?<![\w.$])[A-Za-z_:][\w:]*", text))
    return {w for w in words if w.lower() not in PROMQL_WORDS}


def test_metric_names_are_found_in_expressions() -> None:
    """The extraction itself, on the kinds of expression the dashboard uses."""
    assert metric_names('histogram_quantile(0.99, sum by (le) (rate(a_bucket{job="$job", '
                        'x=~"by|rate"}[$__rate_interval])))') == {"a_bucket"}
    assert metric_names("label_values(b_info{job=\"$job\"}, instance)") == {"b_info"}
    assert metric_names("label_values(b_info, job)") == {"b_info"}
    assert metric_names("max by (instance, responder) (c) > 5 or vector(0)") == {"c"}
    assert metric_names("up{job=\"x\"} == 0") == {"up"}


def config(port: int) -> str:
    return f"""
        [server]
        listen = ["127.0.0.1:0"]
        responders = 1

        [transfer]
        listen = ["127.0.0.1:0"]
        notify_source = "127.0.0.1"
        notify_timeout = 0.1
        notify_retries = 1
        secondaries = [{{ address = "127.0.0.1:9" }}]
        allow = [{{ networks = ["127.0.0.0/8"] }}]
        require_tsig = false

        [[zones]]
        origin = "example.test"
        nameservers = ["ns1.example.net"]

        [zones.records.www]
        pool = {{ addresses = ["127.0.0.1", "127.0.0.2"], check = {{ port = {port}, interval = 0.2, timeout = 0.1, fall = 1, rise = 1 }} }}
    """


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    up = Backend("127.0.0.1")
    down = Backend("127.0.0.2", up.port)  # bound, not listening: its checks fail
    up.up()
    server = Server([], tmp_path_factory.mktemp("dashboard"), config(up.port)).start()
    try:
        yield server
    finally:
        server.stop()
        up.close()
        down.close()


def exposed(server: Server) -> tuple[set[str], set[str]]:
    """The metric names /metrics declares now (as PromQL names them), and those with a
    series."""
    with urllib.request.urlopen(server.control + "/metrics", timeout=5) as response:
        text = response.read().decode()
    families = list(text_string_to_metric_families(text))
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
                "info": ("_info",)}
    declared = {f.name + suffix for f in families for suffix in suffixes.get(f.type, ("",))}
    return declared, {s.name for f in families for s in f.samples}


def test_every_metric_of_the_dashboard_exists_and_counters_have_series(server: Server) -> None:
    """A gauge may have no series while nothing holds (no override in force: an empty
    table); a counter always has one, from 0."""
    wanted: dict[str, list[str]] = {}
    for where, expr in expressions():
        for name in metric_names(expr):
            wanted.setdefault(name, []).append(where)
    assert len(wanted) >= 20
    server.query("www.example.test")
    deadline, missing = time.monotonic() + 20, dict(wanted)
    while missing and time.monotonic() < deadline:  # responders report once a second
        declared, sampled = exposed(server)
        missing = {n: w for n, w in wanted.items() if n not in declared
                   or (n.endswith("_total") and n not in sampled)}
        time.sleep(0.2)  # polling period, not a readiness guess
    assert missing == {}, f"panels ask for metrics /metrics does not have: {missing}"


def test_counters_start_at_zero(server: Server) -> None:
    """Nothing restarted, hung, reloaded or transferred yet: each counter a panel shows is 0,
    not absent ("No data")."""
    with urllib.request.urlopen(server.control + "/metrics", timeout=5) as response:
        text = response.read().decode()
    found = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for family in text_string_to_metric_families(text) for s in family.samples}
    for role in ("prober", "signer", "responder", "transfer"):
        assert found[("healthdns_child_restarts_total", (("role", role),))] == 0
        assert found[("healthdns_protocol_rejections_total", (("role", role),))] == 0
    assert found[("healthdns_reload_failures_total", ())] == 0
    for kind in ("axfr", "ixfr", "fallback", "refused"):
        assert found[("healthdns_transfers_total", (("kind", kind),))] == 0


def panel_metrics() -> dict[str, set[str]]:
    return {panel["title"]: set().union(*(metric_names(t["expr"]) for t in panel["targets"]))
            for panel in DASHBOARD["panels"] if panel.get("targets")}


@pytest.mark.parametrize("metric", [
    "healthdns_reload_failures_total", "healthdns_child_hung_total",
    "healthdns_responder_stats_age_seconds", "healthdns_transfers_total",
    "healthdns_notifies_total", "healthdns_record_all_down",
    "healthdns_child_restarts_total",
])
def test_a_panel_shows_what_operations_md_says_to_watch(metric: str) -> None:
    assert any(metric in names for names in panel_metrics().values()), metric


def test_the_alerts_of_operations_md_have_panels() -> None:
    operations = (ROOT / "docs" / "operations.md").read_text()
    alerts = operations.split("Useful alerts:", 1)[1].split("\n\n", 1)[0]
    shown = set().union(*panel_metrics().values())
    for expr in re.findall(r"`([^`]+)`", alerts):
        for name in metric_names(expr) - {"up"}:  # Prometheus's own
            assert name in shown, f"{expr}: no panel shows {name}"




def test_panels_do_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in DASHBOARD["panels"]:
        g = panel["gridPos"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, panel["title"]
        assert g["x"] + g["w"] <= 24
        cells |= mine
    assert len({p["id"] for p in DASHBOARD["panels"]}) == len(DASHBOARD["panels"])
