"""RFC 8945 TSIG on the responders' port: a signed query is checked (unknown key: NOTAUTH and
BADKEY, as ISC's `dnswkk` test expects; wrong MAC: BADSIG; old time: BADTIME; a TSIG not last:
FORMERR), else answered as if unsigned and the answer signed; zone transfers stay REFUSED.
The module's own checks are in test_tsig.py; here: the answerer, then dig and kdig on the wire."""

from __future__ import annotations

import base64
import re
import struct
import subprocess
import time
from collections.abc import Iterator

import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
import pytest
from conftest import need_tool
from harness import Server, exchange
from hypothesis import given, settings
from hypothesis import strategies as st

from healthdns.responder.query import TCP, UDP, Answerer
from healthdns.responder.table import Table
from healthdns.shared import config, messages
from healthdns.signer.main import Signer
from healthdns.supervisor import views

SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ=="
KEY = dns.tsig.Key("xfr.example.", SECRET, "hmac-sha256")
RING = {KEY.name: KEY}
STRANGER = dns.tsig.Key(".", b"\x00" * 32, "hmac-sha256")  # ISC's `dnswkk`
FORGED = dns.tsig.Key("xfr.example.", b"w" * 32, "hmac-sha256")
# The octets our TSIG adds to an answer signed with KEY.
TSIG_SIZE = len(KEY.name.to_wire()) + 26 + len(KEY.algorithm.to_wire()) + 32

CFG = config.from_mapping({
    "tsig": [{"name": "xfr.example", "secret": SECRET}],
    "zones": [{
        "origin": "example.test",
        "nameservers": ["ns1.example.net"],
        "records": {
            "www": {"a": ["192.0.2.1"], "aaaa": ["2001:db8::1"]},
            **{f"t{n}": {"txt": [f'"{i:02d} {"x" * 90}"' for i in range(n)]}
               for n in (4, 5, 10, 11, 12, 13)},  # answers either side of 512 and 1232
        },
    }],
})
NAMES = ["www.example.test", "t4.example.test", "t5.example.test", "t10.example.test",
         "t11.example.test", "t12.example.test", "t13.example.test", "none.example.test",
         "example.test", "www.example.com"]
TYPES = ["A", "AAAA", "TXT", "SOA", "NS", "MX", "ANY", "AXFR", "IXFR"]


def answerer() -> Answerer:
    published = Signer(CFG).update({}, full=True)
    assert published is not None
    a = Answerer(1232, b"nsid")
    a.table = Table(messages.decode_to_child(published.snapshot), 100)  # type: ignore[arg-type]
    a.tsig_keys = CFG.tsig_keys()
    return a


ANSWERER = answerer()


def query(name: str, rdtype: str, edns: bool = False, do: bool = False,
          key: dns.tsig.Key | None = KEY, when: float | None = None) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, use_edns=0 if edns else False, want_dnssec=do)
    q.flags = 0
    if rdtype == "IXFR":
        q.authority.append(dns.rrset.from_text(name + ".", 0, "IN", "SOA", ". . 1 1 1 1 1"))
    if key is not None:
        q.use_tsig(key)
    if when is not None:  # dnspython signs at its clock: sign again at another time
        q.to_wire()
        assert q.tsig is not None
        unsigned = dns.message.from_wire(q.to_wire(), keyring=False)
        unsigned.tsig = None
        rdata, _ = dns.tsig.sign(unsigned.to_wire(), key, q.tsig[0], int(when))
        q.tsig = dns.rrset.from_rdata(q.tsig.name, 0, rdata)
        q.want_tsig_sign = False
    return q


def unsigned_part(reply: bytes) -> bytes:
    """A reply signed with KEY without its TSIG: what an unsigned query is answered."""
    arcount = struct.unpack_from(">H", reply, 10)[0]
    return reply[:10] + struct.pack(">H", arcount - 1) + reply[12:-TSIG_SIZE]


@settings(max_examples=150)
@given(name=st.sampled_from(NAMES), rdtype=st.sampled_from(TYPES), edns=st.booleans(),
       do=st.booleans(), tcp=st.booleans(), qid=st.integers(0, 0xFFFF))
def test_a_signed_query_gets_the_unsigned_answer_signed(name: str, rdtype: str, edns: bool,
                                                         do: bool, tcp: bool, qid: int) -> None:
    signed = query(name, rdtype, edns, do and edns)
    signed.id = qid
    data = signed.to_wire()
    plain = query(name, rdtype, edns, do and edns, key=None)
    plain.id = qid
    transport = TCP if tcp else UDP
    reply = ANSWERER.answer(data, transport)
    assert reply is not None
    # Verified by dnspython's client code, over our request's MAC.
    parsed = dns.message.from_wire(reply, keyring=RING, request_mac=signed.mac)
    assert parsed.had_tsig and parsed.tsig_error == 0 and parsed.id == qid
    expected = ANSWERER.answer(plain.to_wire(), transport)
    assert expected is not None
    limit = 65535 if tcp else (1232 if edns else 512)
    assert len(reply) <= limit
    if len(expected) + TSIG_SIZE <= limit:
        assert unsigned_part(reply) == expected
    else:  # RFC 8945 5.3: truncated so that the TSIG fits, and signed
        assert parsed.flags & dns.flags.TC and not parsed.answer
    if rdtype in ("AXFR", "IXFR"):
        assert parsed.rcode() == dns.rcode.REFUSED  # not on this port, signed or not


