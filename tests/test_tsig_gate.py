"""responder/tsig_gate.py: signed requests refused on the wire, before dnspython, with the
reply `tsigwire.verify` (dnspython's reading) makes; only a request whose MAC checks goes on."""

from __future__ import annotations

import struct
from typing import Any

import dns.message
import dns.name
import dns.rcode
import dns.rrset
import dns.tsig
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthdns.responder import tsig_gate
from healthdns.responder.query import UDP
from healthdns.shared import tsigkeys as keys
from healthdns.shared import tsigwire as tsig
from tests.test_rfc8945 import answerer, query
from tests.test_tsig import NOW, SECRET, signed_query

CONFIGURED = [keys.Key("xfr.example", "hmac-sha256", SECRET),
              keys.Key("old.example", "hmac-sha1", SECRET),
              keys.Key("big.example", "hmac-sha512", SECRET)]
RING = keys.keyring(CONFIGURED)
GATE = tsig_gate.wire_keys(CONFIGURED)
SIGNERS = [
    dns.tsig.Key("xfr.example.", SECRET, "hmac-sha256"),  # known: goes on
    dns.tsig.Key("XFR.Example.", SECRET, "hmac-sha256"),  # names compare case-folded
    dns.tsig.Key("old.example.", SECRET, "hmac-sha1"),
    dns.tsig.Key("big.example.", SECRET, "hmac-sha512"),
    dns.tsig.Key(".", b"\x00" * 32, "hmac-sha256"),  # ISC's dnswkk: BADKEY
    dns.tsig.Key("stranger.example.", SECRET, "hmac-sha256"),  # BADKEY
    dns.tsig.Key("xfr.example.", SECRET, "hmac-sha384"),  # another algorithm: BADKEY
    dns.tsig.Key("xfr.example.", b"w" * 32, "hmac-sha256"),  # BADSIG
]
NAMES = ["example.test.", "xfr.example.", "a.b.xfr.example.", "WWW.Example.TEST."]


def request(key: dns.tsig.Key, name: str, qid: int, when: int, edns: bool) -> bytes:
    q = dns.message.make_query(name, "SOA", use_edns=0 if edns else False)
    q.id = qid
    q.use_tsig(key)
    q.to_wire()
    assert q.tsig is not None
    template = q.tsig[0].replace(time_signed=when)
    unsigned = dns.message.from_wire(q.to_wire(), keyring=False)
    unsigned.tsig = None
    rdata, _ = dns.tsig.sign(unsigned.to_wire(), key, template, when)
    out = dns.message.from_wire(q.to_wire(), keyring=False)
    out.tsig = dns.rrset.from_rdata(key.name, 0, rdata)
    return out.to_wire()  # the key name compressed against the question where it can be


def agree(wire: bytes) -> None:
    """The gate refuses exactly as dnspython's reading does, byte for byte; what it lets on
    is what only the key's holder can send (Verified, or a refusal over time or truncation)."""
    refused = tsig_gate.check(wire, GATE)
    checked: Any = tsig.verify(wire, RING, NOW)
    if refused is None:
        assert checked is None or isinstance(checked, tsig.Verified) or \
            checked.error in (tsig.BADTIME, tsig.BADTRUNC), checked
        return
    assert isinstance(checked, tsig.Refusal), checked
    assert (refused.rcode, refused.error) == (checked.rcode, checked.error)
    reply = tsig.error_reply(wire, refused.rcode)
    assert refused.finish(reply, NOW) == checked.finish(reply)


@settings(max_examples=300, deadline=None)
@given(signer=st.sampled_from(SIGNERS), name=st.sampled_from(NAMES),
       qid=st.integers(0, 0xFFFF), skew=st.sampled_from([0, 0, 1000]), edns=st.booleans(),
       change=st.one_of(st.none(), st.tuples(st.integers(0, 400), st.integers(0, 255))),
       cut=st.one_of(st.none(), st.integers(1, 40)))
def test_the_gate_refuses_as_dnspython_does(signer: dns.tsig.Key, name: str, qid: int,
                                            skew: int, edns: bool,
                                            change: tuple[int, int] | None,
                                            cut: int | None) -> None:
    data = bytearray(request(signer, name, qid, NOW - skew, edns))
    if change is not None:
        data[change[0] % len(data)] = change[1]
    if cut is not None:
        data = data[:-cut]
    agree(bytes(data))


@settings(max_examples=300, deadline=None)
@given(owner=st.sampled_from([b"\x00", b"\x03xfr\x07example\x00", b"\x03XfR\x07example\x00",
                              b"\xc0\x0c", b"\xc0\xff", b"\x05ab", b"\x03xfr\xc0\x14",
                              b"\x40abc\x00", b"\x01a" * 130 + b"\x00"]),
       algorithm=st.sampled_from([b"\x0bhmac-sha256\x00", b"\x0bHMAC-SHA256\x00",
                                  b"\x09hmac-sha1\x00", b"\xc0\x0c", b"\x03foo\x00", b""]),
       mac=st.binary(max_size=70), other=st.binary(max_size=8),
       slack=st.sampled_from([0, 0, 0, -3, -1, 1, 3]),
       position=st.sampled_from(["last", "answer", "not last"]))
