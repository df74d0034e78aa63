"""KSK and CSK rolls that wait for the parent (scaled timers), with Knot serving the parent zone.

Knot serves `test.`, which delegates `example.test`; the test copies healthdns's CDS into the
parent's DS RRset with knotc, as a registrar taking CDS would. The roll must not go past
"submitted" while the parent does not serve the new DS, must say so, and must complete once
it does. delv asks for signed names all along with the parent's DS RRset of that moment as
its trust anchors (`static-ds`): a resolver that has just fetched the DS.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import pytest
from conftest import need_tool
from harness import Server, config_toml
from test_control import metrics

QUERIES = [("www.example.test", "A", "; fully validated"),
           ("example.test", "DNSKEY", "; fully validated")]


class Knot:
    """knotd serving the parent zone `test.` on loopback, changed with knotc."""

    def __init__(self, tmp: Path, signed: bool = False) -> None:
        self.tmp = tmp
        self.signed = signed  # Knot signs `test.` itself (its KSK: `ksk()`)
        self.port = 0
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> Knot:
        for attempt in range(20):  # knotd cannot report a kernel-chosen port: retry on clash
            self.port = 20000 + (os.getpid() * 11 + attempt * 991) % 40000
            (self.tmp / "test.zone").write_text(
                "$ORIGIN test.\n$TTL 1\n@ SOA ns.test. h.test. 1 60 60 60 1\n@ NS ns.test.\n"
                "ns A 127.0.0.1\nexample NS ns1.example.net.\n")
            (self.tmp / "knot.conf").write_text(
                f"server:\n  listen: 127.0.0.1@{self.port}\n  rundir: {self.tmp}\n"
                f"control:\n  listen: {self.tmp}/knot.sock\n"
                f"database:\n  storage: {self.tmp}\n"
                f"zone:\n  - domain: test\n    file: {self.tmp}/test.zone\n"
                f"    storage: {self.tmp}\n    zonefile-sync: -1\n"
                + ("    dnssec-signing: on\n" if self.signed else ""))
            self.process = subprocess.Popen([need_tool("knotd"), "-c",
                                             str(self.tmp / "knot.conf")],
                                            stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, text=True)
            if self._ready():
                return self
        raise AssertionError("knotd did not start")

    def _ready(self) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            try:
                self.ds()
                return True
            except (dns.exception.Timeout, ConnectionRefusedError):
                time.sleep(0.05)
        return False

    def ds(self) -> list[str]:
        """The DS RRset of example.test as the parent serves it, as rdata text."""
        query = dns.message.make_query("example.test", "DS")
        answer = dns.query.udp(query, "127.0.0.1", port=self.port, timeout=1)
        return [rd.to_text() for rrset in answer.answer if rrset.rdtype == dns.rdatatype.DS
                for rd in rrset]

    def ksk(self) -> str:
        """The DNSKEY rdata of the KSK Knot signs `test.` with."""
        answer = dns.query.udp(dns.message.make_query("test", "DNSKEY"), "127.0.0.1",
                               port=self.port, timeout=1)
        return next(rd.to_text() for rrset in answer.answer for rd in rrset
                    if rrset.rdtype == dns.rdatatype.DNSKEY and rd.flags == 257)

    def set_ds(self, records: list[str]) -> None:
        """Replace the parent's DS RRset of example.test."""
        knotc = [need_tool("knotc"), "-c", str(self.tmp / "knot.conf")]
        subprocess.run([*knotc, "zone-begin", "test"], check=True, capture_output=True)
        subprocess.run([*knotc, "zone-unset", "test", "example", "DS"], check=False,
                       capture_output=True)
        for record in records:
            subprocess.run([*knotc, "zone-set", "test", "example", "1", "DS", record],
                           check=True, capture_output=True)
        subprocess.run([*knotc, "zone-commit", "test"], check=True, capture_output=True)

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def knot(tmp_path: Path) -> Iterator[Knot]:
    parent = Knot(tmp_path).start()
    yield parent
    parent.stop()


