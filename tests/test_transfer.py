"""The transfer process in the real supervisor: AXFR and IXFR with dig and kdig (TSIG), NOTIFY
on a health change, a respawned transfer process, counters on /metrics.

The Knot and NSD secondaries are tests/test_secondaries.py; this module checks healthdns's
side with the plain tools a person would use.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rdatatype
import dns.tsigkeyring
import dns.xfr
import dns.zone
import pytest
from conftest import need_tool
from harness import Backend, Server

SECRET = "dHJhbnNmZXJzLXRlc3Qta2V5LXNlY3JldA=="
NEW_SECRET = "bmV3LXNlY3JldC1mb3ItdGhlLXRyYW5zZmVyLWtleQ=="
KEY = "xfr-test"
TRANSFERS = re.compile(r"transfers on (\S+?):(\d+)")
ZONES = ("example.test.", "example.org.", "other.test.")


def config(check_port: int, notify_port: int) -> str:
    return f"""
        [server]
        listen = ["127.0.0.1:0"]
        responders = 1

        [[tsig]]
        name = "{KEY}"
        secret = "{SECRET}"

        [transfer]
        listen = ["127.0.0.1:0"]
        notify_source = "127.0.0.1"
        notify_timeout = 0.1
        notify_retries = 2
        secondaries = [{{ address = "127.0.0.1:{notify_port}", key = "{KEY}" }}]
        allow = [{{ networks = ["127.0.0.0/8"], key = "{KEY}" }}]

        [[zones]]
        origin = "example.test"
        aliases = ["example.org"]
        nameservers = ["ns1.example.net", "ns2.example.net"]
        ttl = 60

        [zones.records.www]
        ttl = 5
        pool = {{ addresses = ["127.0.0.1", "127.0.0.2"], check = {{ port = {check_port}, interval = 0.1, timeout = 0.1, rise = 1, fall = 1 }} }}

        [zones.records.static]
        a = ["192.0.2.1"]
        aaaa = ["2001:db8::1"]

        [zones.records."a.b"]
        txt = ['"deep"']

        [zones.records.alias]
        cname = "static"

        [zones.records."@"]
        mx = ["10 static"]

        [[zones]]
        origin = "other.test"
        nameservers = ["ns1.other.test"]

        [zones.records.ns1]
        a = ["192.0.2.53"]
    """


class Setup:
    def __init__(self, server: Server, port: int, notified: socket.socket,
                 backends: tuple[Backend, Backend], tmp: Path) -> None:
        self.tmp = tmp
        self.server = server
        self.port = port
        self.notified = notified
        self.backends = backends
        self.ring = dns.tsigkeyring.from_text({f"{KEY}.": SECRET})

    def axfr(self, origin: str) -> dns.zone.Zone:
        zone = dns.zone.Zone(origin, relativize=False)
        query = dns.message.make_query(origin, "AXFR")
        query.use_tsig(self.ring, keyname=f"{KEY}.")
        dns.query.inbound_xfr("127.0.0.1", zone, query, port=self.port, timeout=5)
        return zone

    def serial(self, origin: str) -> int:
        rrset = self.server.query(origin, "SOA").answer[0]
        return int(rrset[0].serial)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    first = Backend("127.0.0.1")
    second = Backend("127.0.0.2", first.port)
    first.up()
    second.up()
    notified = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a secondary that listens
    notified.bind(("127.0.0.1", 0))
    notified.settimeout(5)
    tmp = tmp_path_factory.mktemp("transfer")
    server = Server([], tmp, config(first.port, notified.getsockname()[1])).start()
    found = TRANSFERS.search(server.output())
    assert found, server.output()
    try:
        yield Setup(server, int(found.group(2)), notified, (first, second), tmp)
    finally:
        assert server.stop() == 0
        notified.close()
        first.close()
        second.close()


def kdig(setup: Setup, *args: str) -> str:
    out = subprocess.run([need_tool("kdig"), "@127.0.0.1", "-p", str(setup.port),
                          "-y", f"hmac-sha256:{KEY}:{SECRET}", *args],
                         capture_output=True, text=True, timeout=10, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


def records(text: str) -> list[tuple[str, str, str]]:
    """(owner, type, rdata) of every record kdig printed, in order."""
    found = []
    for line in text.splitlines():
        if not line or line.startswith(";"):
            continue
        owner, _ttl, _cls, rdtype, *rdata = line.split()
        if rdtype != "TSIG":  # kdig shows each message's TSIG among the records
            found.append((owner.lower(), rdtype, " ".join(rdata)))
    return found


def test_every_zone_and_alias_is_transferred_as_the_responders_answer_it(setup: Setup) -> None:
    for origin in ZONES:
        zone = setup.axfr(origin)
        soa = zone.find_rdataset(origin, "SOA")
        assert soa[0].serial == setup.serial(origin)  # type: ignore[attr-defined]
        for name, node in zone.nodes.items():
            for rdataset in node.rdatasets:
                answer = setup.server.query(name.to_text(), dns.rdatatype.to_text(
                    rdataset.rdtype))
                served = {rd for rrset in answer.answer if rrset.name == name
                          and rrset.rdtype == rdataset.rdtype for rd in rrset}
                assert served == set(rdataset), (name, rdataset)


def test_kdig_axfr_with_tsig(setup: Setup) -> None:
    got = records(kdig(setup, "AXFR", "example.test."))
    assert got[0][1] == got[-1][1] == "SOA" and got[0] == got[-1]
    assert ("www.example.test.", "A", "127.0.0.1") in got
    assert ("www.example.test.", "A", "127.0.0.2") in got


def test_unsigned_or_wrongly_signed_transfers_are_refused(setup: Setup) -> None:
    dig = need_tool("dig")
    plain = subprocess.run([dig, "@127.0.0.1", "-p", str(setup.port), "AXFR", "example.test."],
                           capture_output=True, text=True, timeout=10, check=False).stdout
    assert "Transfer failed" in plain and "www.example.test." not in plain
    wrong = subprocess.run([need_tool("kdig"), "@127.0.0.1", "-p", str(setup.port), "-y",
                            f"hmac-sha256:{KEY}:b3RoZXJvdGhlcm90aGVyb3RoZXI=", "AXFR",
                            "example.test."], capture_output=True, text=True, timeout=10,
                           check=False)
    assert "BADSIG" in wrong.stdout + wrong.stderr
    assert "www.example.test." not in wrong.stdout


def test_a_backend_going_down_is_notified_and_transferred_by_ixfr(setup: Setup) -> None:
    before = setup.axfr("example.test.")
    old = setup.serial("example.test.")
    drain(setup.notified)
    setup.backends[1].down()
    try:
        setup.server.wait_until(lambda: setup.server.addresses("www.example.test.")
                                == {"127.0.0.1"}, 5, "the backend to leave the answer")
        new = setup.serial("example.test.")
        serials = notify_serials(setup.notified, "example.test.", new)
        assert serials[-1] == new
        got = records(kdig(setup, f"IXFR={old}", "example.test."))
        # RFC 1995 4, incremental: SOA new, SOA old, deletions, ..., SOA new
        soas = [r for r in got if r[1] == "SOA"]
        assert len(soas) >= 4 and soas[1][2].split()[2] == str(old)
        assert ("www.example.test.", "A", "127.0.0.2") in got  # deleted
        assert len(got) < len(records(kdig(setup, "AXFR", "example.test.")))
        zone = before
        query, _ = dns.xfr.make_query(zone, serial=old)  # type: ignore[arg-type]
        query.use_tsig(setup.ring, keyname=f"{KEY}.")
        dns.query.inbound_xfr("127.0.0.1", zone, query, port=setup.port, timeout=5)
        assert zone == setup.axfr("example.test.")
    finally:
        setup.backends[1].up()
        setup.server.wait_until(lambda: len(setup.server.addresses("www.example.test."))
                                == 2, 5, "the backend to come back")


def test_a_health_change_goes_out_at_once_while_axfrs_run_back_to_back(setup: Setup) -> None:
    """Transfers run at nice 19, yet do not starve: with secondaries pulling AXFR back to back,
    a health change's NOTIFY follows the responders' new answer within a second, and an IXFR
    carries it."""
    old = setup.serial("example.test.")
    drain(setup.notified)
    stop = threading.Event()

    def pull() -> None:
        while not stop.is_set():
            setup.axfr("example.test.")

    pullers = [threading.Thread(target=pull) for _ in range(2)]
    for puller in pullers:
        puller.start()
    try:
        setup.backends[1].down()
        setup.server.wait_until(lambda: setup.server.addresses("www.example.test.")
                                == {"127.0.0.1"}, 5, "the backend to leave the answer")
        answered = time.monotonic()
        new = setup.serial("example.test.")
        assert notify_serials(setup.notified, "example.test.", new)[-1] == new
        assert time.monotonic() - answered < 1.0
        got = records(kdig(setup, f"IXFR={old}", "example.test."))
        assert ("www.example.test.", "A", "127.0.0.2") in got  # deleted
    finally:
        stop.set()
        for puller in pullers:
            puller.join()
        setup.backends[1].up()
        setup.server.wait_until(lambda: len(setup.server.addresses("www.example.test."))
                                == 2, 5, "the backend to come back")


def drain(sock: socket.socket) -> None:
    sock.setblocking(False)
    try:
        while True:
            sock.recv(65535)
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)
        sock.settimeout(5)


def notify_serials(sock: socket.socket, origin: str, until: int) -> list[int]:
    """The serials NOTIFYs of `origin` carry, answering each one, until `until`'s."""
    ring = dns.tsigkeyring.from_text({f"{KEY}.": SECRET})
    serials: list[int] = []
    while not serials or serials[-1] != until:
        wire, peer = sock.recvfrom(65535)
        message = dns.message.from_wire(wire, keyring=ring)  # signed with the key
        if message.question[0].name != dns.name.from_text(origin):
            continue
        serials.append(int(message.answer[0][0].serial))  # type: ignore[attr-defined]
        sock.sendto(dns.message.make_response(message).to_wire(), peer)
    return serials


