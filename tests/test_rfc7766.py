"""RFC 7766 DNS over TCP: pipelining, idle timeout, connection limit, slow clients."""

from __future__ import annotations

import socket
import time

import dns.message
import dns.rcode
from harness import Server, read_tcp_message


def framed(name: str, qid: int) -> bytes:
    q = dns.message.make_query(name, "A", use_edns=False)
    q.id = qid
    wire = q.to_wire()
    return len(wire).to_bytes(2, "big") + wire


def connect(server: Server) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=3)


def test_several_queries_on_one_connection(conformance: Server) -> None:
    with connect(conformance) as sock:
        sock.sendall(framed("www.example.test", 1) + framed("mail.example.test", 2)
                     + framed("nothere.example.test", 3))
        answers = {}
        for _ in range(3):
            raw = read_tcp_message(sock)
            assert raw is not None
            message = dns.message.from_wire(raw)
            answers[message.id] = message
    assert sorted(answers) == [1, 2, 3]  # any order is allowed
    assert answers[3].rcode() == dns.rcode.NXDOMAIN
    assert [rd.to_text() for rd in answers[2].answer[0]] == ["192.0.2.25"]


def test_a_query_split_across_segments(conformance: Server) -> None:
    data = framed("www.example.test", 9)
    with connect(conformance) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(data)):
            sock.sendall(data[i:i + 1])
        raw = read_tcp_message(sock)
    assert raw is not None and dns.message.from_wire(raw).id == 9


def test_idle_connection_is_closed(conformance: Server) -> None:
    with connect(conformance) as sock:
        started = time.monotonic()
        sock.settimeout(5)
        assert sock.recv(1) == b""  # closed by the server (idle timeout 1 s in this config)
        assert 0.5 < time.monotonic() - started < 4


def test_a_slow_client_does_not_delay_others(conformance: Server) -> None:
    with connect(conformance) as slow:
        slow.sendall(framed("www.example.test", 5)[:7])  # half a query, then nothing
        started = time.monotonic()
        for i in range(20):
            with connect(conformance) as sock:
                sock.sendall(framed("www.example.test", i))
                assert read_tcp_message(sock) is not None
        assert time.monotonic() - started < 2


def test_connection_limit(conformance: Server) -> None:
    # 8 connections per responder in this config; hold enough to fill both responders.
    held = [connect(conformance) for _ in range(24)]
    try:
        refused = 0
        for sock in held:
            sock.sendall(framed("www.example.test", 1))
            sock.settimeout(2)
            try:
                if read_tcp_message(sock) is None:
                    refused += 1
            except (ConnectionResetError, TimeoutError):
                refused += 1
        assert refused > 0, "no connection was turned away"
    finally:
        for sock in held:
            sock.close()
    with connect(conformance) as sock:  # once they are gone, new clients are served
        sock.sendall(framed("www.example.test", 7))
        assert read_tcp_message(sock) is not None


def test_a_65534_octet_query_is_formerr_and_the_connection_goes_on(conformance: Server) -> None:
    """The largest query TCP can frame, one name of 1-octet labels: FORMERR (a name is at most
    255 octets, RFC 1035 3.1), no internal error, and the next query is answered."""
    origin = b"\x07example\x04test\x00"
    name = b"\x01a" * ((65534 - 12 - 4 - len(origin)) // 2) + origin
    wire = b"\x00\x05\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00" + name + b"\x00\x01\x00\x01"
    assert len(wire) == 65534
    with connect(conformance) as sock:
        sock.sendall(len(wire).to_bytes(2, "big") + wire + framed("www.example.test", 6))
        first, second = read_tcp_message(sock), read_tcp_message(sock)
    assert first is not None and first[:2] == b"\x00\x05"
    assert first[3] & 0x0F == dns.rcode.FORMERR
    assert second is not None and dns.message.from_wire(second).id == 6
    assert "internal error" not in conformance.output()
    assert "Traceback" not in conformance.output()
