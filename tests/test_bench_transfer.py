"""bench/transfer.py's method for the cost of transfers to queries (issue #11): runs with a
puller interleaved with alone runs, each compared with its neighbours, so that a host whose
speed drifts does not decide the ratio."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from hypothesis import given
from hypothesis import strategies as st

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_transfer", BENCH / "transfer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # it puts bench/ on the path for its own `import run`
    sys.path.remove(str(BENCH))  # and no other test should import from there
    return module


bench = _bench()
PULLERS = st.lists(st.sampled_from(["kdig", "python"]), min_size=1, max_size=2, unique=True)


@given(pullers=PULLERS, rounds=st.integers(1, 8))
def test_every_run_with_a_puller_is_between_two_alone_runs(pullers: list[str],
                                                           rounds: int) -> None:
    order = bench.schedule(pullers, rounds)
    assert order[0] == order[-1] == "alone"
    assert all(order[i - 1] == order[i + 1] == "alone"
               for i, kind in enumerate(order) if kind != "alone")
    assert {kind: order.count(kind) for kind in pullers} == dict.fromkeys(pullers, rounds)


@given(pullers=PULLERS, rounds=st.integers(1, 8), start=st.floats(50_000, 200_000),
       drift=st.floats(-5_000, 5_000), cost=st.floats(0.5, 1.0))
def test_a_steady_drift_of_the_host_cancels_out(pullers: list[str], rounds: int, start: float,
                                                drift: float, cost: float) -> None:
    """A host whose speed changes by `drift` q/s every run, and a puller that costs queries
    `cost` of it: each paired ratio is `cost`, however large the drift (a ratio of the
    medians of all alone and all pulled runs is not, once the drift is large)."""
    order = bench.schedule(pullers, rounds)
    qps = [(start + drift * i) * (1.0 if kind == "alone" else cost)
           for i, kind in enumerate(order)]
    for kind in pullers:
        ratios = bench.paired_ratios(order, qps, kind)
        assert len(ratios) == rounds
        assert all(abs(ratio - cost) < 1e-9 for ratio in ratios)


SERVERS = st.sampled_from([["healthdns"], ["healthdns", "knot"]])


@given(pullers=PULLERS, rounds=st.integers(1, 6), servers=SERVERS)
def test_the_servers_take_turns_at_every_step(pullers: list[str], rounds: int,
                                              servers: list[str]) -> None:
    """healthdns alone, knot alone, healthdns with kdig, knot with kdig, ...: each server runs
    the whole schedule, and no two runs of one server come before the other's turn."""
    order = bench.schedule(pullers, rounds)
    steps = bench.interleave(order, servers)
    for server in servers:
        assert [kind for ran, kind in steps if ran == server] == order
    assert [ran for ran, _ in steps] == servers * len(order)


@given(pullers=PULLERS, rounds=st.integers(1, 6), start=st.floats(50_000, 200_000),
       drift=st.floats(-5_000, 5_000), knot_speed=st.floats(0.5, 2.0),
       costs=st.tuples(st.floats(0.5, 1.0), st.floats(0.5, 1.0)))
def test_a_drift_shared_by_both_servers_cancels_out_for_each(
        pullers: list[str], rounds: int, start: float, drift: float, knot_speed: float,
        costs: tuple[float, float]) -> None:
    """The host's speed drifts by `drift` q/s every run, whichever server runs; Knot is
    `knot_speed` times as fast; a puller costs each server its own share. Each server's paired
    ratios, taken over its own runs, are its own cost: interleaving keeps each run with a
    puller midway between its two alone runs."""
    order = bench.schedule(pullers, rounds)
    steps = bench.interleave(order, ["healthdns", "knot"])
    speed, cost = {"healthdns": 1.0, "knot": knot_speed}, dict(zip(["healthdns", "knot"], costs))
    qps: dict[str, list[float]] = {"healthdns": [], "knot": []}
    for i, (server, kind) in enumerate(steps):
        qps[server].append((start + drift * i) * speed[server]
                           * (1.0 if kind == "alone" else cost[server]))
    for server, runs in qps.items():
        for kind in pullers:
            ratios = bench.paired_ratios(order, runs, kind)
            assert len(ratios) == rounds
            assert all(abs(ratio - cost[server]) < 1e-9 for ratio in ratios)