def test_a_killed_transfer_process_comes_back_on_its_port_with_the_records(
        setup: Setup) -> None:
    pid = next(p for p, cmd in setup.server.children().items()
               if cmd.startswith("healthdns: transfer"))
    os.kill(pid, signal.SIGKILL)
    setup.server.wait_for(r"transfer started \(pid", 10)
    setup.server.wait_until(lambda: _axfr_ok(setup), 10, "the transfer process to serve again")
    assert setup.axfr("example.test.").find_rdataset("example.test.", "SOA")[0].serial \
        == setup.serial("example.test.")  # type: ignore[attr-defined]


def test_transfers_yield_the_cpu_to_the_responders(setup: Setup) -> None:
    """An AXFR pulled in a loop must not take CPU from queries: the transfer process runs at
    nice 19 (CFS weight 15 against the responders' 1024) and SCHED_BATCH (its wake-ups do
    not preempt a responder); the responders stay at nice 0 and SCHED_OTHER."""
    children = {cmd.split()[1]: pid for pid, cmd in setup.server.children().items()
                if cmd.startswith("healthdns: ")}
    responders = [pid for role, pid in children.items() if role.startswith("responder")]
    assert responders, children
    assert (_nice(children["transfer"]), os.sched_getscheduler(children["transfer"])) \
        == (19, os.SCHED_BATCH)
    assert {(_nice(pid), os.sched_getscheduler(pid)) for pid in responders} \
        == {(0, os.SCHED_OTHER)}