def test_made_up_tsig_records_are_refused_as_dnspython_does(
        owner: bytes, algorithm: bytes, mac: bytes, other: bytes, slack: int,
        position: str) -> None:
    """TSIG records made by hand, well formed or not: names with pointers (back, forward,
    into themselves), label types, lengths that overrun, a TSIG out of its place."""
    head = dns.message.make_query("xfr.example.", "SOA").to_wire()
    rdata = algorithm + struct.pack("!HIH", 0, NOW, 300) + struct.pack("!H", len(mac)) + mac \
        + struct.pack("!HHH", 1234, 0, len(other)) + other
    record = owner + struct.pack("!HHIH", 250, 255, 0, max(0, len(rdata) + slack)) + rdata
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
    counts = {"last": (0, 1), "answer": (1, 0), "not last": (0, 2)}[position]
    tail = record + opt if position == "not last" else record
    wire = head[:6] + struct.pack(">HHH", counts[0], 0, counts[1]) + head[12:] + tail
    agree(wire)


def test_the_usual_signers_are_read_alike() -> None:
    for signer in SIGNERS:
        for name in NAMES:
            agree(request(signer, name, 7, NOW, True))
    assert tsig_gate.check(request(SIGNERS[0], NAMES[0], 7, NOW, True), GATE) is None


@pytest.mark.parametrize(("signer", "error"), [(SIGNERS[4], tsig.BADKEY),
                                               (SIGNERS[5], tsig.BADKEY),
                                               (SIGNERS[7], tsig.BADSIG)])
def test_junk_is_answered_without_dnspython(monkeypatch: pytest.MonkeyPatch,
                                            signer: dns.tsig.Key, error: int) -> None:
    """An unknown key or a bad MAC never reaches dnspython's reading, and the answer is the
    one RFC 8945 5.3.2 asks for: NOTAUTH, the TSIG error, an empty MAC."""
    a = answerer()

    def refuse(*_: object) -> None:
        raise AssertionError("dnspython's verify was called")

    monkeypatch.setattr(tsig, "verify", refuse)
    monkeypatch.setattr(dns.message, "from_wire", refuse)
    reply = a.answer(query("www.example.test", "A", edns=True, key=signer).to_wire(), UDP)
    assert reply is not None
    monkeypatch.undo()
    parsed = dns.message.from_wire(reply, keyring=False)
    assert parsed.rcode() == dns.rcode.NOTAUTH and parsed.tsig is not None
    assert (parsed.tsig[0].error, parsed.tsig[0].mac) == (error, b"")


def test_key_names_in_the_configuration_reach_the_wire_form() -> None:
    for text in ("xfr.example", "XFR.example", "a\\.b.example", "sp\\032ace.example", "."):
        assert tsig_gate._wire(text) == dns.name.from_text(text).canonicalize().to_wire()


def test_a_signed_query_with_the_key_is_still_answered_signed() -> None:
    a = answerer()
    q = query("www.example.test", "A", edns=True)
    reply = a.answer(q.to_wire(), UDP)
    assert reply is not None
    parsed = dns.message.from_wire(reply, keyring={SIGNERS[0].name: SIGNERS[0]},
                                   request_mac=q.mac)
    assert parsed.had_tsig and parsed.rcode() == dns.rcode.NOERROR


def test_the_signed_query_helper_of_test_tsig_is_what_we_read() -> None:
    agree(signed_query().to_wire())


JUNK_PATH = """
import sys, types
from healthdns.shared import config, messages, tables, tsigkeys
from healthdns.responder.query import Answerer
from healthdns.responder.table import Table
answer = tables.Answer(0x8400, 0, 0, 0, b"")
zone = tables.ZoneTable(b"\\x07example\\x04test\\x00", {}, {}, answer, 1)
answerer = Answerer(1232)
answerer.tsig_keys = [tsigkeys.Key("xfr.example", "hmac-sha256", bytes.fromhex(sys.argv[1]))]
answerer.table = Table(messages.Snapshot(1, [zone]), 100)
for wire in sys.argv[2:]:
    reply = answerer.answer(bytes.fromhex(wire), 0)
    assert reply is not None and reply[3] & 0x0F == 9, reply  # NOTAUTH
print(" ".join(sorted(name for name, module in sys.modules.items()
                      if type(module) is types.ModuleType and name.startswith("dns.")
                      and name not in {"dns.version", "dns.rdtypes"})))
"""


def test_a_responder_answers_signed_junk_without_loading_dnspython() -> None:
    """What a responder process loads: a flood of signed junk costs it no dnspython import
    (about 40 ms and 4 MB), nor dnspython's reading of each query."""
    import subprocess
    import sys

    junk = [request(signer, "example.test.", 1, NOW, edns)
            for signer in (SIGNERS[4], SIGNERS[5], SIGNERS[6], SIGNERS[7]) for edns in (0, 1)]
    done = subprocess.run([sys.executable, "-c", JUNK_PATH, SECRET.hex(),
                           *(w.hex() for w in junk)],
                          capture_output=True, text=True, check=False, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []
