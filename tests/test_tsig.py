"""shared/tsigwire.py (RFC 8945): requests signed by dnspython are checked in the order of
section 5.2, and what we sign is verified by dnspython's own client code."""

from __future__ import annotations

import base64
import struct
import time

import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.rrset
import dns.tsig
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthdns.shared import tsigkeys as keys
from healthdns.shared import tsigwire as tsig

SECRET = base64.b64decode("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==")
KEY = dns.tsig.Key("xfr.example.", SECRET, "hmac-sha256")
SHA1 = dns.tsig.Key("old.example.", SECRET, "hmac-sha1")
RING = {KEY.name: KEY, SHA1.name: SHA1}
NOW = 1_800_000_000


def signed_query(key: dns.tsig.Key = KEY, when: int = NOW, qid: int = 4321,
                 rdtype: str = "SOA") -> dns.message.QueryMessage:
    query = dns.message.make_query("example.test.", rdtype)
    query.id = qid
    query.use_tsig(key)
    query.to_wire()  # signs, at the current time: re-signed below at `when`
    return _resign(query, key, when)


def _resign(query: dns.message.QueryMessage, key: dns.tsig.Key,
            when: int) -> dns.message.QueryMessage:
    assert query.tsig is not None
    template = query.tsig[0].replace(time_signed=when)
    unsigned = dns.message.from_wire(query.to_wire(), keyring=False)
    unsigned.tsig = None
    rdata, _ = dns.tsig.sign(unsigned.to_wire(), key, template, when)
    out = dns.message.from_wire(query.to_wire(), keyring=False)
    out.tsig = dns.rrset.from_rdata(key.name, 0, rdata)
    return out


def wire(message: dns.message.Message) -> bytes:
    return message.to_wire()


def refusal_fields(reply: bytes) -> tuple[int, int, bytes, int, int]:
    """(rcode, TSIG error, MAC, original ID, time signed) of a reply, its TSIG unchecked."""
    message = dns.message.from_wire(reply, keyring=False)
    assert message.tsig is not None
    rdata = message.tsig[0]
    return message.rcode(), rdata.error, rdata.mac, rdata.original_id, rdata.time_signed


def test_an_unsigned_query_has_no_tsig() -> None:
    assert tsig.verify(wire(dns.message.make_query("example.test.", "A")), RING, NOW) is None


def test_a_known_key_verifies_and_dnspython_verifies_the_signed_reply() -> None:
    now = int(time.time())  # dnspython's client checks the reply's time by its own clock
    query = signed_query(when=now)
    assert query.tsig is not None
    dns.message.from_wire(wire(query), keyring=RING)  # the test's signing is dnspython's
    checked = tsig.verify(wire(query), RING, now)
    assert isinstance(checked, tsig.Verified) and checked.key == KEY
    reply = dns.message.make_response(dns.message.from_wire(wire(query), keyring=False))
    stream = tsig.Stream(checked)
    unsigned = reply.to_wire()
    signed = stream.sign(unsigned)
    assert len(signed) == len(unsigned) + stream.size  # the room a reply leaves is exact
    parsed = dns.message.from_wire(signed, keyring=RING, request_mac=query.tsig[0].mac)
    assert parsed.had_tsig and parsed.id == query.id and parsed.tsig_error == 0


def test_unknown_key_is_notauth_badkey_unsigned_with_the_original_id() -> None:
    """ISC's `dnswkk`: key ".", HMAC-SHA256, a secret of zeros."""
    stranger = dns.tsig.Key(".", b"\x00" * 32, "hmac-sha256")
    query = signed_query(stranger, qid=77)
    refused = tsig.verify(wire(query), RING, NOW)
    assert isinstance(refused, tsig.Refusal)
    reply = refused.response(wire(query))
    rcode, error, mac, original, _ = refusal_fields(reply)
    assert (rcode, error, mac, original) == (dns.rcode.NOTAUTH, dns.rcode.BADKEY, b"", 77)
    parsed = dns.message.from_wire(reply, keyring=False)
    assert parsed.id == 77 and parsed.question == query.question
    assert parsed.tsig is not None and parsed.tsig.name == dns.name.root