def _nice(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[16])


def _axfr_ok(setup: Setup) -> bool:
    try:
        setup.axfr("example.test.")
    except (OSError, dns.exception.DNSException):
        return False
    return True


def test_metrics_count_transfers_and_notifies(setup: Setup) -> None:
    setup.axfr("other.test.")

    def scraped() -> bool:
        with urllib.request.urlopen(f"{setup.server.control}/metrics", timeout=5) as r:
            text = r.read().decode()
        axfr = re.search(r'^healthdns_transfers_total\{kind="axfr"\} (\S+)', text, re.MULTILINE)
        return axfr is not None and float(axfr.group(1)) >= 1 \
            and 'healthdns_notifies_total{result="sent"}' in text
    setup.server.wait_until(scraped, 5, "the transfer counters on /metrics")


@pytest.mark.parametrize(("old", "new", "field"), [
    ("notify_retries = 2", "notify_retries = 3", "transfer"),
    (SECRET, NEW_SECRET, "tsig (with transfers on)"),
])
def test_a_reload_that_changes_transfers_is_refused_as_needing_a_restart(
        setup: Setup, old: str, new: str, field: str) -> None:
    path = setup.tmp / "healthdns.toml"
    before = path.read_text()
    path.write_text(before.replace(old, new))
    try:
        os.kill(setup.server.pid, signal.SIGHUP)
        setup.server.wait_for(
            f"reload failed, still serving the previous configuration: {re.escape(field)} "
            "changed .* that takes a restart", 5)
        assert SECRET not in setup.server.output()  # a digest stands for each secret
        assert NEW_SECRET not in setup.server.output()
    finally:
        path.write_text(before)
    assert _axfr_ok(setup)
