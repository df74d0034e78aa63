"""What rendering /status costs in memory at scale, stated against the document's own size.

At 20,000 names the document is 17 MB; building it as Python dicts and lists, then as one
string, took 80 MiB (4.9 times the document), and 32 clients polling it grew the supervisor by
86 MiB. A rendering now holds little more than the document it makes.
"""

from __future__ import annotations

import json
import tracemalloc

from healthdns.shared import config, messages
from healthdns.supervisor import status, views
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
    view = steering.view(1, [Child(0, "running", 10)], {}, 0.0)
    known = status.make_catalog(cfg)
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