def test_a_known_name_with_another_algorithm_is_badkey() -> None:
    other = dns.tsig.Key(KEY.name, SECRET, "hmac-sha512")
    refused = tsig.verify(wire(signed_query(other)), RING, NOW)
    assert isinstance(refused, tsig.Refusal) and refused.error == tsig.BADKEY


def test_a_wrong_secret_is_badsig_unsigned() -> None:
    forged = dns.tsig.Key(KEY.name, b"x" * 32, "hmac-sha256")
    query = signed_query(forged)
    refused = tsig.verify(wire(query), RING, NOW)
    assert isinstance(refused, tsig.Refusal)
    rcode, error, mac, _, _ = refusal_fields(refused.response(wire(query)))
    assert (rcode, error, mac) == (dns.rcode.NOTAUTH, dns.rcode.BADSIG, b"")


def test_a_changed_octet_is_badsig() -> None:
    data = bytearray(wire(signed_query()))
    data[3] ^= 0x10  # the CD bit: covered by the MAC
    refused = tsig.verify(bytes(data), RING, NOW)
    assert isinstance(refused, tsig.Refusal) and refused.error == tsig.BADSIG


@settings(max_examples=60, deadline=None)
@given(skew=st.integers(-1000, 1000))
def test_time_outside_the_fudge_is_badtime_signed_with_the_server_time(skew: int) -> None:
    query = signed_query(when=NOW)
    checked = tsig.verify(wire(query), RING, NOW + skew)
    if abs(skew) <= 300:  # the request's fudge (dnspython's default, as RFC 8945 advises)
        assert isinstance(checked, tsig.Verified)
        return
    assert isinstance(checked, tsig.Refusal)
    reply = checked.response(wire(query))
    rcode, error, mac, _, signed_at = refusal_fields(reply)
    assert (rcode, error, signed_at) == (dns.rcode.NOTAUTH, dns.rcode.BADTIME, NOW)
    message = dns.message.from_wire(reply, keyring=False)
    assert message.tsig is not None
    rdata = message.tsig[0]
    assert rdata.other == struct.pack("!HI", 0, NOW + skew)  # the server's time, 48 bits
    assert mac == _mac_over_request(reply, rdata, wire(query))


def _mac_over_request(reply: bytes, rdata: dns.rdtypes.ANY.TSIG.TSIG, query: bytes) -> bytes:
    """The MAC a client computes for a signed error reply: over the request's MAC."""
    request = dns.message.from_wire(query, keyring=False)
    assert request.tsig is not None
    body = dns.message.from_wire(reply, keyring=False)
    body.tsig = None
    expected, _ = dns.tsig.sign(body.to_wire(), KEY, rdata, rdata.time_signed,
                                request.tsig[0].mac)
    return bytes(expected.mac)


def truncated_query(key: dns.tsig.Key, size: int) -> dns.message.QueryMessage:
    """A query whose MAC is cut (or padded) to `size` octets, as RFC 8945 5.2.2.1 has it."""
    query = signed_query(key)
    assert query.tsig is not None
    rdata = query.tsig[0]
    full = dns.tsig.mac_sizes[key.algorithm]
    unsigned = dns.message.from_wire(query.to_wire(), keyring=False)
    unsigned.tsig = None
    # The MAC field's length is in what is signed: sign with it at `size`, then cut.
    template = rdata.replace(mac=b"")
    signed, _ = dns.tsig.sign(unsigned.to_wire(), key, template, NOW)
    mac = signed.mac[:size] if size <= full else signed.mac + b"\x00" * (size - full)
    query.tsig = dns.rrset.from_rdata(key.name, 0, signed.replace(mac=mac))
    return query


