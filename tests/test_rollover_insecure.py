"""DNSSEC turned off under a policy (RFC 8078 4), live: Knot signs the parent zone `test.`,
a caching, validating unbound has Knot's KSK as its only trust anchor, and healthdns serves
`example.test` under a policy, its DS at the parent.

Set `insecure = true` and reload: the zone must stay signed while it serves the delete CDS
and CDNSKEY, until the parent (the test, as a registrar taking CDS) has removed the DS and its
TTL has passed; then it is served unsigned. unbound is asked every 100 ms from start to finish
and must never answer SERVFAIL: validated (AD) while the DS is there, insecure at the end.
"""

from __future__ import annotations

import os
import signal
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.flags
import dns.rcode
import dns.rdatatype
import pytest
from harness import Server, config_toml
from test_dnssec import Unbound
from test_rollover_parent import Knot, cds, keys_report

POLICY = {"algorithm": "ED25519", "dnskey_ttl": 1}


def zone_config(keys: Path, knot: Knot, insecure: bool) -> str:
    dnssec = {**POLICY, "key_dir": str(keys),
              "policy": {"csk": True, "propagation": 0, "ds_ttl": 1, "parent_propagation": 0,
                         "check_interval": 1, "insecure": insecure,
                         "parent_nameservers": [f"127.0.0.1:{knot.port}"]}}
    zone = {"ttl": 1, "ns_ttl": 1, "soa": {"ttl": 1, "minimum": 1}, "dnssec": dnssec}
    return config_toml({"www": {"a": ["192.0.2.1"]}}, zone=zone)


def resolver(server: Server, knot: Knot, tmp: Path) -> Unbound:
    """unbound, caching, anchored at the parent's KSK alone, with stubs to both servers;
    strict on algorithms (`harden-algo-downgrade`: every algorithm of the DS RRset must
    sign)."""
    made = Unbound(server, knot.ksk(), tmp)
    made.template = textwrap.dedent("""\
        server:
          interface: 127.0.0.1@{port}
          port: {port}
          do-daemonize: no
          username: ""
          chroot: ""
          directory: "{tmp}"
          pidfile: ""
          use-syslog: no
          logfile: ""
          verbosity: 1
          do-not-query-localhost: no
          local-zone: "test." nodefault
          module-config: "validator iterator"
          val-log-level: 2
          harden-algo-downgrade: yes
          auto-trust-anchor-file: ""
        """) + f'  trust-anchor: "test. DNSKEY {knot.ksk()}"\n' + \
        "remote-control:\n  control-enable: no\n" + \
        f'stub-zone:\n  name: "test."\n  stub-addr: 127.0.0.1@{knot.port}\n' + \
        f'stub-zone:\n  name: "example.test."\n  stub-addr: 127.0.0.1@{server.port}\n'
    return made.start()


class Asker(threading.Thread):
    """unbound asked for each of `names` every 100 ms: SERVFAILs, empty answers and timeouts
    kept, and whether the latest answer was validated (and whether every one was)."""

    def __init__(self, resolver: Unbound,
                 names: tuple[tuple[str, str], ...] = (("www.example.test", "A"),)) -> None:
        super().__init__(daemon=True)
        self.resolver, self.names = resolver, names
        self.asked = 0
        self.bad: list[str] = []
        self.validated: bool | None = None
        self.always_validated = True
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            for name, rdtype in self.names:
                try:
                    answer = self.resolver.ask(name, rdtype, timeout=3)
                except dns.exception.Timeout:
                    self.bad.append(f"{name} {rdtype}: timed out")
                    continue
                self.asked += 1
                if answer.rcode() != dns.rcode.NOERROR or not answer.answer:
                    self.bad.append(str(answer))
                self.validated = bool(answer.flags & dns.flags.AD)
                self.always_validated = self.always_validated and self.validated
            self.stopping.wait(0.1)


@pytest.fixture
def knot(tmp_path: Path) -> Iterator[Knot]:
    parent = Knot(tmp_path, signed=True).start()
    yield parent
    parent.stop()


def test_dnssec_turned_off_goes_insecure_never_bogus(tmp_path: Path, knot: Knot) -> None:
    keys = tmp_path / "zone-keys"  # Knot keeps its own in tmp_path/keys
    server = Server([], tmp_path, zone_config(keys, knot, insecure=False)).start()
    knot.set_ds(cds(server))
    unbound = resolver(server, knot, tmp_path)
    asker = Asker(unbound)
    asker.start()
    try:
        server.wait_until(lambda: asker.validated is True, 10, "a validated answer")
        (tmp_path / "healthdns.toml").write_text(zone_config(keys, knot, insecure=True))
        os.kill(server.pid, signal.SIGHUP)
        server.wait_for("example.test: serves the delete CDS and CDNSKEY", 10)
        server.wait_until(lambda: cds(server) == ["0 0 0 00"], 10, "the delete CDS")
        cdnskey = server.query("example.test", "CDNSKEY", want_dnssec=True)
        assert [rd.to_text() for rrset in cdnskey.answer for rd in rrset
                if rrset.rdtype == dns.rdatatype.CDNSKEY] == ["0 3 0 AA=="]
        assert any(rrset.rdtype == dns.rdatatype.RRSIG for rrset in cdnskey.answer)
        assert asker.validated is True  # the parent serves the DS still: signed on
        shown = keys_report(tmp_path, "example.test")
        assert "next: unsigned once no parent name server serves a DS" in shown, shown
        assert "(ED25519, DNSSEC being turned off: the delete CDS served since " in shown
        knot.set_ds([])  # the registrar takes the delete CDS
        server.wait_for("example.test: no parent name server serves a DS any more", 10)
        server.wait_for("example.test: served unsigned: no parent name server serves a DS", 10)
        server.wait_until(lambda: not server.query("example.test", "DNSKEY",
                                                   want_dnssec=True).answer, 10, "no DNSKEY")
        signed = server.query("www.example.test", "A", want_dnssec=True)
        assert [r.rdtype for r in signed.answer] == [dns.rdatatype.A]  # no RRSIG
        server.wait_until(lambda: asker.validated is False, 10, "an insecure answer")
        count = asker.asked
        server.wait_until(lambda: asker.asked > count + 10, 20, "more answers from unbound")
    finally:
        asker.stopping.set()
        asker.join(30)
        unbound.stop()
        assert server.stop() == 0
    assert asker.asked > 30
    assert asker.bad == [], asker.bad[:3]
    assert not [p for p in keys.iterdir() if p.suffix == ".pem"]
