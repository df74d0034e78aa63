"""What `Steering` hands the control endpoint: views kept up to date as reports and overrides
change, against a model worked out from scratch at every step, and what a view costs.

At 20,000 targets, building every view anew (a `TargetState` per target, each second) held the
supervisor's loop for 43% of its GIL time and pushed `/healthz` past 300 ms on a quiet server;
a view now costs what changed since the last one.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import Future
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthdns.shared import config, messages
from healthdns.supervisor import readout, steering, views
from healthdns.supervisor.control import Request
from healthdns.supervisor.counters import Counters
from healthdns.supervisor.overrides import Override
from healthdns.supervisor.steering import Child, Steering

CHILDREN = [Child(0, "running", 10)]
BUCKETS = len(messages.PROBE_BUCKETS) + 1


def pooled(names: int) -> config.Config:
    return config.from_mapping({"zones": [{
        "origin": "example.test", "nameservers": ["ns1.example.net"],
        "records": {f"n{i}": {"pool": {"addresses": [f"127.31.{i // 250}.{i % 250 + 1}"],
                                       "check": {"port": 9}}} for i in range(names)}}]})


# Five targets: www's three, api's one (a check at another address judges both of its
# addresses), and mail shares www's first target.
SMALL = config.from_mapping({"zones": [{
    "origin": "example.test", "nameservers": ["ns1.example.net"],
    "records": {
        "www": {"pool": {"addresses": ["192.0.2.1", "192.0.2.2", "192.0.2.3"],
                         "check": {"port": 80}}},
        "api": {"pool": {"addresses": ["192.0.2.4", "192.0.2.5"],
                         "check": {"port": 80, "address": "192.0.2.9"}}},
        "mail": {"pool": {"addresses": ["192.0.2.1", "192.0.2.6"], "check": {"port": 80}}},
    }}]})
ADDRESSES = ("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5", "192.0.2.6")


def made(cfg: config.Config) -> Steering:
    return Steering(cfg, views.split(cfg, b"k" * 32).signer_ids)


def probe(target: str, checks: int) -> messages.Probe:
    return messages.Probe(target, "refused", [checks] + [0] * (BUCKETS - 1), 0.01 * checks,
                          {"refused": checks})


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts the per-target objects `Steering` builds."""
    counts: Counter[str] = Counter()
    real = readout.TargetState

    def counted(*args: Any) -> readout.TargetState:
        counts["TargetState"] += 1
        return real(*args)

    monkeypatch.setattr(readout, "TargetState", counted)
    return counts


def test_a_view_costs_what_changed_not_what_is_configured(built: Counter[str]) -> None:
    s = made(pooled(2000))
    targets = list(s.targets)
    s.report(dict.fromkeys(targets, False), True)
    s.detail([probe(t, 1) for t in targets])
    first = s.readout(1, CHILDREN, Counters(False), 0.0)
    assert len(first.targets) == len(first.probes) == 2000
    built.clear()

    quiet = s.readout(1, CHILDREN, Counters(False), 1.0)  # a responder's counters came, only
    assert built["TargetState"] == 0
    assert quiet.targets is first.targets and quiet.probes is first.probes

    s.report({targets[7]: True}, False)
    s.detail([probe(targets[8], 2)])
    changed = s.readout(1, CHILDREN, Counters(False), 2.0)
    assert built["TargetState"] == 1
    assert changed.targets[targets[7]].up and not first.targets[targets[7]].up
    assert changed.probes[targets[8]].buckets[0] == 2 and first.probes[targets[8]].buckets[0] == 1
    assert changed.targets[targets[9]] is first.targets[targets[9]]  # shared, not rebuilt

    built.clear()
    s.report(dict.fromkeys(targets, False) | {targets[7]: True}, True)  # the same, whole
    assert s.readout(1, CHILDREN, Counters(False), 3.0).targets is changed.targets
    assert built["TargetState"] == 0

    address = s.targets[targets[3]].served[0]
    request = Request("set", {"address": address, "action": "drain"}, Future())
    assert s.apply(request)["action"] == "drain"
    drained = s.readout(1, CHILDREN, Counters(False), 4.0)
    assert built["TargetState"] == 1
    assert drained.targets[targets[3]].override == "drain"
    assert changed.targets[targets[3]].override is None


# --- the model ------------------------------------------------------------------------------------