@settings(max_examples=80, deadline=None)
@given(key=st.sampled_from([KEY, SHA1]), size=st.integers(1, 70))
def test_truncated_macs_follow_rfc8945_5_2_2_1(key: dns.tsig.Key, size: int) -> None:
    full = dns.tsig.mac_sizes[key.algorithm]
    floor = max(10, full // 2)
    checked = tsig.verify(wire(truncated_query(key, size)), RING, NOW)
    if size > full or size < floor:
        assert isinstance(checked, tsig.Refusal) and checked.rcode == tsig.FORMERR
    elif size < max(16, floor):  # our policy: 128 bits at least
        assert isinstance(checked, tsig.Refusal)
        assert (checked.rcode, checked.error) == (tsig.NOTAUTH, tsig.BADTRUNC)
        assert checked.key == key  # signed
    else:
        assert isinstance(checked, tsig.Verified)


def test_the_reply_to_a_truncated_mac_is_signed_over_the_truncated_mac() -> None:
    query = truncated_query(KEY, 16)
    assert query.tsig is not None
    checked = tsig.verify(wire(query), RING, NOW)
    assert isinstance(checked, tsig.Verified)
    reply = dns.message.make_response(dns.message.from_wire(wire(query), keyring=False))
    signed = tsig.Stream(checked, clock=lambda: NOW).sign(reply.to_wire())
    message = dns.message.from_wire(signed, keyring=False)
    assert message.tsig is not None
    rdata = message.tsig[0]
    body = dns.message.from_wire(signed, keyring=False)
    body.tsig = None
    expected, _ = dns.tsig.sign(body.to_wire(), KEY, rdata, NOW, query.tsig[0].mac)
    assert rdata.mac == expected.mac


def test_a_tsig_that_is_not_last_is_formerr() -> None:
    data = wire(signed_query())
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"  # an OPT after the TSIG
    moved = data[:10] + struct.pack("!H", 2) + data[12:] + opt
    refused = tsig.verify(moved, RING, NOW)
    assert isinstance(refused, tsig.Refusal) and refused.rcode == tsig.FORMERR
    reply = dns.message.from_wire(refused.response(moved))
    assert reply.rcode() == dns.rcode.FORMERR and not reply.had_tsig


def test_a_tsig_in_the_answer_section_is_formerr() -> None:
    data = wire(signed_query())
    moved = data[:6] + struct.pack("!HHH", 1, 0, 0) + data[12:]
    refused = tsig.verify(moved, RING, NOW)
    assert isinstance(refused, tsig.Refusal) and refused.rcode == tsig.FORMERR


def test_a_stream_of_three_messages_verifies_with_dnspython() -> None:
    when = int(time.time())
    query = signed_query(when=when, rdtype="AXFR")
    assert query.tsig is not None
    checked = tsig.verify(wire(query), RING, when)
    assert isinstance(checked, tsig.Verified)
    stream = tsig.Stream(checked)
    request = dns.message.from_wire(wire(query), keyring=False)
    messages = []
    for i in range(3):
        reply = dns.message.make_response(request)
        reply.answer.append(dns.rrset.from_text("example.test.", 60, "IN", "TXT", f'"part {i}"'))
        messages.append(stream.sign(reply.to_wire()))
    context = None
    for data in messages:
        parsed = dns.message.from_wire(data, keyring=RING, request_mac=query.tsig[0].mac,
                                       xfr=True, multi=True, tsig_ctx=context)
        context = parsed.tsig_ctx
    # The chain holds: a message changed in flight breaks it.
    context = None
    tampered = messages[1][:-60] + bytes([messages[1][-60] ^ 1]) + messages[1][-59:]
    first = dns.message.from_wire(messages[0], keyring=RING, request_mac=query.tsig[0].mac,
                                  xfr=True, multi=True)
    with pytest.raises(dns.exception.DNSException):
        dns.message.from_wire(tampered, keyring=RING, xfr=True, multi=True,
                              tsig_ctx=first.tsig_ctx)


def test_a_signed_notify_and_the_check_of_its_reply() -> None:
    notify = dns.message.make_query("example.test.", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    key = keys.Key("xfr.example", "hmac-sha256", SECRET)  # as the configuration gives it
    signed, state = tsig.sign_request(notify.to_wire(), key)
    assert isinstance(tsig.verify(signed, RING, time.time()), tsig.Verified)
    request = dns.message.from_wire(signed, keyring=RING)  # dnspython verifies it too
    answer = dns.message.make_response(request)  # signed by dnspython over our MAC
    assert tsig.check_reply(answer.to_wire(), state)
    unsigned = dns.message.make_response(dns.message.from_wire(signed, keyring=False))
    assert not tsig.check_reply(unsigned.to_wire(), state)
    other = dns.message.from_wire(signed, keyring=False)
    other.use_tsig(dns.tsig.Key(KEY.name, b"y" * 32))
    forged = dns.message.make_response(other)
    forged.use_tsig(dns.tsig.Key(KEY.name, b"y" * 32))
    assert not tsig.check_reply(forged.to_wire(), state)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=120))
