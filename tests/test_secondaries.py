"""Real secondaries fed by healthdns (issue #11): Knot DNS and NSD, configured as
docs/transfers.md says, transfer every zone from healthdns's transfer listener.

One healthdns serves a signed zone (NSEC3) and an unsigned zone with an alias, with pools on
real backends (127.0.0.1 and 127.0.0.2). The secondaries must take every zone by AXFR, then
each change by IXFR after a NOTIFY, answer every name and type as healthdns does, serve a zone
delv validates, and follow a backend going down within a second of healthdns itself. A third
secondary with the right key name but a wrong secret must get nothing.
"""

from __future__ import annotations

import logging
import re
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.tsig
import pytest
from conftest import need_tool
from harness import Backend, Server, run_cli
from secondaries import (
    Knot,
    Nsd,
    Primary,
    Secondary,
    SecondaryError,
    doc_block,
    free_port,
    knot_conf,
    nsd_conf,
    replace_all,
)
from test_dnssec import generate

log = logging.getLogger(__name__)
S = TypeVar("S", bound=Secondary)

KEY = "healthdns-transfer"
SIGNED = "signed.test"
PLAIN = "plain.test"
ALIAS = "plain-alias.test"
ZONES = [SIGNED, PLAIN, ALIAS]
# Seconds a secondary may lag healthdns's own answer. The lags are printed: 5 to 30 ms on an
# idle machine (issue #11 asks for under a second). With every core busy (stress-ng on both)
# they were up to 5.6 s, by design: the transfer process runs at nice 19 with SCHED_BATCH, so
# that it never takes CPU from the responders, and then gets about 1.5% of a core. What the
# limit tells apart is NOTIFY at work from a secondary waiting for its SOA refresh (3600 s).
FAILOVER_LIMIT = 15.0
# Types never asked for directly: proofs and signatures come with the answers they prove.
UNASKED = {dns.rdatatype.RRSIG, dns.rdatatype.NSEC, dns.rdatatype.NSEC3}


def healthdns_config(tmp: Path, key_file: Path, csk: Path, check_port: int,
                     transfer_port: int, knot_port: int, nsd_port: int) -> str:
    pool = (f'addresses = ["127.0.0.1", "127.0.0.2"], check = {{ port = {check_port}, '
            'interval = 0.1, timeout = 0.1, rise = 1, fall = 1 }')
    records = f"""
        [zones.records.www]
        pool = {{ {pool} }}

        [zones.records.rot]
        ttl = 5
        pool = {{ {pool}, max_answers = 1 }}

        [zones.records.mail]
        a = ["192.0.2.25"]
        aaaa = ["2001:db8::25"]

        [zones.records."@"]
        mx = ["10 mail"]
        txt = ['"v=spf1 -all"']

        [zones.records."a.b"]
        txt = ['"deep"']

        [zones.records.alias]
        cname = "www"
    """
    return f"""
        [server]
        listen = ["127.0.0.1:0"]
        responders = 1

        [[tsig]]
        name = "{KEY}"
        file = "{key_file}"

        [transfer]
        listen = ["127.0.0.1:{transfer_port}"]
        notify_source = "127.0.0.1"
        notify_timeout = 0.2
        secondaries = [
          {{ address = "127.0.0.1:{knot_port}", key = "{KEY}" }},
          {{ address = "127.0.0.1:{nsd_port}", key = "{KEY}" }},
        ]
        # the secondary with a wrong secret is let in by address: its signature must fail
        allow = [{{ networks = ["127.0.0.0/8"], key = "{KEY}" }}]

        [[zones]]
        origin = "{SIGNED}"
        nameservers = ["ns1.example.net", "ns2.example.org"]
        ttl = 1

        [zones.soa]
        minimum = 1
        refresh = 3600
        retry = 600

        [zones.dnssec]
        algorithm = "ECDSAP256SHA256"
        csk = "{csk}"
        denial = "nsec3"
        cds = true
        {records}

        [[zones]]
        origin = "{PLAIN}"
        aliases = ["{ALIAS}"]
        nameservers = ["ns1.example.net", "ns2.example.org"]
        ttl = 1

        [zones.soa]
        minimum = 1
        refresh = 3600
        retry = 600
        {records}
    """


