"""bench/transfer.py's method for the cost of transfers to queries (issue #11): runs with a
puller interleaved with alone runs, each compared with its neighbours, so that a host whose
speed drifts does not decide the ratio."""

from __future__ import annotations

import pytest
from harness import bench_module
from hypothesis import given
from hypothesis import strategies as st

bench = bench_module("transfer.py", "bench_transfer")
PULLERS = st.lists(st.sampled_from(["kdig", "python"]), min_size=1, max_size=2, unique=True)


@given(pullers=PULLERS, rounds=st.integers(1, 8))
def test_every_run_with_a_puller_is_between_two_alone_runs(pullers: list[str],
                                                           rounds: int) -> None:
    order = bench.schedule(pullers, rounds)
    assert order[0] == order[-1] == "alone"
    assert all(order[i - 1] == order[i + 1] == "alone"
               for i, kind in enumerate(order) if kind != "alone")
    assert {kind: order.count(kind) for kind in pullers} == dict.fromkeys(pullers, rounds)


# The host's speed at the first and at the last run: it drifts steadily between the two (any
# rate a host can have: a bench whose server answers nothing fails, see below).
SPEEDS = st.floats(1_000, 200_000)


@given(pullers=PULLERS, rounds=st.integers(1, 8), start=SPEEDS, end=SPEEDS,
       cost=st.floats(0.5, 1.0))
def test_a_steady_drift_of_the_host_cancels_out(pullers: list[str], rounds: int, start: float,
                                                end: float, cost: float) -> None:
    """A host whose speed changes by the same q/s every run, from `start` to `end`, and a
    puller that costs queries `cost` of it: each paired ratio is `cost`, however large the
    drift (a ratio of the medians of all alone and all pulled runs is not, once the drift is
    large)."""
    order = bench.schedule(pullers, rounds)
    drift = (end - start) / (len(order) - 1)
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


@given(pullers=PULLERS, rounds=st.integers(1, 6), start=SPEEDS, end=SPEEDS,
       knot_speed=st.floats(0.5, 2.0), costs=st.tuples(st.floats(0.5, 1.0), st.floats(0.5, 1.0)))
def test_a_drift_shared_by_both_servers_cancels_out_for_each(
        pullers: list[str], rounds: int, start: float, end: float, knot_speed: float,
        costs: tuple[float, float]) -> None:
    """The host's speed drifts steadily from `start` to `end` over the runs, whichever server
    runs; Knot is `knot_speed` times as fast; a puller costs each server its own share. Each
    server's paired ratios, taken over its own runs, are its own cost: interleaving keeps each
    run with a puller midway between its two alone runs."""
    order = bench.schedule(pullers, rounds)
    steps = bench.interleave(order, ["healthdns", "knot"])
    drift = (end - start) / (len(steps) - 1)
    speed = {"healthdns": 1.0, "knot": knot_speed}
    cost = dict(zip(["healthdns", "knot"], costs, strict=True))
    qps: dict[str, list[float]] = {"healthdns": [], "knot": []}
    for i, (server, kind) in enumerate(steps):
        qps[server].append((start + drift * i) * speed[server]
                           * (1.0 if kind == "alone" else cost[server]))
    for server, runs in qps.items():
        for kind in pullers:
            ratios = bench.paired_ratios(order, runs, kind)
            assert len(ratios) == rounds
            assert all(abs(ratio - cost[server]) < 1e-9 for ratio in ratios)


@given(pullers=PULLERS, rounds=st.integers(1, 6), which=st.integers(0, 100))
def test_alone_runs_that_answered_nothing_give_no_ratio(pullers: list[str], rounds: int,
                                                       which: int) -> None:
    """A server that answered no query in the alone runs either side of a run with a puller
    (it stopped answering): the bench fails and says so, never divides by zero nor reports a
    ratio. A run with a puller that answered nothing is a ratio of 0: the puller starved it."""
    order = bench.schedule(pullers, rounds)
    pulled = [i for i, kind in enumerate(order) if kind != "alone"]
    i = pulled[which % len(pulled)]
    qps = [50_000.0] * len(order)
    qps[i] = 0.0
    assert 0.0 in bench.paired_ratios(order, qps, order[i])
    qps[i - 1] = qps[i + 1] = qps[i] = 0.0
    with pytest.raises(bench.BenchError, match="stopped answering, so no ratio"):
        bench.paired_ratios(order, qps, order[i])