def keys_report(tmp: Path, *args: str) -> str:
    """`healthdns-ctl keys` on the server's configuration."""
    ctl = Path(sys.executable).parent / "healthdns-ctl"
    result = subprocess.run([str(ctl), "keys", "--config", str(tmp / "healthdns.toml"), *args],
                            capture_output=True, text=True, timeout=20, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def cds(server: Server) -> list[str]:
    response = server.query("example.test", "CDS")
    return sorted(rd.to_text() for rrset in response.answer
                  if rrset.rdtype == dns.rdatatype.CDS for rd in rrset)


class Validator(threading.Thread):
    """delv in a loop, anchored at the DS RRset the parent serves at that moment."""

    def __init__(self, server: Server, parent: Knot, tmp: Path) -> None:
        super().__init__(daemon=True)
        self.server, self.parent, self.tmp = server, parent, tmp
        self.asked = 0
        self.bad: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        anchors = self.tmp / "anchors"
        while not self.stopping.is_set():
            lines = "".join(f'  example.test. static-ds {ds.split(" ", 3)[0]} '
                            f'{ds.split(" ", 3)[1]} {ds.split(" ", 3)[2]} '
                            f'"{ds.split(" ", 3)[3].replace(" ", "")}";\n'
                            for ds in self.parent.ds())
            anchors.write_text("trust-anchors {\n" + lines + "};\n")
            for name, rdtype, expected in QUERIES:
                result = subprocess.run(
                    [need_tool("delv"), "@" + self.server.host, "-p", str(self.server.port),
                     "-a", str(anchors), "+root=example.test", name, rdtype],
                    capture_output=True, text=True, timeout=20, check=False)
                self.asked += 1
                if expected not in result.stdout + result.stderr:
                    self.bad.append(f"{name} {rdtype}: {result.stdout}{result.stderr}")
            self.stopping.wait(0.1)


@pytest.mark.parametrize("role", ["ksk", "csk"])
def test_a_sep_roll_waits_for_the_parents_ds_and_completes(tmp_path: Path, knot: Knot,
                                                          role: str) -> None:
    """A KSK (with a ZSK that does not roll), or a CSK, which signs the zone too."""
    kind: dict[str, object] = {"csk": True, "csk_lifetime": 14} if role == "csk" else \
        {"ksk_lifetime": 14, "zsk_lifetime": 0}
    # A DNSKEY TTL of 4 s: the old key's removal comes 4 s after the new one signs, time
    # enough for the parent to take the new DS back first.
    dnssec = {"algorithm": "ED25519", "dnskey_ttl": 4, "key_dir": str(tmp_path / "keys"),
              "policy": {**kind, "propagation": 0, "ds_ttl": 1, "parent_propagation": 0,
                         "check_interval": 1,
                         "parent_nameservers": [f"127.0.0.1:{knot.port}"]}}
    zone = {"ttl": 1, "ns_ttl": 1, "soa": {"ttl": 1, "minimum": 1}, "dnssec": dnssec}
    server = Server([], tmp_path, config_toml({"www": {"a": ["192.0.2.1"]}},
                                              zone=zone)).start()
    first = cds(server)
    assert len(first) == 1
    knot.set_ds(first)  # the zone's first DS, given to the parent
    validator = Validator(server, knot, tmp_path)
    validator.start()
    try:
        made = server.wait_for(rf"{role} (\d+): made and published, to follow (\d+) \(its DS "
                               r"asked for by CDS\)", 30)
        new, old = made.group(1), made.group(2)
        server.wait_until(lambda: len(cds(server)) == 2, 10, "the CDS of both KSKs")
        both = cds(server)
        assert len(both) == 2 and set(first) < set(both)  # RFC 7344: the DS set wanted
        server.wait_for(rf"DS {new}: not yet served by 127.0.0.1:{knot.port}", 10)
        time.sleep(3)  # the parent holds the new DS back: the roll waits
        assert f"{role} {new} signs in the place of" not in server.output()
        shown = keys_report(tmp_path, "example.test")
        assert re.search(rf"{role} +{new} +submitted ", shown), shown
        assert re.search(rf"{role} +{old} +active ", shown), shown
        assert f"next: {role} {new}: its DS is not yet served by every parent name server" in shown
        assert f"DS {new}: not yet served by 127.0.0.1:{knot.port}" in shown
        waiting = ("healthdns_dnssec_roll_waiting_for_parent", (("zone", "example.test"),))
        assert metrics(server)[waiting] == 1.0
        knot.set_ds(both)
        server.wait_for(rf"{role} {new}: every parent name server serves its DS", 10)
        server.wait_for(rf"{role} {new} signs in the place of {old}", 10)
        knot.set_ds(first)  # the registrar goes back to a stale copy: the old DS alone
        # The old key still signs the DNSKEY RRset (delv, anchored at the old DS alone, goes
        # on validating), and its removal, which would leave nothing the parent's DS fits,
        # waits and says why.
        held = (f"the DS RRset served by 127.0.0.1:{knot.port} (DS {old}) is of no key of "
                "the DNSKEY RRset after this step")
        server.wait_for("a key roll's step waits: it would leave the zone bogus: "
                        + re.escape(held), 15)
        assert f"{role} {old}: removed" not in server.output()
        shown = keys_report(tmp_path, "example.test")
        assert f"held: {held}" in shown, shown
        server.wait_until(lambda: metrics(server)[waiting] == 1.0, 10, "a wait for the parent")
        knot.set_ds(both)
        server.wait_for("the chain of trust validates again: the roll goes on", 10)
        server.wait_until(lambda: metrics(server)[waiting] == 0.0, 10, "no wait for the parent")
        next_step = ("healthdns_dnssec_roll_next_step_seconds", (("zone", "example.test"),))
        assert 0.0 <= metrics(server)[next_step] <= 14.0  # the next roll
        server.wait_for(rf"{role} {old}: removed from the DNSKEY RRset and its CDS", 10)
        server.wait_until(lambda: len(cds(server)) == 1, 10, "the CDS of the new KSK alone")
        last = cds(server)
        assert len(last) == 1 and last[0] in both and last[0] not in first
        knot.set_ds(last)
        server.wait_for(rf"{role} {old}: no parent name server serves its DS any more", 10)
        time.sleep(1)
        shown = keys_report(tmp_path)
        assert re.search(rf"{role} +{old} +removed .* gone since ", shown), shown
        assert re.search(rf"{role} +{new} +active .* served since ", shown), shown
    finally:
        validator.stopping.set()
        validator.join(30)
        assert server.stop() == 0
    assert validator.asked > 30
    assert validator.bad == [], validator.bad[:3]