class Setup:
    """Everything the module's tests share."""

    def __init__(self, server: Server, backends: tuple[Backend, Backend], knot: Knot,
                 nsd: Nsd, wrong: Knot, anchor: str, primary: Primary, secret: str) -> None:
        self.server = server
        self.backends = backends
        self.knot = knot
        self.nsd = nsd
        self.wrong = wrong
        self.anchor = anchor
        self.primary = primary
        self.secret = secret

    @property
    def secondaries(self) -> list[Secondary]:
        return [self.knot, self.nsd]


def keymgr_key(tmp: Path, file_name: str) -> tuple[Path, str]:
    """A TSIG key named KEY made the way the guide says (`keymgr -t`), and its secret."""
    text = subprocess.run([need_tool("keymgr"), "-t", KEY, "hmac-sha256"], capture_output=True,
                          text=True, check=True).stdout
    path = tmp / file_name
    path.write_text(text)
    path.chmod(0o600)
    found = re.search(r"secret: (\S+)", text)
    assert found, text
    return path, found.group(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    need_tool("knotd")
    need_tool("nsd")
    tmp = tmp_path_factory.mktemp("secondaries")
    key_file, secret = keymgr_key(tmp, f"{KEY}.key")
    csk, anchor = generate(tmp, "ECDSAP256SHA256", "csk")
    first = Backend("127.0.0.1")
    second = Backend("127.0.0.2", first.port)
    first.up()
    second.up()
    transfer_port, knot_port, nsd_port = free_port(), free_port(), free_port()
    server = Server([], tmp, healthdns_config(tmp, key_file, csk, first.port, transfer_port,
                                              knot_port, nsd_port)).start()
    primary = Primary("127.0.0.1", transfer_port, "127.0.0.1", KEY, key_file, secret)
    wrong_primary = Primary("127.0.0.1", transfer_port, "127.0.0.1", KEY,
                            *keymgr_key(tmp, "wrong.key"))  # the same name, another secret
    started: list[Secondary] = []
    try:
        knot = _start(started, Knot(_dir(tmp, "knot"), primary, ZONES, port=knot_port))
        nsd = _start(started, Nsd(_dir(tmp, "nsd"), primary, ZONES, port=nsd_port))
        wrong = _start(started, Knot(_dir(tmp, "wrong"), wrong_primary, ZONES))
        yield Setup(server, (first, second), knot, nsd, wrong, anchor, primary, secret)
    finally:
        for secondary in started:
            secondary.stop()
        assert server.stop() == 0
        first.close()
        second.close()


def _dir(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.mkdir()
    return path


def _start(started: list[Secondary], secondary: S) -> S:
    started.append(secondary)
    secondary.start()
    return secondary


def serial(server: Server, zone: str) -> int:
    response = server.query(zone, "SOA")
    return int(response.answer[0][0].serial)


def healthdns_zone(setup: Setup, zone: str) -> list[dns.rrset.RRset]:
    """The zone as healthdns transfers it (AXFR, signed with the key)."""
    key = dns.tsig.Key(KEY, setup.secret, "hmac-sha256")
    records: list[dns.rrset.RRset] = []
    for message in dns.query.xfr(setup.primary.host, zone, port=setup.primary.port,
                                 keyring={key.name: key}, keyname=key.name, timeout=5,
                                 relativize=False):
        records.extend(message.answer)
    return records


def wait_all(setup: Setup, timeout: float = 10.0) -> None:
    """Until every secondary serves every zone at healthdns's serial."""
    for zone in ZONES:
        current = serial(setup.server, zone)
        for secondary in setup.secondaries:
            secondary.wait_serial(zone, current, timeout)


# --- the tests -----------------------------------------------------------------------------------


def test_every_zone_transferred_by_axfr_first(setup: Setup) -> None:
    wait_all(setup)
    for zone in ZONES:
        assert re.search(rf"\[{re.escape(zone)}\.\] AXFR, incoming, .* finished",
                         setup.knot.log()), f"Knot took no AXFR of {zone}:\n{setup.knot.log()}"
        assert re.search(rf"zone {re.escape(zone)}\.? received update to serial",
                         setup.nsd.log()), f"NSD took no transfer of {zone}:\n{setup.nsd.log()}"


def test_same_answers_for_every_name_and_type(setup: Setup) -> None:
    wait_all(setup)
    for zone in ZONES:
        owners = _owners(healthdns_zone(setup, zone))
        assert len(owners) >= 6, owners
        for name, types in owners.items():
            for rdtype in sorted(types | {dns.rdatatype.TXT, dns.rdatatype.SRV}):
                for secondary in setup.secondaries:
                    _compare(setup, secondary, name, rdtype)
        for secondary in setup.secondaries:
            _compare(setup, secondary, dns.name.from_text(f"nothere.{zone}"), dns.rdatatype.A)


def _owners(axfr: list[dns.rrset.RRset]) -> dict[dns.name.Name, set[int]]:
    """Every owner of the transferred zone and its types; NSEC3's hashed owners are not
    names anyone asks for."""
    owners: dict[dns.name.Name, set[int]] = {}
    for rrset in axfr:
        if rrset.rdtype == dns.rdatatype.NSEC3:
            continue
        kinds = owners.setdefault(rrset.name, set())
        if rrset.rdtype not in UNASKED:
            kinds.add(rrset.rdtype)
    return owners


def _compare(setup: Setup, secondary: Secondary, name: dns.name.Name, rdtype: int) -> None:
    mine = _ask(setup.server.host, setup.server.port, name, rdtype)
    theirs = _ask(secondary.host, secondary.port, name, rdtype)
    what = f"{name} {dns.rdatatype.to_text(rdtype)} from {secondary.kind}"
    assert theirs.rcode() == mine.rcode(), f"{what}: rcode\n{mine}\n---\n{theirs}"
    assert theirs.flags & dns.flags.AA, f"{what}: not authoritative\n{theirs}"
    if name.labels[0] == b"rot" and rdtype == dns.rdatatype.A:
        _compare_rotation(setup, secondary, name, theirs)
        return
    assert _rrsets(theirs.answer) == _rrsets(mine.answer), f"{what}:\n{mine}\n---\n{theirs}"
    soa = dns.rdatatype.SOA
    assert ({r for r in _rrsets(theirs.authority) if r[1] == soa}
            == {r for r in _rrsets(mine.authority) if r[1] == soa}), f"{what}:\n{mine}\n{theirs}"


def _compare_rotation(setup: Setup, secondary: Secondary, name: dns.name.Name,
                      theirs: dns.message.Message) -> None:
    """A rotating pool is transferred as one RRset with every address the rotation serves:
    healthdns answers a subset in turn, the secondary the union of those answers."""
    held = {rd.to_text() for rrset in theirs.answer if rrset.rdtype == dns.rdatatype.A
            for rd in rrset}
    served: set[str] = set()
    deadline = time.monotonic() + 3  # the responders turn to the next answer every 0.1 s
    while served != held and time.monotonic() < deadline:
        served |= setup.server.addresses(name.to_text())
        time.sleep(0.02)
    assert served == held, (f"{name}: {secondary.kind} holds {sorted(held)}, healthdns's "
                            f"rotation serves {sorted(served)}: the secondary should hold the union")


def _ask(host: str, port: int, name: dns.name.Name, rdtype: int) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    query.flags &= ~dns.flags.RD
    return dns.query.tcp(query, host, port=port, timeout=2)


def _rrsets(section: list[dns.rrset.RRset]) -> set[tuple[str, int, int, int, frozenset[str]]]:
    return {(r.name.to_text().lower(), r.rdtype, r.covers, r.ttl,
             frozenset(rd.to_text() for rd in r)) for r in section}


VALIDATED = [("www.{zone}", "A", "; fully validated"),
             ("mail.{zone}", "AAAA", "; fully validated"),
             ("alias.{zone}", "A", "; fully validated"),
             ("nothere.{zone}", "A", "; negative response, fully validated"),
             ("mail.{zone}", "MX", "; negative response, fully validated"),
             ("b.{zone}", "A", "; negative response, fully validated"),
             ("{zone}", "DNSKEY", "; fully validated")]


@pytest.mark.parametrize("kind", ["knot", "nsd"])
def test_delv_validates_the_signed_zone_through_the_secondary(setup: Setup, kind: str,
                                                              tmp_path: Path) -> None:
    wait_all(setup)
    secondary = setup.knot if kind == "knot" else setup.nsd
    flags, proto, alg, *key = setup.anchor.split()
    anchors = tmp_path / "anchors"
    anchors.write_text(f'trust-anchors {{ {SIGNED}. static-key {flags} {proto} {alg} '
                       f'"{"".join(key)}"; }};\n')
    for name, rdtype, expected in VALIDATED:
        qname = name.format(zone=SIGNED)
        result = subprocess.run([need_tool("delv"), f"@{secondary.host}", "-p",
                                 str(secondary.port), "-a", str(anchors), f"+root={SIGNED}",
                                 qname, rdtype], capture_output=True, text=True, timeout=20,
                                check=False)
        out = result.stdout + result.stderr
        assert expected in out, f"{qname} {rdtype} from {kind}:\n{out}"


def test_a_wrong_secret_gets_no_zone(setup: Setup) -> None:
    wait_all(setup)  # the right key has had every zone by now
    deadline = time.monotonic() + 10
    # Knot cannot verify healthdns's unsigned NOTAUTH answer (RFC 8945 5.2: BADSIG)
    while not re.search(r"refresh, .*failed \((failed to verify TSIG|.*NOTAUTH.*)\)",
                        setup.wrong.log()):
        assert time.monotonic() < deadline, f"no failed transfer logged:\n{setup.wrong.log()}"
        time.sleep(0.05)  # polling the log for the refused attempt
    for zone in ZONES:
        assert setup.wrong.serial(zone) is None, (zone, setup.wrong.log())
    # healthdns refused it: at least one request per zone (its retries add more)
    _counters_once(setup, lambda c: c.get("refused", 0) >= len(ZONES), "refused every zone")


def test_backend_down_reaches_the_secondaries_at_once_by_notify(setup: Setup) -> None:
    """NOTIFY -> IXFR: healthdns's own answer changes when the check fails; each secondary's
    must follow within FAILOVER_LIMIT. Then the backend comes back, the same way."""
    wait_all(setup)
    before = {z: serial(setup.server, z) for z in ZONES}
    counted = _settled_counters(setup)
    _, second = setup.backends
    second.down()
    lags = _lags(setup, present=False)
    second.up()
    back = _lags(setup, present=True)
    wait_all(setup)
    log.warning("secondary lag behind healthdns: down %s, up %s",
                {k: f"{v:.3f}s" for k, v in lags.items()}, {k: f"{v:.3f}s" for k, v in back.items()})
    print(f"\nsecondary lag behind healthdns: down {lags}, up {back}")
    for kind, lag in (*lags.items(), *back.items()):
        assert lag < FAILOVER_LIMIT, f"{kind} followed healthdns after {lag:.3f} s"
    for zone in ZONES:
        assert serial(setup.server, zone) > before[zone]
    assert re.search(rf"\[{PLAIN}\.\] IXFR, incoming, .* finished", setup.knot.log()), \
        f"Knot took the change without IXFR:\n{setup.knot.log()}"
    # NSD does not log which kind it asked for; healthdns counts what it sent. Two changes of
    # three zones to two secondaries: an IXFR at least for each zone and secondary (one may
    # bring both changes, when a secondary was still behind on a zone whose answer the lags
    # do not watch as the second came), and not one whole zone.
    wanted = counted["ixfr"] + len(ZONES) * len(setup.secondaries)
    now = _counters_once(setup, lambda c: c["ixfr"] >= wanted, f"{wanted} IXFRs in all")
    assert (now["axfr"], now["fallback"]) == (counted["axfr"], counted["fallback"]), \
        f"a secondary took a whole zone for a change: {counted} then {now}"


def _counters_once(setup: Setup, done: Callable[[dict[str, int]], bool],
                   what: str) -> dict[str, int]:
    """The transfer counters once `done` holds for them; they come once a second (from a
    process at nice 19: later on a busy machine)."""
    deadline = time.monotonic() + FAILOVER_LIMIT
    while not done(counters := transfer_counters(setup.server)):
        assert time.monotonic() < deadline, f"never {what}: {counters}"
        time.sleep(0.1)  # polling /metrics
    return counters


def _settled_counters(setup: Setup, period: float = 1.0) -> dict[str, int]:
    """The transfer counters once every transfer so far is in them: they arrive once a
    `period`, so once they have stayed the same for more than one, with the first AXFRs of
    both secondaries counted."""
    deadline = time.monotonic() + 10
    last, since = transfer_counters(setup.server), time.monotonic()
    while (time.monotonic() - since < 1.5 * period
           or last.get("axfr", 0) < len(ZONES) * len(setup.secondaries)):
        assert time.monotonic() < deadline, f"the transfer counters never settled: {last}"
        time.sleep(0.1)  # polling /metrics
        now = transfer_counters(setup.server)
        if now != last:
            last, since = now, time.monotonic()
    return last


def transfer_counters(server: Server) -> dict[str, int]:
    """healthdns's transfer counters by kind (axfr, ixfr, fallback, refused), from /metrics."""
    with urllib.request.urlopen(f"{server.control}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {kind: int(float(count)) for kind, count in
            re.findall(r'^healthdns_transfers_total\{kind="(\w+)"\} (\S+)', text, re.MULTILINE)}


def _lags(setup: Setup, present: bool, timeout: float = 2 * FAILOVER_LIMIT) -> dict[str, float]:
    """How long after healthdns's own answer for www (A) changed each secondary's did, in
    seconds: healthdns and every secondary are asked in turn until all have changed."""
    name = f"www.{PLAIN}"
    start = time.monotonic()
    changed: dict[str, float] = {}
    targets: list[tuple[str, str, int]] = [("healthdns", setup.server.host, setup.server.port)]
    targets += [(s.kind, s.host, s.port) for s in setup.secondaries]
    while len(changed) < len(targets):
        if time.monotonic() - start > timeout:
            raise SecondaryError(f"not all changed within {timeout} s: {changed}\n"
                                 f"knot:\n{setup.knot.log()}\nnsd:\n{setup.nsd.log()}")
        for kind, host, port in targets:
            if kind not in changed and _has(host, port, name, "127.0.0.2") == present:
                changed[kind] = time.monotonic()
    return {kind: at - changed["healthdns"] for kind, at in changed.items()
            if kind != "healthdns"}


def _has(host: str, port: int, name: str, address: str) -> bool | None:
    """Whether the answer for `name` holds `address`; None when no answer came."""
    query = dns.message.make_query(name, dns.rdatatype.A)
    query.flags &= ~dns.flags.RD
    try:
        response = dns.query.udp(query, host, port=port, timeout=0.2)
    except dns.exception.Timeout:
        return None
    return any(rd.to_text() == address for rrset in response.answer for rd in rrset)


@pytest.mark.parametrize("kind", ["knot", "nsd"])
def test_the_guides_configs_pass_the_servers_own_checks(kind: str, tmp_path: Path) -> None:
    """The blocks of docs/transfers.md, as rendered for the tests, pass `knotc conf-check` and
    `nsd-checkconf` (the integration tests above also start them)."""
    key_file, secret = keymgr_key(tmp_path, "k.key")
    primary = Primary("127.0.0.1", 8053, "127.0.0.1", KEY, key_file, secret)
    if kind == "knot":
        text = knot_conf(tmp_path, "127.0.0.1", 5300, primary, ZONES)
        command = [need_tool("knotc"), "-c", str(tmp_path / "conf"), "conf-check"]
    else:
        text = nsd_conf(tmp_path, "127.0.0.1", 5300, primary, ZONES)
        command = [need_tool("nsd-checkconf"), str(tmp_path / "conf")]
    (tmp_path / "conf").write_text(text)
    result = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    assert result.returncode == 0, f"{kind}:\n{text}\n{result.stdout}{result.stderr}"
    for zone in ZONES:
        assert zone in text


def test_the_guides_healthdns_config_passes_check_config(tmp_path: Path) -> None:
    """The guide's `[[tsig]]` and `[transfer]` block, with a key file made by keymgr and a
    zone, is accepted by `--check-config`."""
    key_file, _ = keymgr_key(tmp_path, "k.key")
    text = replace_all(doc_block("healthdns.toml"), [
        ('"/etc/healthdns/healthdns-transfer.key"', f'"{key_file}"'),
    ], "healthdns.toml")
    config = tmp_path / "healthdns.toml"
    config.write_text(text + '\n[[zones]]\norigin = "example.com"\n'
                      'nameservers = ["ns1.example.net", "ns2.example.org"]\n')
    result = run_cli(["--config", str(config), "--check-config"])
    assert result.returncode == 0, f"{text}\n{result.stdout}{result.stderr}"