@settings(max_examples=300)
@given(edns=st.booleans(), at=st.integers(0, 200), value=st.integers(0, 255),
       junk=st.binary(max_size=60), owner=st.sampled_from([b"\x00", b"\x03xfr\x07example\x00",
                                                          b"\xc0\x0c", b"\xc0\xff", b"\x05ab"]))
def test_any_tsig_shaped_packet_is_answered_without_exception(edns: bool, at: int, value: int,
                                                               junk: bytes, owner: bytes) -> None:
    """A signed query with one octet changed, and a made-up TSIG record: never an exception,
    never an answer over the client's limit (a guard on the new path: the old one ignored
    TSIG records, so it passed this too)."""
    data = bytearray(query("www.example.test", "A", edns).to_wire())
    data[min(at + 30, len(data) - 1)] = value
    arcount = struct.unpack_from(">H", junk[:2].ljust(2, b"\x00"))[0] % 3 + 1
    made = query("www.example.test", "A", edns, key=None).to_wire()
    made = made[:10] + struct.pack(">H", arcount) + made[12:] + owner \
        + struct.pack(">HHIH", 250, 255, 0, len(junk)) + junk
    for packet in (bytes(data), made):
        reply = ANSWERER.answer(packet, UDP)
        assert reply is None or len(reply) <= (1232 if edns else 512)


@pytest.mark.parametrize("edns", [False, True])
def test_an_unknown_key_is_notauth_badkey(edns: bool) -> None:
    q = query("example.test", "SOA", edns, key=STRANGER)
    reply = ANSWERER.answer(q.to_wire(), UDP)
    assert reply is not None
    parsed = dns.message.from_wire(reply, keyring=False)
    assert parsed.rcode() == dns.rcode.NOTAUTH and parsed.question == q.question
    assert parsed.tsig is not None and parsed.tsig.name == dns.name.root
    assert (parsed.tsig[0].error, parsed.tsig[0].mac) == (dns.rcode.BADKEY, b"")
    assert (parsed.edns >= 0) == edns and not parsed.flags & dns.flags.AA


def test_the_packet_cache_never_keeps_or_serves_a_signed_answer() -> None:
    a = answerer()
    assert a.table is not None
    data = query("www.example.test", "A").to_wire()
    replies = [a.answer(data, UDP) for _ in range(3)]  # a replay: the same octets again
    assert data[2:] not in a.table.cache and all(r is not None and r[:2] == data[:2]
                                                 for r in replies)
    plain = query("www.example.test", "A", key=None).to_wire()
    for _ in range(2):
        a.answer(plain, UDP)
    assert plain[2:] in a.table.cache  # the cache does keep what it may


def test_a_stale_signature_is_badtime_with_our_time() -> None:
    q = query("www.example.test", "A", when=time.time() - 1000)
    reply = ANSWERER.answer(q.to_wire(), UDP)
    assert reply is not None
    parsed = dns.message.from_wire(reply, keyring=False)
    assert parsed.rcode() == dns.rcode.NOTAUTH and parsed.tsig is not None
    rdata = parsed.tsig[0]
    assert rdata.error == dns.rcode.BADTIME and len(rdata.mac) == 32  # signed
    high, low = struct.unpack(">HI", rdata.other)
    assert abs((high << 32 | low) - time.time()) < 5


def test_a_signed_notify_to_a_responder_is_notimp_signed() -> None:
    q = query("example.test", "SOA")
    q.set_opcode(dns.opcode.NOTIFY)
    reply = ANSWERER.answer(q.to_wire(), UDP)
    assert reply is not None
    parsed = dns.message.from_wire(reply, keyring=RING, request_mac=q.mac)
    assert parsed.rcode() == dns.rcode.NOTIMP


def test_the_responders_are_given_the_keys_and_the_signer_and_prober_are_not() -> None:
    split = views.split(CFG)
    assert config.decode(split.responder).tsig_keys() == CFG.tsig_keys()
    for role in ("signer", "prober"):
        assert SECRET.encode() not in split.for_role(role)


# --- on the wire: the real supervisor, dig and kdig ------------------------------------------

