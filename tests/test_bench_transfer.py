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
