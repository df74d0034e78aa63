"""Name compression of the answers (RFC 1035 4.1.4), checked against Knot DNS and validators.

The signer writes every owner name, and the names in SOA, NS, CNAME, MX and PTR rdata, as a
pointer to where the name (or its longest suffix) is already in the response: the question or
an earlier record. What a zone's names share (the SOA of negative answers, the NSEC and NSEC3
records proving an NXDOMAIN) the responder moves to each question (`shared/compression.py`).

In process, hypothesis asks a zone (unsigned, NSEC, NSEC3; a short and a 57-character origin)
any name, in any case, any type, through every path of a responder (packet cache and kept
NXDOMAIN answers included): each answer parses, each record in it is a record of the zone (a
pointer that lands amiss makes another name), and each RRset validates with the zone's key.

On the wire, healthdns and Knot serve the same records signed with the same key (imported
with keymgr): no answer of healthdns is longer than Knot's, a client advertising 512 octets
gets every answer Knot fits in them, every NSEC3 NXDOMAIN of the 57-character zone fits in
1,232 octets (one UDP datagram, no retry over TCP), and delv validates them.
"""

from __future__ import annotations

import functools
import random
import re
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from conftest import need_tool
from harness import Server
from hypothesis import given, settings
from hypothesis import strategies as st
from secondaries import free_port
from test_records import Clock, decode, parse

from healthdns.responder.query import Answerer
from healthdns.responder.table import Table
from healthdns.shared import config, messages
from healthdns.signer import keys
from healthdns.signer.main import Signer

LONG = "compression-saves-room-in-every-answers.healthdns.example"
assert len(LONG) == 57
ORIGINS = ("example.test", LONG)
DENIALS = ("nsec", "nsec3")
# Every kind of name: compressible rdata (MX, CNAME, PTR, the SOA), rdata that is not (SRV),
# CNAME chains in and out of the zone and to a name that does not exist, an empty non-terminal.
RECORDS: dict[str, dict[str, Any]] = {
    "@": {"mx": ["10 mail", "20 mx.example.net."], "txt": ['"apex"']},
    "www": {"a": ["192.0.2.10", "192.0.2.11"], "aaaa": ["2001:db8::10"]},
    "mail": {"a": ["192.0.2.3"]},
    "ns": {"a": ["192.0.2.53"]},
    "alias": {"cname": "www"},
    "chain": {"cname": "alias"},
    "away": {"cname": "elsewhere.example.net."},
    "gone": {"cname": "nothere"},
    "deep.below": {"txt": ['"deep"']},
    "_sip._tcp": {"srv": ["10 60 5060 mail"]},
    "ptr": {"ptr": ["www"]},
}
NAMES = ["", "www", "mail", "ns", "alias", "chain", "away", "gone", "deep.below", "below",
         "_sip._tcp", "_tcp", "ptr", "nothere", "x.nothere", "x.below", "zz.deep.below",
         "a.www", "zzzz"]
TYPES = ["A", "AAAA", "MX", "TXT", "NS", "SOA", "SRV", "PTR", "CNAME", "DNSKEY", "NSEC",
         "NSEC3PARAM", "CAA", "ANY"]


def document(origin: str, denial: str, key: str) -> dict[str, Any]:
    """The zone (`denial`: "unsigned" or how it is signed), and transfers configured: the
    signer then lists every record it serves."""
    zone: dict[str, Any] = {"origin": origin, "nameservers": [f"ns.{origin}", "ns2.example.net"],
                            "ttl": 300, "records": RECORDS}
    if denial != "unsigned":
        zone["dnssec"] = {"csk": key, "algorithm": "ED25519", "denial": denial}
    return {"transfer": {"listen": ["127.0.0.1:5399"], "require_tsig": False}, "zones": [zone]}


# --- in process -------------------------------------------------------------------------------


