"""Automatic ZSK rolls on loopback, checked by delv throughout (scaled timers: TTLs of 1 s,
a propagation delay of 1 s, a ZSK lifetime of 10 s).

The signer makes its keys, and rolls the ZSK by pre-publication: the new key is published,
signs in the old one's place after Ipub, and the old one is removed after Iret. delv, with the
KSK as its trust anchor, asks for signed names about every 100 ms from start to finish, and
must never see anything but a validated answer; the signer is SIGKILLed in the middle of a
roll, and its successor continues the roll from the state file. unbound, a validating
resolver that caches what it is told for its TTL, is asked the same names: every answer must
carry AD=1, which fails if a key signs before every cached DNSKEY RRset holds it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import dns.exception
import dns.flags
import dns.rcode
import dns.rdatatype
import msgspec
from conftest import need_tool
from harness import Server, config_toml
from test_dnssec import Unbound

from healthdns.signer.rollover import RollState

LIFETIME = 10
QUERIES = [("www.example.test", "A", "; fully validated"),
           ("example.test", "DNSKEY", "; fully validated"),
           ("nothere.example.test", "A", "; negative response, fully validated")]


def policy_config(keys: Path) -> str:
    dnssec = {"algorithm": "ED25519", "dnskey_ttl": 1, "key_dir": str(keys),
              # Dprp: on a loaded machine the responders may serve a generation a second
              # after the signer made it; 0 would time the roll from the signer's clock alone.
              "policy": {"zsk_lifetime": LIFETIME, "propagation": 1}}
    zone = {"ttl": 1, "ns_ttl": 1, "soa": {"ttl": 1, "minimum": 1}, "dnssec": dnssec}
    return config_toml({"www": {"a": ["192.0.2.1"]}}, zone=zone)


def ksk_text(server: Server) -> str:
    """The KSK's DNSKEY rdata as the zone serves it."""
    answer = server.query("example.test", "DNSKEY", want_dnssec=True).answer
    ksk = next(rd for rrset in answer if rrset.rdtype == dns.rdatatype.DNSKEY
               for rd in rrset if rd.flags == 257)
    return str(ksk.to_text())


def anchor_file(server: Server, tmp: Path) -> Path:
    """The KSK as delv's trust anchor."""
    flags, proto, alg, *key = ksk_text(server).split()
    path = tmp / "anchors"
    path.write_text(f'trust-anchors {{ example.test. static-key {flags} {proto} {alg} '
                    f'"{"".join(key)}"; }};\n')
    return path


class Validator(threading.Thread):
    """delv in a loop over QUERIES, keeping every answer that is not validated."""

    def __init__(self, server: Server, anchors: Path, resolver: Unbound) -> None:
        super().__init__(daemon=True)
        self.server, self.anchors, self.resolver = server, anchors, resolver
        self.asked = 0
        self.bad: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        delv = need_tool("delv")
        while not self.stopping.is_set():
            for name, rdtype, expected in QUERIES:
                result = subprocess.run(
                    [delv, "@" + self.server.host, "-p", str(self.server.port), "-a",
                     str(self.anchors), "+root=example.test", name, rdtype],
                    capture_output=True, text=True, timeout=20, check=False)
                self.asked += 1
                out = result.stdout + result.stderr
                if expected not in out:
                    self.bad.append(f"{time.time():.2f} delv {name} {rdtype}: {out}")
                self.resolve(name, rdtype)
            self.stopping.wait(0.1)


    def resolve(self, name: str, rdtype: str) -> None:
        try:
            answer = self.resolver.ask(name, rdtype, timeout=3)
        except dns.exception.Timeout:
            self.bad.append(f"{time.time():.2f} unbound {name} {rdtype}: timed out")
            return
        if answer.rcode() == dns.rcode.SERVFAIL or not answer.flags & dns.flags.AD:
            self.bad.append(f"{time.time():.2f} unbound {name} {rdtype}: {answer}")


def caching_unbound(server: Server, tmp: Path) -> Unbound:
    """unbound keeping answers for their TTL (the TTLs of 1 s), as resolvers do."""
    resolver = Unbound(server, ksk_text(server), tmp)
    resolver.template = resolver.template.replace("  cache-max-ttl: 0\n", "").replace(
        "  cache-max-negative-ttl: 0\n", "")
    assert "cache-max-ttl" not in resolver.template
    return resolver.start()


def state_of(keys: Path) -> RollState:
    return msgspec.json.decode((keys / "example.test.state").read_bytes(), type=RollState)


def zsk_tags(keys: Path) -> dict[int, str]:
    return {k.tag: k.state for k in state_of(keys).keys if k.role == "zsk"}


def test_zsk_rolls_with_a_signer_killed_midway_never_go_bogus(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    server = Server([], tmp_path, policy_config(keys)).start()
    resolver = caching_unbound(server, tmp_path)
    validator = Validator(server, anchor_file(server, tmp_path), resolver)
    validator.start()
    try:
        first = next(iter(zsk_tags(keys)))
        # The successor is published Ipub (2 s) before the first key's lifetime ends.
        made = server.wait_for(r"zsk (\d+): made and published, to follow (\d+)",
                               LIFETIME + 20)
        assert int(made.group(2)) == first
        second = int(made.group(1))
        signer = int(re.findall(r"signer started \(pid (\d+)\)", server.output())[-1])
        os.kill(signer, signal.SIGKILL)  # in the middle of the roll: published, not signing
        resumed = server.wait_for(r"example.test: resuming its keys: (.*)", 30).group(1)
        # Mid-roll still (a loaded machine may kill it a step later, with the old key retired).
        assert f"zsk {second} (published)" in resumed or f"zsk {first} (retired)" in resumed
        # A second roll, by the restarted signer alone.
        server.wait_for(rf"zsk \d+ signs in the place of {second}", LIFETIME + 20)
        server.wait_for(rf"zsk {second}: removed from the DNSKEY RRset", 30)
        steps = server.output()
        assert f"zsk {second} signs in the place of {first}" in steps
        assert f"zsk {first}: removed from the DNSKEY RRset" in steps
        time.sleep(1.5)  # a few more rounds of delv after the last step
    finally:
        validator.stopping.set()
        validator.join(30)
        resolver.stop()
        assert server.stop() == 0
    assert validator.asked > 30  # ten rounds at least: delv is slow on a loaded machine
    assert validator.bad == [], validator.bad[:3]
    tags = zsk_tags(keys)
    assert first not in tags or tags[first] == "removed"
    assert list(tags.values())[-1] == "active"
    # Each phase lasted its RFC 7583 minimum, by the times the signer recorded for each step:
    # Ipub = Dprp + TTLkey = 1 + 1, Iret = Dprp + TTLsig = 1 + 1.
    rolled = [k for k in state_of(keys).keys if k.role == "zsk" and k.active != k.created]
    assert len(rolled) >= 2
    for k in rolled:
        assert k.active is not None and k.active - k.published >= 2.0
    removed = [k for k in state_of(keys).keys if k.removed is not None]
    assert len(removed) >= 2
    for k in removed:
        assert k.retired is not None and k.removed - k.retired >= 2.0