class Model:
    """What a view shows, worked out from scratch from every event so far."""

    def __init__(self, s: Steering) -> None:
        self.served = {t: row.served for t, row in s.targets.items()}
        self.probed: dict[str, bool] = {}
        self.since: dict[str, float] = {}
        self.changes: Counter[str] = Counter()
        self.held: dict[str, str] = {}
        self.gone: dict[str, list[int]] = {}  # ended probers' checks per bucket
        self.live: dict[str, list[int]] = {}

    def report(self, states: dict[str, bool], full: bool, now: float) -> None:
        for target, up in states.items():
            if self.probed.get(target) != up:
                self.since[target] = now
                self.changes[target] += target in self.probed
        self.probed = dict(states) if full else {**self.probed, **states}

    def targets(self) -> dict[str, readout.TargetState]:
        out = {}
        for target, up in self.probed.items():
            actions = {self.held[a] for a in self.served[target] if a in self.held}
            action = "drain" if "drain" in actions else ("force" if actions else None)
            out[target] = readout.TargetState(
                up, False if action == "drain" else up or action == "force",
                self.since.get(target), self.changes[target], action)
        return out

    def buckets(self) -> dict[str, list[int]]:
        every = self.gone.keys() | self.live.keys()
        return {t: [a + b for a, b in zip(self.gone.get(t, [0] * BUCKETS),
                                          self.live.get(t, [0] * BUCKETS), strict=True)]
                for t in every}


TARGETS = sorted(made(SMALL).targets)
events = st.lists(st.one_of(
    st.tuples(st.just("report"), st.dictionaries(st.sampled_from(TARGETS), st.booleans()),
              st.booleans()),
    st.tuples(st.just("set"), st.sampled_from(ADDRESSES), st.sampled_from(("drain", "force"))),
    st.tuples(st.just("remove"), st.sampled_from(ADDRESSES), st.none()),
    st.tuples(st.just("expire"), st.sampled_from(ADDRESSES), st.none()),
    st.tuples(st.just("detail"), st.lists(st.sampled_from(TARGETS), unique=True), st.none()),
    st.tuples(st.just("prober ended"), st.none(), st.none()),
    st.tuples(st.just("view"), st.none(), st.none()),
), max_size=40)


@settings(max_examples=200, deadline=None)
@given(events)
def test_views_follow_the_model_and_never_change_once_handed(
        schedule: list[tuple[str, Any, Any]]) -> None:
    s = made(SMALL)
    model = Model(s)
    clock = [1000.0]
    handed: list[tuple[readout.Readout, dict[str, readout.TargetState], dict[str, list[int]]]] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(steering.time, "time", lambda: clock[0])
        for op, what, how in schedule:
            clock[0] += 1.0
            if op == "report" and (what or how):
                s.report(what, how)
                model.report(what, how, clock[0])
            elif op == "set":
                s.overrides.set(Override(address=what, action=how, expires=clock[0] + 5), clock[0])
                model.held[what] = how
            elif op == "remove" and s.overrides.remove(what):
                model.held.pop(what)
            elif op == "expire":  # every override set 5 s ago or more ends now
                clock[0] += 5.0
                s.expire()
                model.held.clear()
            elif op == "detail" and what:
                checks = {t: model.live.get(t, [0] * BUCKETS)[0] + 1 for t in what}
                assert s.detail([probe(t, n) for t, n in checks.items()]) is None
                for t, n in checks.items():
                    model.live[t] = [n] + [0] * (BUCKETS - 1)
            elif op == "prober ended":
                s.prober_ended()
                model.gone, model.live = model.buckets(), {}
            if op != "view":  # views come between some events, not all
                continue
            view = s.readout(1, CHILDREN, Counters(False), clock[0])
            assert view.targets == model.targets()
            assert {t: list(p.buckets) for t, p in view.probes.items()} == model.buckets()
            handed.append((view, dict(view.targets),
                           {t: list(p.buckets) for t, p in view.probes.items()}))
        view = s.readout(1, CHILDREN, Counters(False), clock[0])
        assert view.targets == model.targets()
        assert {t: list(p.buckets) for t, p in view.probes.items()} == model.buckets()
    for view, targets, buckets in handed:
        assert view.targets == targets
        assert {t: list(p.buckets) for t, p in view.probes.items()} == buckets