@dataclass
class Zone:
    """A signed zone as one generation of the signer made it, and a responder serving it."""

    origin: dns.name.Name
    answerer: Answerer
    records: set[tuple[dns.name.Name, int, bytes]]  # (owner, type, rdata) of every record
    dnskey: dns.rrset.RRset | None  # None when unsigned
    now: float


@functools.cache
def zone(tmp: str, origin: str, denial: str) -> Zone:
    key = Path(tmp) / "csk.pem"
    if not key.exists():
        keys.write(keys.generate(keys.Algorithm.ED25519), str(key))
    clock = Clock()
    cfg = config.from_mapping(document(origin, denial, str(key)))
    published = Signer(cfg, now=clock).update({}, full=True)
    assert published is not None
    answerer = Answerer(4096)
    snapshot = messages.decode_to_responder(published.snapshot)
    assert isinstance(snapshot, messages.EncodedSnapshot)
    answerer.table = Table(snapshot, cache_size=100)
    listed = decode(published.records, messages.Records)
    found: set[tuple[dns.name.Name, int, bytes]] = set()
    dnskey = None
    for wire in [listed.zones[0].soa, *(r for rrs in listed.zones[0].owners.values()
                                         for r in rrs)]:
        name, rdtype, ttl, rdata = parse(wire)
        found.add((name, rdtype, rdata.to_digestable()))
        if rdtype == dns.rdatatype.DNSKEY:
            dnskey = dnskey or dns.rrset.RRset(name, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
            dnskey.add(rdata, ttl)
    return Zone(dns.name.from_text(origin), answerer, found, dnskey, clock.now)


@pytest.fixture(scope="module")
def tmp_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("keys"))


def any_case(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if flip else c for c, flip in zip(text, flips, strict=True))


@st.composite
def queries(draw: st.DrawFn, origin: str) -> tuple[bytes, bool]:
    """A query for any name of the zone, or one that is not, in any case: no EDNS, or EDNS
    with or without DO and any payload size; over UDP or TCP."""
    label = draw(st.sampled_from(NAMES) | st.text("abcdefghijklmnopqrstuvwxyz0123456789-",
                                                  min_size=1, max_size=12))
    parent = draw(st.sampled_from(["", "www.", "below.", "nothere."]))
    name = ".".join(x for x in (label, parent.rstrip("."), origin) if x)
    edns = draw(st.sampled_from([None, (512, False), (512, True), (1232, True), (4096, True),
                                 (4096, False)]))
    extra: dict[str, Any] = {} if edns is None else {
        "use_edns": 0, "payload": edns[0], "want_dnssec": edns[1]}
    query = dns.message.make_query(any_case(draw, name), draw(st.sampled_from(TYPES)), **extra)
    query.flags &= ~dns.flags.RD
    return query.to_wire(), draw(st.booleans())


def check(found: Zone, response: bytes) -> None:
    """The answer parses; its records are the zone's; its RRsets validate with the key."""
    message = dns.message.from_wire(response)
    if message.flags & dns.flags.TC:
        assert not message.answer and not message.authority
        return
    every = message.answer + message.authority
    for rrset in every:
        if rrset.rdtype == dns.rdatatype.RRSIG:
            continue
        if not rrset.name.is_subdomain(found.origin):  # where a CNAME leads: not ours
            continue
        for rdata in rrset:
            record = (rrset.name, rrset.rdtype, rdata.to_digestable())
            assert record in found.records, f"not a record of the zone: {rrset}"
        if message.ednsflags & dns.flags.DO and found.dnskey is not None:
            sigs = [r for r in every if r.rdtype == dns.rdatatype.RRSIG and r.name == rrset.name
                    and r.covers == rrset.rdtype]
            assert len(sigs) == 1, f"{rrset.name} {rrset.rdtype}: {len(sigs)} RRSIG sets"
            dns.dnssec.validate(rrset, sigs[0], {found.origin: found.dnskey}, now=found.now)