def test_verify_never_raises(data: bytes) -> None:
    checked = tsig.verify(data, RING, NOW)
    if isinstance(checked, tsig.Refusal) and len(data) >= 12:
        checked.response(data)


def test_the_keyring_of_the_configuration_verifies() -> None:
    ring = keys.keyring([keys.Key("xfr.example", "hmac-sha256", SECRET)])
    assert isinstance(tsig.verify(wire(signed_query()), ring, NOW), tsig.Verified)


def _dnspython_stream(key: dns.tsig.Key, request_mac: bytes, original_id: int,
                      replies: list[bytes], times: list[int]) -> list[bytes]:
    """The reference: each reply signed by `dns.tsig.sign`, chained as RFC 8945 5.3.1 says."""
    out, context = [], None
    for reply, when in zip(replies, times, strict=True):
        template = dns.rdtypes.ANY.TSIG.TSIG(  # type: ignore[no-untyped-call]
            dns.rdataclass.ANY, dns.rdatatype.TSIG, key.algorithm, 0, 300, b"", original_id, 0,
            b"")
        rdata, context = dns.tsig.sign(  # type: ignore[no-untyped-call]
            reply, key, template, when, request_mac if context is None else None, context, True)
        data, owner = rdata.to_wire(), key.name.to_wire()
        assert data is not None and owner is not None
        record = owner + struct.pack("!HHIH", dns.rdatatype.TSIG, dns.rdataclass.ANY, 0,
                                     len(data)) + data
        arcount = struct.unpack_from("!H", reply, 10)[0] + 1
        out.append(reply[:10] + struct.pack("!H", arcount) + reply[12:] + record)
    return out


@settings(max_examples=60, deadline=None)
@given(algorithm=st.sampled_from(keys.ALGORITHMS), name=st.sampled_from(["Xfr.Example.", "k."]),
       qid=st.integers(0, 0xFFFF), bodies=st.lists(st.binary(max_size=300), min_size=1,
                                                    max_size=5),
       start=st.integers(0, 2**40), steps=st.lists(st.integers(0, 3), min_size=5, max_size=5))
def test_a_stream_is_signed_octet_for_octet_as_dnspython_signs_it(
        algorithm: str, name: str, qid: int, bodies: list[bytes], start: int,
        steps: list[int]) -> None:
    """The stream signer hashes by itself (cheaper per message); the octets are dnspython's,
    for every algorithm, key names in any case, and a clock that moves during the stream."""
    key = dns.tsig.Key(name, SECRET, algorithm)
    query = signed_query(key, qid=qid, rdtype="AXFR")
    assert query.tsig is not None
    checked = tsig.Verified(key, query.tsig[0], NOW)
    times = [start + sum(steps[:i]) for i in range(len(bodies))]
    clock = iter(times)
    stream = tsig.Stream(checked, clock=lambda: next(clock))
    header = struct.pack("!6H", qid, 0x8400, 0, 1, 0, 0)
    replies = [header + body for body in bodies]
    assert [stream.sign(reply) for reply in replies] == _dnspython_stream(
        key, query.tsig[0].mac, qid, replies, times)
