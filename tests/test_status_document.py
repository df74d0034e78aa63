"""Rendering /status: what it costs in memory at scale (stated against the document's own
size), and sections kept from one rendering to the next that never show what has changed since
(against a rendering from scratch, over random schedules of changes).

At 20,000 names the document is 17 MB; building it as Python dicts and lists, then as one
string, took 80 MiB (4.9 times the document), and 32 clients polling it grew the supervisor by
86 MiB. A rendering now holds little more than the document it makes.
"""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from healthdns.shared import config, messages
from healthdns.supervisor import catalog, status, views
from healthdns.supervisor.counters import Counters
from healthdns.supervisor.overrides import Override
from healthdns.supervisor.steering import Child, Steering

NAMES = 2000


def test_rendering_status_holds_little_more_than_the_document() -> None:
    cfg = config.from_mapping({"zones": [{
        "origin": "example.test", "nameservers": ["ns1.example.net"],
        "records": {f"n{i}": {"pool": {"addresses": [f"127.31.{i // 250}.{i % 250 + 1}"],
                                       "check": {"port": 9}}} for i in range(NAMES)}}]})
    steering = Steering(cfg, views.split(cfg, b"k" * 32).signer_ids)
    targets = list(steering.targets)
    steering.report(dict.fromkeys(targets, False), True)
    steering.detail([messages.Probe(t, "refused", [1] + [0] * len(messages.PROBE_BUCKETS),
                                    0.01, {"refused": 1}) for t in targets])
    steering.chosen([(f"n{i}.example.test", 1, -1, "all-down",
                      [f"127.31.{i // 250}.{i % 250 + 1}"]) for i in range(NAMES)], 0.1)
    view = steering.readout(1, [Child(0, "running", 10)], Counters(False), 0.0)
    known = catalog.make_catalog(cfg)
    status.Document().render(view, known)  # what is worked out once per configuration

    tracemalloc.start()
    try:
        pieces = status.Document().render(view, known)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    document = b"{" + b"".join(pieces)
    doc = json.loads(document)
    assert len(doc["targets"]) == len(doc["names"]) == NAMES and doc["overrides"] == []
    assert peak < 1.5 * len(document), (peak, len(document))


def test_a_section_is_rendered_again_only_when_what_it_shows_changed() -> None:
    steering = Steering(SMALL, views.split(SMALL, b"k" * 32).signer_ids)
    known = catalog.make_catalog(SMALL)
    targets = sorted(steering.targets)
    steering.report(dict.fromkeys(targets, True), True)
    document = status.Document()
    first = document.render(steering.readout(1, CHILDREN, Counters(False), 0.0), known)
    steering.detail([_probe(targets[0], 3)])  # a round of checks: the targets only
    second = document.render(steering.readout(1, CHILDREN, Counters(False), 1.0), known)
    assert second[1] is not first[1] and second[3] is first[3]
    steering.report({targets[0]: False}, False)  # health: both
    third = document.render(steering.readout(1, CHILDREN, Counters(False), 2.0), known)
    assert third[1] is not second[1] and third[3] is not second[3]


# Two zones, one below the other, an alias zone; a target that judges two names, a check that
# judges two addresses, groups with weights, a backup, a rotating answer.
SMALL = config.from_mapping({"zones": [
    {"origin": "example.test", "nameservers": ["ns1.example.net"], "aliases": ["example.alias"],
     "records": {
         "www": {"pool": {"addresses": ["192.0.2.1", "192.0.2.2", "2001:db8::1"],
                          "check": {"port": 80}, "max_answers": 1}},
         "api": {"pool": {"addresses": ["192.0.2.4", "192.0.2.5"],
                          "check": {"port": 80, "address": "192.0.2.9"}}},
         "mail": {"pool": {"groups": [{"addresses": ["192.0.2.1", "192.0.2.6"],
                                       "weights": [3, 1]}, {"addresses": ["192.0.2.7"]}],
                           "check": {"port": 80}, "policy": "backup",
                           "backup": ["192.0.2.99"]}},
         "x.sub": {"pool": {"addresses": ["192.0.2.8"], "check": {"port": 81}}}}},
    {"origin": "sub.example.test", "nameservers": ["ns1.example.net"],
     "records": {"y": {"pool": {"addresses": ["192.0.2.8", "192.0.2.1"],
                                "check": {"port": 81}}}}}]})
CHILDREN = [Child(0, "running", 10)]
TARGETS = sorted(Steering(SMALL, views.split(SMALL, b"k" * 32).signer_ids).targets)
SUBJECTS = ("192.0.2.1", "192.0.2.4", "192.0.2.8", "www.example.test", "y.sub.example.test")
NAMES_OF_POOLS = ("www.example.test", "api.example.test", "mail.example.test",
                  "x.sub.example.test", "y.sub.example.test")

changes = st.lists(st.one_of(
    st.tuples(st.just("report"), st.dictionaries(st.sampled_from(TARGETS), st.booleans())),
    st.tuples(st.just("detail"), st.lists(st.sampled_from(TARGETS), unique=True)),
    st.tuples(st.just("set"), st.tuples(st.sampled_from(SUBJECTS),
                                        st.sampled_from(("drain", "force")))),
    st.tuples(st.just("remove"), st.sampled_from(SUBJECTS)),
    st.tuples(st.just("choices"), st.lists(st.tuples(
        st.sampled_from(NAMES_OF_POOLS), st.sampled_from((1, 28)), st.integers(-1, 1),
        st.sampled_from(("healthy", "all-down")),
        st.lists(st.sampled_from(("192.0.2.1", "192.0.2.6", "192.0.2.7")), unique=True)),
        max_size=6)),
    st.tuples(st.just("generation"), st.integers(0, 3)),
    st.tuples(st.just("nothing"), st.none()),
), max_size=30)


@settings(max_examples=150, deadline=None)
@given(changes)
def test_kept_sections_show_what_a_rendering_from_scratch_shows(
        schedule: list[tuple[str, Any]]) -> None:
    steering = Steering(SMALL, views.split(SMALL, b"k" * 32).signer_ids)
    known = catalog.make_catalog(SMALL)
    document = status.Document()
    generation, checks = 1, 0
    for op, what in schedule:
        if op == "report" and what:
            steering.report(what, False)
        elif op == "detail" and what:
            checks += 1
            steering.detail([_probe(t, checks) for t in what])
        elif op == "set":
            subject, action = what
            field = "name" if subject.endswith(".test") else "address"
            steering.overrides.set(Override(**{field: subject}, action=action), 0.0)
        elif op == "remove":
            steering.overrides.remove(what)
        elif op == "choices":
            steering.chosen(what, 0.1)
        elif op == "generation":
            generation = what
        view = steering.readout(generation, CHILDREN, Counters(False), 5.0)
        kept = json.loads(b"{" + b"".join(document.render(view, known)))
        fresh = json.loads(b"{" + b"".join(status.Document().render(view, known)))
        assert kept == fresh


def _probe(target: str, checks: int) -> messages.Probe:
    return messages.Probe(target, f"refused {checks}", [checks] + [0] * len(messages.PROBE_BUCKETS),
                          0.01 * checks, {"refused": checks})
