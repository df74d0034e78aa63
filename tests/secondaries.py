"""Real secondaries (Knot DNS, NSD) transferring from healthdns, started by the tests.

Each runs as the current user in a temporary directory (its database, journal, pid file and
logs there; never the system service) on a loopback port. Their configurations are the ones
docs/transfers.md gives an operator: the blocks marked ``<!-- config: knot.conf -->`` and
``<!-- config: nsd.conf -->`` are read from the page and only their addresses, paths, secret
and zone list are replaced, each replacement checked, so the page cannot drift from what is
tested.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

DOC = Path(__file__).resolve().parent.parent / "docs" / "transfers.md"
START_TIMEOUT = 10.0
PORT_TRIES = 8


class SecondaryError(AssertionError):
    """A secondary that would not start or did not do what the test waited for; the text
    carries its log."""


@dataclass(frozen=True)
class Primary:
    """What a secondary is told about healthdns: where to transfer from, where NOTIFY comes
    from, and the TSIG key both sign with."""

    host: str
    port: int
    notify_source: str
    key_name: str
    key_file: Path  # keymgr's output (a Knot `key:` section), which healthdns reads too
    secret: str  # its base64 secret: NSD wants it inline


def doc_block(name: str, doc: Path = DOC) -> str:
    """The fenced block that follows ``<!-- config: NAME -->`` in the deployment guide."""
    found = re.search(rf"<!-- config: {re.escape(name)} -->\n```[a-z]*\n(.*?)```",
                      doc.read_text(), re.DOTALL)
    if found is None:
        raise SecondaryError(f"{doc} has no block marked '<!-- config: {name} -->'")
    return found.group(1)


def replace_all(text: str, changes: list[tuple[str, str]], what: str) -> str:
    """`text` with each (old, new) applied in order; an `old` that is missing fails, so a
    change to the guide's example shows up here instead of silently testing something else."""
    for old, new in changes:
        if old not in text:
            raise SecondaryError(f"{what}: the guide's block no longer contains {old!r}")
        text = text.replace(old, new)
    return text


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on `host` right now. Knot and NSD cannot be told to
    take a kernel-chosen port and report it, so they are given one and retried on a clash."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(family, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
        return port
    raise SecondaryError(f"no port free for both UDP and TCP on {host}")


def knot_conf(tmp: Path, host: str, port: int, primary: Primary, zones: list[str]) -> str:
    zone_list = "".join(f"  - domain: {z}\n" for z in zones)
    return replace_all(doc_block("knot.conf"), [
        ('    rundir: "/run/knot"\n', f'    rundir: "{tmp}"\n'),
        ("    user: knot:knot\n", ""),  # the test's own user
        ("[ 0.0.0.0@53, ::@53 ]", f"{host}@{port}"),
        ("target: syslog", "target: stderr"),
        ('storage: "/var/lib/knot"', f'storage: "{tmp}/db"'),
        ('include: "/etc/knot/healthdns-transfer.key"', f'include: "{primary.key_file}"'),
        ("healthdns-transfer", primary.key_name),
        ("address: 192.0.2.1@8053", f"address: {primary.host}@{primary.port}"),
        ("address: 192.0.2.1\n", f"address: {primary.notify_source}\n"),
        ("  - domain: example.com\n  - domain: example.net\n", zone_list),
    ], "knot.conf")


def nsd_conf(tmp: Path, host: str, port: int, primary: Primary, zones: list[str]) -> str:
    zone_list = "".join(f"zone:\n    name: {z}\n    include-pattern: from-healthdns\n\n"
                        for z in zones)
    example_zones = ("zone:\n    name: example.com\n    include-pattern: from-healthdns\n\n"
                     "zone:\n    name: example.net\n    include-pattern: from-healthdns\n")
    return replace_all(doc_block("nsd.conf"), [
        ("    ip-address: 0.0.0.0\n    ip-address: ::0\n", f"    ip-address: {host}\n"),
        ("port: 53", f"port: {port}"),
        ("username: nsd", 'username: ""\n    chroot: ""'),  # as the test's own user
        ("/var/lib/nsd", str(tmp)),
        ('pidfile: "/run/nsd/nsd.pid"', f'pidfile: "{tmp}/nsd.pid"'),
        ('logfile: ""', f'logfile: "{tmp}/nsd.log"'),
        ('"PASTE+THE+SECRET+OF+THE+KEY+FILE+HERE+00000="', f'"{primary.secret}"'),
        ("healthdns-transfer", primary.key_name),
        ("192.0.2.1@8053", f"{primary.host}@{primary.port}"),
        ("allow-notify: 192.0.2.1 ", f"allow-notify: {primary.notify_source} "),
        (example_zones, zone_list),
    ], "nsd.conf")


