"""DNSSEC checked by real validators: delv, and unbound as a validating resolver.

For each algorithm a server signs a zone and an alias zone; delv must report "fully validated"
for positive answers, NXDOMAIN, NODATA and empty non-terminals, and unbound must set AD=1 on the
same answers, before and after a backend goes down and comes back (answers re-signed between).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest
from conftest import need_tool
from harness import Backend, Server, config_toml

ZONES = ("example.test", "example.org")
CASES = [  # (name, type, what delv must print)
    ("www.{zone}", "A", "; fully validated"),
    ("static.{zone}", "AAAA", "; fully validated"),
    ("alias.{zone}", "A", "; fully validated"),
    ("nothere.{zone}", "A", "; negative response, fully validated"),
    ("x.static.{zone}", "TXT", "; negative response, fully validated"),
    ("static.{zone}", "MX", "; negative response, fully validated"),
    ("b.{zone}", "A", "; negative response, fully validated"),  # empty non-terminal
    ("{zone}", "DNSKEY", "; fully validated"),
    ("{zone}", "SOA", "; fully validated"),
]


def key_command() -> str:
    import sys
    return str(Path(sys.executable).parent / "healthdns-key")


def generate(tmp: Path, algorithm: str, role: str) -> tuple[Path, str]:
    """A key made by `healthdns-key generate`, and the DNSKEY line it printed."""
    path = tmp / f"{role}-{algorithm}.pem"
    out = subprocess.run([key_command(), "generate", "--zone", "example.test", "--out",
                          str(path), "--algorithm", algorithm, "--role", role],
                         capture_output=True, text=True, check=True).stdout
    dnskey = re.search(r"IN DNSKEY (.+)", out)
    assert dnskey is not None, out
    if role != "zsk":
        assert re.search(r"IN DS \d+ \d+ 2 [0-9a-f]{64}", out), out
    return path, dnskey.group(1)


def config(keys: dict[str, Path], algorithm: str, port: int, denial: str = "nsec") -> str:
    check = {"port": port, "interval": 0.2, "timeout": 0.1, "rise": 1, "fall": 1}
    dnssec = {"algorithm": algorithm, "denial": denial, "cds": True,
              **{role: str(path) for role, path in keys.items()}}
    return config_toml({
        "www": {"pool": {"addresses": ["127.0.0.1", "127.0.0.2"], "check": check,
                         "policy": "empty"}},
        "static": {"a": ["192.0.2.1"], "aaaa": ["2001:db8::1"]},
        "a.b": {"txt": ['"deep"']},
        "alias": {"cname": "static"},
    }, zone={"aliases": ["example.org"], "ttl": 1, "soa": {"minimum": 1}, "dnssec": dnssec})


PARAMS = [("ECDSAP256SHA256", ("csk",), "nsec"), ("ED25519", ("csk",), "nsec"),
          ("ECDSAP384SHA384", ("csk",), "nsec"), ("RSASHA256", ("csk",), "nsec"),
          ("ECDSAP256SHA256", ("ksk", "zsk"), "nsec"), ("ECDSAP256SHA256", ("csk",), "nsec3"),
          ("ED25519", ("ksk", "zsk"), "nsec3")]


@pytest.fixture(scope="module", params=PARAMS,
                ids=[f"{a}-{'+'.join(r)}-{d}" for a, r, d in PARAMS])
def signed(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Backend, str]]:
    algorithm, roles, denial = request.param
    tmp = tmp_path_factory.mktemp("dnssec")
    made = {role: generate(tmp, algorithm, role) for role in roles}
    anchor = next(line for role, (_, line) in made.items() if role != "zsk")
    backend = Backend("127.0.0.1")
    backend.up()
    server = Server([], tmp, config({r: p for r, (p, _) in made.items()}, algorithm,
                                    backend.port, denial)).start()
    yield server, backend, anchor
    assert server.stop() == 0
    backend.close()


def delv(server: Server, anchor: str, zone: str, name: str, rdtype: str, tmp: Path) -> str:
    flags, proto, alg, *key = anchor.split()
    anchors = tmp / f"anchors-{zone}"
    anchors.write_text(f'trust-anchors {{ {zone}. static-key {flags} {proto} {alg} '
                       f'"{"".join(key)}"; }};\n')
    result = subprocess.run([need_tool("delv"), "@" + server.host, "-p", str(server.port),
                             "-a", str(anchors), f"+root={zone}", name, rdtype],
                            capture_output=True, text=True, timeout=20, check=False)
    return result.stdout + result.stderr


@pytest.mark.parametrize("zone", ZONES)
def test_delv_validates(signed: tuple[Server, Backend, str], zone: str,
                        tmp_path: Path) -> None:
    server, _, anchor = signed
    for name, rdtype, expected in CASES:
        out = delv(server, anchor, zone, name.format(zone=zone), rdtype, tmp_path)
        assert expected in out, f"{name.format(zone=zone)} {rdtype}:\n{out}"


def test_no_dnssec_records_without_do(signed: tuple[Server, Backend, str]) -> None:
    server = signed[0]
    for name, rdtype in (("static.example.test", "A"), ("nothere.example.test", "A"),
                         ("static.example.test", "MX")):
        response = server.query(name, rdtype, use_edns=0)
        kinds = {r.rdtype for r in response.answer + response.authority}
        assert kinds.isdisjoint({46, 47}), (name, rdtype, response)
        signed_response = server.query(name, rdtype, use_edns=0, want_dnssec=True)
        kinds = {r.rdtype for r in signed_response.answer + signed_response.authority}
        assert 46 in kinds


def test_cds_and_cdnskey_published(signed: tuple[Server, Backend, str]) -> None:
    server = signed[0]
    assert server.query("example.test", "CDNSKEY").answer
    assert server.query("example.test", "CDS").answer


class Unbound:
    """A validating resolver pointed at the server by stub zones."""

    def __init__(self, server: Server, anchor: str, tmp: Path) -> None:
        self.tmp = tmp
        stubs = "".join(f'stub-zone:\n  name: "{z}."\n  stub-addr: 127.0.0.1@{server.port}\n'
                        for z in ZONES)
        anchors = "".join(f'  trust-anchor: "{z}. DNSKEY {anchor}"\n' for z in ZONES)
        self.template = textwrap.dedent("""\
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
              cache-max-ttl: 0
              cache-max-negative-ttl: 0
              val-log-level: 2
              auto-trust-anchor-file: ""
            """) + anchors + "remote-control:\n  control-enable: no\n" + stubs
        self.process: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self) -> Unbound:
        binary = need_tool("unbound")
        for attempt in range(20):  # unbound cannot report a kernel-chosen port: retry on clash
            self.port = 20000 + (os.getpid() * 7 + attempt * 997) % 40000
            conf = self.tmp / "unbound.conf"
            conf.write_text(self.template.format(port=self.port, tmp=self.tmp))
            self.process = subprocess.Popen([binary, "-d", "-c", str(conf)],
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                            text=True)
            if self._ready():
                return self
        raise AssertionError("unbound did not start")

    def _ready(self) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False  # e.g. the port was taken
            try:
                self.ask("static.example.test", "A", timeout=0.5)
                return True
            except (dns.exception.Timeout, ConnectionRefusedError):
                continue
        return False

    def ask(self, name: str, rdtype: str, timeout: float = 5) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype, want_dnssec=True)
        q.flags |= dns.flags.AD
        return dns.query.udp(q, "127.0.0.1", port=self.port, timeout=timeout)

    def stop(self) -> str:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            out, _ = self.process.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
        return out


def test_unbound_sets_ad_through_health_changes(signed: tuple[Server, Backend, str],
                                                tmp_path: Path) -> None:
    server, backend, anchor = signed
    resolver = Unbound(server, anchor, tmp_path).start()
    try:
        for zone in ZONES:
            for name, rdtype, _ in CASES:
                response = resolver.ask(name.format(zone=zone), rdtype)
                assert response.flags & dns.flags.AD, f"{name.format(zone=zone)} {rdtype}"
                assert response.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)

        def addresses() -> set[str]:
            response = resolver.ask("www.example.test", "A")
            assert response.flags & dns.flags.AD and response.rcode() == dns.rcode.NOERROR
            return {rd.to_text() for rrset in response.answer for rd in rrset
                    if rrset.rdtype == 1}

        assert addresses() == {"127.0.0.1"}
        backend.down()  # all down, policy empty: signed NODATA, the name still exists
        server.wait_until(lambda: addresses() == set(), 5, "www going empty")
        backend.up()
        server.wait_until(lambda: addresses() == {"127.0.0.1"}, 5, "www coming back")
    finally:
        log = resolver.stop()
    assert "validation failure" not in log, log


def test_key_material_stays_in_the_signer(signed: tuple[Server, Backend, str]) -> None:
    """The private key's secret bytes appear in no responder's memory."""
    from cryptography.hazmat.primitives import serialization

    server = signed[0]
    pem_paths = [Path(p) for p in re.findall(r'(?:csk|ksk|zsk) = "([^"]+)"',
                                             Path(server.args[1]).read_text())]
    secrets = [_secret(serialization.load_pem_private_key(p.read_bytes(), None))
               for p in pem_paths]
    signer_pid = int(re.findall(r"signer started \(pid (\d+)\)", server.output())[-1])
    responders = [int(p) for p in re.findall(r"responder\d+ started \(pid (\d+)\)",
                                             server.output())]
    assert any(_in_memory(signer_pid, s) for s in secrets), "the scan finds nothing anywhere"
    for pid in responders:
        assert pid in server.children()
        assert not any(_in_memory(pid, s) for s in secrets)


def _secret(key: object) -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, ec.EllipticCurvePrivateKey):
        value = key.private_numbers().private_value
        return value.to_bytes((key.curve.key_size + 7) // 8, "big")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        from cryptography.hazmat.primitives import serialization
        return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
    assert isinstance(key, rsa.RSAPrivateKey)
    d = key.private_numbers().d
    return d.to_bytes((d.bit_length() + 7) // 8, "big")[:32]


def _in_memory(pid: int, secret: bytes) -> bool:
    """Whether `secret` (or its little-endian form, as bignum libraries hold it) is in
    the readable memory of process `pid`."""
    needles = (secret, secret[::-1])
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            addresses, perms = line.split()[:2]
            if not perms.startswith("r") or "[vvar]" in line or "[vsyscall]" in line:
                continue
            start, end = (int(x, 16) for x in addresses.split("-"))
            try:
                mem.seek(start)
                chunk = mem.read(end - start)
            except (OSError, ValueError, OverflowError):
                continue
            if any(n in chunk for n in needles):
                return True
    return False


@pytest.mark.parametrize("problem", ["missing", "world-readable", "wrong-type", "not-a-key"])
def test_unusable_key_is_a_clear_error_at_start(tmp_path: Path, problem: str) -> None:
    from harness import run_cli

    key, _ = generate(tmp_path, "ED25519", "csk")
    algorithm = "ED25519"
    if problem == "missing":
        key.unlink()
        message = f"zones[0].dnssec.csk: {key}: cannot read: No such file or directory"
    elif problem == "world-readable":
        key.chmod(0o644)
        message = f"zones[0].dnssec.csk: {key} has mode 644: group and others must have no access"
    elif problem == "wrong-type":
        algorithm = "ECDSAP256SHA256"
        message = f"zones[0].dnssec.csk: {key} holds an Ed25519 key, which is not a " \
                  "ECDSAP256SHA256 key"
    else:
        key.write_text("hello\n")
        message = f"zones[0].dnssec.csk: {key} is not an unencrypted PEM private key"
    conf = tmp_path / "bad.toml"
    conf.write_text(textwrap.dedent(f"""
        [server]
        listen = ["127.0.0.1:0"]
        responders = 1
        [[zones]]
        origin = "example.test"
        nameservers = ["ns1.example.net"]
        [zones.dnssec]
        algorithm = "{algorithm}"
        csk = "{key}"
        [zones.records.www]
        a = ["192.0.2.1"]
    """))
    result = run_cli(["--config", str(conf)])
    assert result.returncode == 1
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_denial_uses_the_configured_records(signed: tuple[Server, Backend, str]) -> None:
    """NSEC3 zones prove with NSEC3 (and publish NSEC3PARAM), NSEC zones with NSEC."""
    server = signed[0]
    nsec3 = 'denial = "nsec3"' in Path(server.args[1]).read_text()
    for name, rdtype in (("nothere.example.test", "A"), ("static.example.test", "MX"),
                         ("b.example.test", "A")):
        response = server.query(name, rdtype, use_edns=0, want_dnssec=True)
        kinds = {r.rdtype for r in response.authority}
        assert (50 in kinds) == nsec3 and (47 in kinds) != nsec3, (name, rdtype, kinds)
    assert bool(server.query("example.test", "NSEC3PARAM").answer) == nsec3


def test_key_tool_prints_a_ds_for_each_zone_and_alias(signed: tuple[Server, Backend, str]) -> None:
    server = signed[0]
    out = subprocess.run([key_command(), "ds", "--config", server.args[1]],
                         capture_output=True, text=True, check=True).stdout
    for zone in ZONES:
        assert re.search(rf"^{zone}\. \d+ IN DS \d+ \d+ 2 [0-9a-f]{{64}}$", out, re.MULTILINE), out