@pytest.mark.parametrize("denial", ["unsigned", *DENIALS])
@pytest.mark.parametrize("origin", ORIGINS, ids=["short", "57"])
@settings(max_examples=60)
@given(data=st.data())
def test_every_answer_holds_the_zone_s_records_and_validates(
        tmp_dir: str, origin: str, denial: str, data: st.DataObject) -> None:
    found = zone(tmp_dir, origin, denial)
    for wire, tcp in data.draw(st.lists(queries(origin), min_size=1, max_size=12)):
        response = found.answerer.answer(wire, tcp)
        assert response is not None
        assert response == found.answerer.slow(wire, tcp)  # each path writes the same
        check(found, response)


@pytest.mark.parametrize("denial", DENIALS)
def test_a_flood_s_kept_answers_point_at_their_own_names(tmp_dir: str, denial: str) -> None:
    """Names of one label under one parent, labels of every length in turn, in any case: the
    kept NXDOMAIN answers (one per label length) hold the zone's records for each name."""
    found = zone(tmp_dir, LONG, denial)
    rng = random.Random(7)
    for i in range(300):
        label = "".join(rng.choice("aBcDeFgH0123") for _ in range(1 + i % 20))
        query = dns.message.make_query(f"{label}.www.{LONG}", "A", want_dnssec=i % 3 > 0)
        response = found.answerer.answer(query.to_wire(), False)
        assert response is not None
        check(found, response)
        assert dns.message.from_wire(response).rcode() == dns.rcode.NXDOMAIN


# --- against Knot -----------------------------------------------------------------------------


@dataclass
class Pair:
    """healthdns and Knot serving one zone, signed with one key."""

    origin: str
    denial: str
    healthdns: Server
    knot_port: int
    anchor: str
    tmp: Path


def zone_file(origin: str, soa: dns.message.Message) -> str:
    """RECORDS as a zone file, with the SOA healthdns serves (its serial, its defaults)."""
    record = soa.answer[0]
    lines = [f"$ORIGIN {origin}.", "$TTL 300", f"@ {record.ttl} SOA {record[0].to_text()}",
             f"@ 3600 NS ns.{origin}.", "@ 3600 NS ns2.example.net."]
    for owner, fields in RECORDS.items():
        for rdtype, values in fields.items():
            for value in values if isinstance(values, list) else [values]:
                lines.append(f"{owner} {rdtype.upper()} {value}")
    return "\n".join(lines) + "\n"


def knot_conf(tmp: Path, port: int, origin: str, denial: str) -> str:
    return textwrap.dedent(f"""\
        server:
          listen: 127.0.0.1@{port}
          rundir: {tmp}
        database:
          storage: {tmp}
        log:
          - target: stderr
            any: info
        policy:
          - id: same-key
            algorithm: ecdsap256sha256
            manual: on
            nsec3: {"on" if denial == "nsec3" else "off"}
            nsec3-iterations: 0
            nsec3-salt-length: 0
        zone:
          - domain: {origin}
            file: {tmp}/zone
            zonefile-sync: -1
            journal-content: none
            dnssec-signing: on
            dnssec-policy: same-key
        """)


def start_knot(tmp: Path, origin: str, denial: str, pem: Path) -> tuple[subprocess.Popen[bytes],
                                                                         int]:
    """knotd signing the zone with the imported key; returns once it serves it signed."""
    for _ in range(8):  # knotd takes the port it is given: another on a clash
        port = free_port()
        conf = tmp / "knot.conf"
        conf.write_text(knot_conf(tmp, port, origin, denial))
        if not (tmp / "keys-imported").exists():
            subprocess.run([need_tool("keymgr"), "-c", str(conf), origin, "import-pem",
                            str(pem), "ksk=yes", "zsk=yes"], check=True, capture_output=True)
            (tmp / "keys-imported").touch()
        with open(tmp / "knot.out", "ab") as out:
            process = subprocess.Popen([need_tool("knotd"), "-c", str(conf)], stdout=out,
                                       stderr=subprocess.STDOUT)
        if _serves_signed(process, port, origin):
            return process, port
        process.kill()
        process.wait()
    raise AssertionError(f"knotd did not serve {origin}:\n{(tmp / 'knot.out').read_text()}")