TOML = f"""
    [server]
    listen = ["127.0.0.1:0"]
    responders = 2

    [[tsig]]
    name = "xfr.example"
    secret = "{SECRET}"

    [[zones]]
    origin = "example.test"
    nameservers = ["ns1.example.net"]

    [zones.records.www]
    a = ["192.0.2.1"]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server([], tmp_path_factory.mktemp("tsig"), TOML).start()
    yield running
    assert running.stop() == 0


def run(server: Server, tool: str, *args: str) -> str:
    once = ["+tries=1", "+time=2"] if tool == "dig" else ["+retry=0", "+timeout=2"]
    done = subprocess.run([need_tool(tool), "-p", str(server.port), f"@{server.host}",
                           *once, *args], capture_output=True, text=True,
                          timeout=10, check=False)
    return done.stdout + done.stderr


def key_arg(key: dns.tsig.Key) -> str:
    return f"hmac-sha256:{key.name.to_text(omit_final_dot=True) or '.'}:" \
           f"{base64.b64encode(key.secret).decode()}"


@pytest.mark.parametrize("tcp", [False, True])
def test_dig_with_a_known_key_gets_a_signed_answer_it_verifies(server: Server,
                                                              tcp: bool) -> None:
    out = run(server, "dig", "+norec", *(["+tcp"] if tcp else []), "-y", key_arg(KEY),
              "www.example.test", "A")
    assert "status: NOERROR" in out and "192.0.2.1" in out
    assert re.search(r"xfr\.example\.\s+0\s+ANY\s+TSIG\s+hmac-sha256\. \d+ 300 32 ", out)
    assert "verify" not in out and "WARNING" not in out  # dig says when a TSIG fails


def test_kdig_with_a_known_key_gets_a_signed_answer_it_verifies(server: Server) -> None:
    out = run(server, "kdig", "-y", key_arg(KEY), "www.example.test", "A")
    assert "status: NOERROR" in out and "TSIG PSEUDOSECTION" in out
    assert "WARNING" not in out  # kdig: "reply verification ... (failed to verify TSIG)"


def test_dnswkk_an_unknown_key_is_notauth_badkey(server: Server) -> None:
    """ISC's EDNS compliance test `dnswkk`: no EDNS, key ".", HMAC-SHA256, zero secret."""
    out = run(server, "dig", "+noedns", "+norec", "-y", key_arg(STRANGER), "example.test", "SOA")
    assert "status: NOTAUTH" in out
    assert re.search(r"^\.\s+0\s+ANY\s+TSIG\s+hmac-sha256\. \d+ 300 0 \d+ BADKEY 0", out,
                     re.MULTILINE)
    assert "status: BADKEY" in run(server, "kdig", "-y", key_arg(STRANGER), "example.test", "SOA")


def test_a_wrong_secret_is_badsig(server: Server) -> None:
    out = run(server, "dig", "-y", key_arg(FORGED), "www.example.test")
    assert "status: NOTAUTH" in out and " BADSIG " in out
    assert "status: BADSIG" in run(server, "kdig", "-y", key_arg(FORGED), "www.example.test")


def test_a_stale_time_is_badtime(server: Server) -> None:
    q = query("www.example.test", "A", when=time.time() - 3600)
    reply = exchange(server, q.to_wire())
    assert reply is not None
    parsed = dns.message.from_wire(reply, keyring=False)
    assert parsed.rcode() == dns.rcode.NOTAUTH and parsed.tsig is not None
    assert parsed.tsig[0].error == dns.rcode.BADTIME


def test_a_tsig_that_is_not_last_is_formerr(server: Server) -> None:
    data = query("www.example.test", "A").to_wire()
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"  # an OPT after the TSIG
    reply = exchange(server, data[:10] + struct.pack(">H", 2) + data[12:] + opt)
    assert reply is not None
    parsed = dns.message.from_wire(reply)
    assert parsed.rcode() == dns.rcode.FORMERR and not parsed.had_tsig


@pytest.mark.parametrize("rdtype", ["AXFR", "IXFR"])
def test_a_signed_transfer_on_the_responders_port_is_refused_signed(server: Server,
                                                                     rdtype: str) -> None:
    q = query("example.test", rdtype)
    reply = exchange(server, q.to_wire(), tcp=True)
    assert reply is not None
    parsed = dns.message.from_wire(reply, keyring=RING, request_mac=q.mac)
    assert parsed.rcode() == dns.rcode.REFUSED and parsed.had_tsig
    out = run(server, "kdig", "-y", key_arg(KEY), "example.test", "AXFR")
    assert "REFUSED" in out


def test_a_signed_nxdomain_is_never_kept_for_other_names() -> None:
    """A kept NXDOMAIN answers any first label with the same octets after it: a signed
    query's would answer a forgery (another name, the same MAC) as if it were signed."""
    a = answerer()
    assert a.table is not None
    data = query("none.example.test", "A").to_wire()
    reply = a.answer(data, UDP)
    assert reply is not None and reply[3] & 0x0F == dns.rcode.NXDOMAIN
    assert not a.table.nxdomains
    forged = a.answer(data.replace(b"\x04none", b"\x04nada"), UDP)
    assert forged is not None and forged[3] & 0x0F == dns.rcode.NOTAUTH