class Secondary:
    """One secondary server process. `start()` returns once it answers queries (not once it
    holds a zone: `wait_serial` waits for that)."""

    kind = ""
    own_log = ""  # the file it logs to besides its output, if any

    def __init__(self, tmp: Path, primary: Primary, zones: list[str],
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.tmp = tmp
        self.primary = primary
        self.zones = zones
        self.host = host
        self.port = port
        self.fixed_port = port != 0
        self.process: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        raise NotImplementedError

    def command(self, conf: Path) -> list[str]:
        raise NotImplementedError

    def start(self) -> Secondary:
        for _ in range(1 if self.fixed_port else PORT_TRIES):
            if not self.fixed_port:
                self.port = free_port(self.host)
            conf = self.tmp / f"{self.kind}.conf"
            conf.write_text(self.config())
            with open(self.tmp / f"{self.kind}.out", "ab") as out:
                self.process = subprocess.Popen(self.command(conf), stdout=out,
                                                stderr=subprocess.STDOUT, cwd=self.tmp)
            if self._answers():
                return self
            self._kill()
            if not self._port_clash():
                break
        raise SecondaryError(f"{self.kind} did not start on {self.host}@{self.port}; "
                             f"its log:\n{self.log()}")

    def _answers(self) -> bool:
        """Whether it answers an SOA query (any rcode: without its zone yet it refuses or
        fails it) before it exits or the start timeout passes."""
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                self.soa_query(self.zones[0], timeout=0.2)
                return True
            except (dns.exception.Timeout, ConnectionRefusedError):
                continue  # not listening yet; the query's timeout paces this loop
        return False

    def _port_clash(self) -> bool:
        return bool(re.search(r"address already in use|cannot bind|can't bind",
                              self.log(), re.IGNORECASE))

    def soa_query(self, zone: str, timeout: float = 1.0) -> dns.message.Message:
        query = dns.message.make_query(zone, dns.rdatatype.SOA)
        query.flags &= ~0x0100  # no RD: an authoritative server
        return dns.query.udp(query, self.host, port=self.port, timeout=timeout)

    def serial(self, zone: str) -> int | None:
        """The serial it serves for `zone`, or None while it serves none (authoritatively)."""
        try:
            response = self.soa_query(zone, timeout=0.5)
        except dns.exception.Timeout:
            return None
        if response.rcode() != dns.rcode.NOERROR or not response.flags & 0x0400:
            return None
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.SOA:
                return int(rrset[0].serial)
        return None

    def wait_serial(self, zone: str, at_least: int, timeout: float) -> float:
        """Seconds until it serves `zone` with a serial of `at_least` or later."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            found = self.serial(zone)
            if found is not None and found >= at_least:
                return time.monotonic() - start
            time.sleep(0.02)  # polling period while the transfer runs, not a readiness guess
        raise SecondaryError(f"{self.kind} did not serve {zone} with serial >= {at_least} "
                             f"within {timeout} s (it serves {self.serial(zone)}); its log:\n"
                             f"{self.log()}")

    def log(self) -> str:
        names = [f"{self.kind}.out", *([self.own_log] if self.own_log else [])]
        return "".join((self.tmp / n).read_text(errors="replace") for n in names
                       if (self.tmp / n).exists())

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, and wait for it; both servers stop cleanly on it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            raise SecondaryError(f"{self.kind} did not stop within {timeout} s; its log:\n"
                                 f"{self.log()}") from None

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class Knot(Secondary):
    kind = "knot"

    def config(self) -> str:
        (self.tmp / "db").mkdir(exist_ok=True)  # the package creates /var/lib/knot
        return knot_conf(self.tmp, self.host, self.port, self.primary, self.zones)

    def command(self, conf: Path) -> list[str]:
        return [tool("knotd"), "-c", str(conf)]  # it logs to stderr: knot.out


class Nsd(Secondary):
    kind = "nsd"
    own_log = "nsd.log"

    def config(self) -> str:
        return nsd_conf(self.tmp, self.host, self.port, self.primary, self.zones)

    def command(self, conf: Path) -> list[str]:
        return [tool("nsd"), "-d", "-c", str(conf)]


def tool(name: str) -> str:
    for found in (shutil.which(name), shutil.which(name, path="/usr/sbin:/sbin")):
        if found:
            return found
    raise SecondaryError(f"{name} is not installed (apt-get install knot nsd; .ci/run does)")
