"""An algorithm roll under a policy, live: ED25519 to ECDSAP256SHA256 (scaled timers, TTLs of
1 s) with Knot signing the parent zone `test.`, the test as a registrar that copies the
zone's CDS into the parent's DS RRset, a caching unbound, anchored at Knot's KSK and strict
on algorithms (`harden-algo-downgrade`), and delv, anchored at the parent's DS RRset of the
moment (it caches nothing, and retries nothing), each asking every 100 ms from start to
finish: every answer must be validated. The order of the steps is RFC 6781 4.1.4's, checked from the log.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import dns.rdatatype
import pytest
from harness import Server, config_toml
from test_rollover_insecure import Asker, resolver
from test_rollover_parent import Knot, Validator, cds, keys_report

NAMES = (("www.example.test", "A"), ("example.test", "DNSKEY"))


@pytest.fixture
def knot(tmp_path: Path) -> Iterator[Knot]:
    parent = Knot(tmp_path, signed=True).start()
    yield parent
    parent.stop()


def zone_config(keys: Path, knot: Knot, algorithm: str) -> str:
    dnssec = {"algorithm": algorithm, "dnskey_ttl": 1, "key_dir": str(keys),
              "policy": {"propagation": 0, "ds_ttl": 1, "parent_propagation": 0,
                         "check_interval": 1, "zsk_lifetime": 0,
                         "parent_nameservers": [f"127.0.0.1:{knot.port}"]}}
    zone = {"ttl": 1, "ns_ttl": 1, "soa": {"ttl": 1, "minimum": 1}, "dnssec": dnssec}
    return config_toml({"www": {"a": ["192.0.2.1"]}}, zone=zone)


class Registrar(threading.Thread):
    """Copies the zone's CDS into the parent's DS RRset whenever it changes."""

    def __init__(self, server: Server, parent: Knot) -> None:
        super().__init__(daemon=True)
        self.server, self.parent = server, parent
        self.copied: list[list[str]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.2):
            wanted = cds(self.server)
            if wanted and (not self.copied or wanted != self.copied[-1]):
                self.parent.set_ds(wanted)
                self.copied.append(wanted)


def algorithms(server: Server) -> set[int]:
    answer = server.query("example.test", "DNSKEY", want_dnssec=True).answer
    return {rd.algorithm for rrset in answer if rrset.rdtype == dns.rdatatype.DNSKEY
            for rd in rrset}


def test_an_algorithm_roll_never_goes_bogus(tmp_path: Path, knot: Knot) -> None:
    keys = tmp_path / "zone-keys"  # Knot keeps its own in tmp_path/keys
    server = Server([], tmp_path, zone_config(keys, knot, "ED25519")).start()
    registrar = Registrar(server, knot)
    registrar.start()
    server.wait_until(lambda: registrar.copied, 10, "the first DS at the parent")
    unbound = resolver(server, knot, tmp_path)
    asker = Asker(unbound, NAMES)
    asker.start()
    validator = Validator(server, knot, tmp_path)  # delv, anchored at the parent's DS
    validator.start()
    try:
        server.wait_until(lambda: asker.validated is True, 10, "a validated answer")
        (tmp_path / "healthdns.toml").write_text(zone_config(keys, knot, "ECDSAP256SHA256"))
        os.kill(server.pid, signal.SIGHUP)
        server.wait_for("example.test: algorithm roll from ED25519 to ECDSAP256SHA256", 10)
        assert algorithms(server) == {15}  # the new keys sign, unpublished
        shown = keys_report(tmp_path, "example.test")
        assert "(ECDSAP256SHA256, an algorithm roll from ED25519 since " in shown, shown
        assert re.search(r"(csk|ksk) +\d+ +presigning ", shown), shown
        steps = ["the new keys' DNSKEYs are published", "the CDS asks for the new DS alone",
                 "every parent name server serves the new DS",
                 "the old keys' DNSKEYs are withdrawn; they sign on",
                 "algorithm roll to ECDSAP256SHA256 done"]
        for step in steps:
            server.wait_for(f"example.test: {'' if 'done' in step else 'algorithm roll: '}"
                            + step, 20)
        server.wait_until(lambda: algorithms(server) == {13}, 10, "the new keys alone")
        count = asker.asked
        server.wait_until(lambda: asker.asked > count + 10, 20, "more answers from unbound")
    finally:
        asker.stopping.set()
        registrar.stopping.set()
        validator.stopping.set()
        validator.join(30)
        asker.join(30)
        registrar.join(30)
        unbound.stop()
        assert server.stop() == 0
    assert asker.asked > 30
    assert asker.bad == [] and asker.always_validated, asker.bad[:3]
    assert validator.asked > 20
    assert validator.bad == [], validator.bad[:3]
    assert len(registrar.copied) == 2  # the old DS, then the new one alone: a swap