def _serves_signed(process: subprocess.Popen[bytes], port: int, origin: str) -> bool:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and process.poll() is None:
        query = dns.message.make_query(origin, "SOA", want_dnssec=True)
        try:
            response = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
        except (dns.exception.Timeout, ConnectionRefusedError):
            continue  # not listening yet: the query's timeout paces this loop
        if any(r.rdtype == dns.rdatatype.RRSIG for r in response.answer):
            return True
        time.sleep(0.05)  # polling period while it signs
    return False


@pytest.fixture(scope="module", params=[(o, d) for o in ORIGINS for d in DENIALS],
                ids=[f"{d}-{'57' if o == LONG else 'short'}" for o in ORIGINS for d in DENIALS])
def pair(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    origin, denial = request.param
    tmp = tmp_path_factory.mktemp("compression")
    key = tmp / "csk.pem"
    out = subprocess.run([str(Path(sys.executable).parent / "healthdns-key"), "generate",
                          "--zone", origin, "--out", str(key)],
                         capture_output=True, text=True, check=True).stdout
    anchor = re.search(r"IN DNSKEY (.+)", out)
    assert anchor is not None, out
    pem = tmp / "csk-for-knot.pem"  # keymgr reads the key without healthdns's role line
    pem.write_text("".join(line for line in key.read_text().splitlines(keepends=True)
                           if not line.startswith("healthdns-key")))
    server = Server([], tmp, toml(origin, denial, key)).start()
    knot_dir = tmp / "knot"
    knot_dir.mkdir()
    try:
        (knot_dir / "zone").write_text(zone_file(origin, server.query(origin, "SOA")))
        knot, port = start_knot(knot_dir, origin, denial, pem)
        try:
            yield Pair(origin, denial, server, port, anchor.group(1), tmp)
        finally:
            knot.terminate()
            knot.wait(10)
    finally:
        assert server.stop() == 0


def toml(origin: str, denial: str, key: Path) -> str:
    """`document` as the configuration file, ECDSA P-256 (Knot's algorithm here)."""
    lines = ["[server]", 'listen = ["127.0.0.1:0"]', "responders = 1", "", "[[zones]]",
             f'origin = "{origin}"', f'nameservers = ["ns.{origin}", "ns2.example.net"]',
             "ttl = 300", "", "[zones.dnssec]", 'algorithm = "ECDSAP256SHA256"',
             f'denial = "{denial}"', f'csk = "{key}"']
    for owner, fields in RECORDS.items():
        lines += ["", f'[zones.records."{owner}"]']
        lines += [f"{rdtype} = {value!r}".replace("'", '"') if isinstance(value, str) else
                  f"{rdtype} = [{', '.join(repr(v) for v in value)}]"
                  for rdtype, value in fields.items()]
    return "\n".join(lines) + "\n"


def ask(port: int, name: str, rdtype: str, payload: int = 4096) -> bytes:
    """The raw response to a DO=1 query over UDP (truncated or not)."""
    query = dns.message.make_query(name, rdtype, use_edns=0, payload=payload,
                                   want_dnssec=True)
    query.flags &= ~dns.flags.RD
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(query.to_wire(), ("127.0.0.1", port))
        return sock.recv(65535)


# Negative answers (NXDOMAIN: random case, a deep name, one under an empty non-terminal, a CNAME
# to nowhere; NODATA; an empty non-terminal) and positive ones.
CASES = [("nothere", "A"), ("NoThErE", "AAAA"), ("x.y.zzz.www", "A"), ("x.below", "TXT"),
         ("www", "MX"), ("below", "A"), ("", "A"), ("mail", "TXT"), ("gone", "A"),
         ("www", "A"), ("", "MX"), ("alias", "A"), ("chain", "AAAA"), ("", "SOA"),
         ("", "DNSKEY"), ("ptr", "PTR"), ("_sip._tcp", "SRV"), ("away", "A")]


def qname(case: str, origin: str) -> str:
    return f"{case}.{origin}" if case else origin


def truncated(response: bytes) -> bool:
    return bool(response[2] & 0x02)


def test_no_answer_is_longer_than_knot_s(pair: Pair) -> None:
    """The same query to both, DO=1: healthdns's answer is at most Knot's length, and holds
    the records Knot's holds (Knot compresses owners; healthdns also the SOA's names)."""
    longer = []
    for case, rdtype in CASES:
        name = qname(case, pair.origin)
        ours, knots = (ask(port, name, rdtype) for port in (pair.healthdns.port, pair.knot_port))
        mine, theirs = dns.message.from_wire(ours), dns.message.from_wire(knots)
        assert mine.rcode() == theirs.rcode(), f"{name} {rdtype}"
        assert {r.rdtype for r in mine.answer + mine.authority} \
            == {r.rdtype for r in theirs.answer + theirs.authority}, f"{name} {rdtype}"
        if len(ours) > len(knots):
            longer.append(f"{name} {rdtype}: {len(ours)} octets, Knot {len(knots)}")
    assert not longer, "\n".join(longer)


def test_a_client_of_512_octets_gets_what_knot_fits(pair: Pair) -> None:
    """EDNS with a 512-octet payload: every answer Knot sends whole, healthdns sends whole."""
    whole = 0
    for case, rdtype in CASES:
        name = qname(case, pair.origin)
        ours, knots = (ask(port, name, rdtype, 512) for port in (pair.healthdns.port,
                                                                pair.knot_port))
        if not truncated(knots):
            whole += 1
            assert not truncated(ours), f"{name} {rdtype}: truncated, Knot's {len(knots)}"
    assert whole, "Knot fit no answer in 512 octets: the test proves nothing"


def test_every_nxdomain_fits_one_datagram(pair: Pair) -> None:
    """The default payload size (1232, RFC 9715's advice): an NXDOMAIN of the 57-character
    zone with NSEC3 (three NSEC3 records, four RRSIGs) is one datagram, no retry over TCP.
    Written in full it took 1,236 octets."""
    rng = random.Random(3)
    for _ in range(20):
        label = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(12))
        response = ask(pair.healthdns.port, f"{label}.{pair.origin}", "A", 1232)
        assert not truncated(response) and len(response) <= 1232
        assert dns.message.from_wire(response).rcode() == dns.rcode.NXDOMAIN


# What delv validates: the answers whose proofs the responder moves or that follow a moved
# SOA (positive answers are test_dnssec.py's); a CNAME out of the zone leaves the anchor.
VALIDATED = [(case, rdtype) for case, rdtype in CASES[:8] if case not in ("away", "gone")]


def test_delv_validates_the_compressed_answers(pair: Pair) -> None:
    flags, proto, alg, *key = pair.anchor.split()
    anchors = pair.tmp / "anchors"
    anchors.write_text(f'trust-anchors {{ {pair.origin}. static-key {flags} {proto} {alg} '
                       f'"{"".join(key)}"; }};\n')
    for case, rdtype in VALIDATED:
        name = qname(case, pair.origin)
        result = subprocess.run([need_tool("delv"), "@127.0.0.1", "-p",
                                 str(pair.healthdns.port), "-a", str(anchors),
                                 f"+root={pair.origin}", name, rdtype],
                                capture_output=True, text=True, timeout=20, check=False)
        out = result.stdout + result.stderr
        assert "fully validated" in out, f"{name} {rdtype}:\n{out}"
