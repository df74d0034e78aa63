"""RFC 7766 DNS over TCP: pipelining, idle timeout, connection limits, slow clients."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import random
import re
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import dns.message
import dns.rcode
import pytest
from conftest import need_tool
from harness import Server, read_tcp_message

from healthdns.responder import tcp


def framed(name: str, qid: int) -> bytes:
    q = dns.message.make_query(name, "A", use_edns=False)
    q.id = qid
    wire = q.to_wire()
    return len(wire).to_bytes(2, "big") + wire


def connect(server: Server, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=3,
                                    source_address=(source, 0))


def ask(sock: socket.socket, qid: int) -> int | None:
    """One query on `sock`: the ID of its answer, or None when the server closed it."""
    try:
        sock.sendall(framed("www.example.test", qid))
        raw = read_tcp_message(sock)
    except (ConnectionResetError, BrokenPipeError):
        return None
    return None if raw is None else dns.message.from_wire(raw).id


def closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


ONE_RESPONDER = """
    [server]
    listen = ["127.0.0.1:0"]
    responders = 1
    tcp_idle_timeout = {idle}
    tcp_max_connections = {limit}
    tcp_max_per_client = {per_client}

    [[zones]]
    origin = "example.test"
    nameservers = ["ns1.example.net"]

    [zones.records.www]
    a = ["192.0.2.1"]
"""


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Server]:
    """One responder (so every connection meets the same limits): 4 connections, 2 a client,
    an idle timeout long enough never to matter unless it shrinks (to 3 s when full)."""
    server = Server([], tmp_path, ONE_RESPONDER.format(idle=30.0, limit=4, per_client=2)).start()
    yield server
    assert server.stop() == 0


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
        assert ask(sock, 3) == 3  # (one that never sends is never accepted: TCP_DEFER_ACCEPT)
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


def test_connection_limit_evicts_the_oldest_not_the_newest(conformance: Server) -> None:
    """8 connections per responder in this config: 24 idle ones overflow both responders. The
    newest client is served; the longest idle ones were closed to make room (before, the new
    one was refused, so idle connections locked every new client out)."""
    held = [connect(conformance) for _ in range(24)]
    try:
        with connect(conformance) as sock:
            assert ask(sock, 7) == 7
        assert sum(closed_by_server(sock, 2) for sock in held[:8]) >= 4
    finally:
        for sock in held:
            sock.close()


def test_when_full_the_longest_idle_connection_is_evicted(small: Server) -> None:
    sources = ["127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.2"]
    held = [connect(small, source) for source in sources]
    try:
        for qid, sock in enumerate(held):
            assert ask(sock, qid) == qid
        assert ask(held[0], 10) == 10  # now held[1] is the longest idle
        with connect(small, "127.0.0.3") as newest:
            assert ask(newest, 20) == 20
            assert closed_by_server(held[1], 2)
            assert [ask(held[i], 30 + i) for i in (0, 2, 3)] == [30, 32, 33]
    finally:
        for sock in held:
            sock.close()


def test_one_client_holds_at_most_its_share(small: Server) -> None:
    greedy = [connect(small, "127.0.0.2") for _ in range(2)]
    try:
        assert [ask(sock, i) for i, sock in enumerate(greedy)] == [0, 1]
        with connect(small, "127.0.0.2") as third:
            assert ask(third, 2) is None  # closed at once: its client already holds 2
        with connect(small, "127.0.0.1") as other:
            assert ask(other, 3) == 3
        assert [ask(sock, 4 + i) for i, sock in enumerate(greedy)] == [4, 5]
    finally:
        for sock in greedy:
            sock.close()


def test_the_idle_timeout_shrinks_when_the_table_is_full(small: Server) -> None:
    """30 s idle timeout, but with all 4 connections open it falls to its floor (3 s). Once
    the sweep has closed enough of them to leave half, the rest get the full timeout again,
    so only the longest idle one is sure to go."""
    held = [connect(small, source) for source in ["127.0.0.1", "127.0.0.1", "127.0.0.2",
                                                  "127.0.0.2"]]
    try:
        for qid, sock in enumerate(held):
            assert ask(sock, qid) == qid
        assert closed_by_server(held[0], 10)  # not 30 s
    finally:
        for sock in held:
            sock.close()


def test_many_pipelined_queries_in_one_segment_are_answered_by_id(conformance: Server) -> None:
    names = ["www.example.test", "mail.example.test", "nothere.example.test", "sip.example.test"]
    ids = random.Random(7766).sample(range(65536), 200)
    asked = {qid: names[i % len(names)] for i, qid in enumerate(ids)}
    with connect(conformance) as sock:
        sock.sendall(b"".join(framed(name, qid) for qid, name in asked.items()))
        answered = {}
        for _ in asked:
            raw = read_tcp_message(sock)
            assert raw is not None
            message = dns.message.from_wire(raw)
            answered[message.id] = message.question[0].name.to_text(omit_final_dot=True)
    assert answered == asked  # matched by ID: any order is allowed (RFC 7766 7)


def test_queries_split_byte_by_byte_across_a_prefix_boundary(conformance: Server) -> None:
    data = framed("www.example.test", 11) + framed("mail.example.test", 12)
    with connect(conformance) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(data)):
            sock.sendall(data[i:i + 1])
        first, second = read_tcp_message(sock), read_tcp_message(sock)
    assert first is not None and second is not None
    assert {dns.message.from_wire(first).id, dns.message.from_wire(second).id} == {11, 12}


def test_a_zero_length_prefix_closes_only_that_connection(conformance: Server) -> None:
    with connect(conformance) as good, connect(conformance) as bad:
        bad.sendall(framed("www.example.test", 1) + b"\x00\x00")
        raw = read_tcp_message(bad)
        assert raw is not None and dns.message.from_wire(raw).id == 1
        assert closed_by_server(bad, 0.5)  # at once, not after the 1 s idle timeout
        assert ask(good, 2) == 2


def test_a_prefix_promising_more_than_is_sent_is_idle(conformance: Server) -> None:
    with connect(conformance) as good, connect(conformance) as stalled:
        stalled.sendall(b"\xff\xff" + bytes(100))
        assert ask(good, 3) == 3
        assert closed_by_server(stalled, 4)  # the idle timeout (1 s): half a query is idle
    with connect(conformance) as other:
        assert ask(other, 4) == 4


def test_the_listen_backlog_is_1024(conformance: Server) -> None:
    ss = need_tool("ss")
    out = subprocess.run([ss, "-ltnH", f"sport = :{conformance.port}"], capture_output=True,
                         text=True, check=True).stdout
    listening = re.finditer(r"^LISTEN\s+\d+\s+(\d+)", out, re.MULTILINE)
    backlogs = [int(m.group(1)) for m in listening]
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    assert len(backlogs) == 2, out  # one TCP socket per responder
    assert backlogs == [min(1024, somaxconn)] * 2


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


def hold_and_reopen(host: str, port: int, count: int, stop: Connection,
                    first: bytes = b"") -> None:
    """An attacker: `count` idle connections from 127.0.1.0/24, each reopened at once when
    the server closes it, until `stop` says so; each sends `first` and then nothing."""
    selector = selectors.DefaultSelector()

    def open_one(source: str) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((source, 0))
        sock.settimeout(3)
        sock.connect((host, port))
        if first:
            sock.sendall(first)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, source)

    for i in range(count):
        open_one(f"127.0.1.{1 + i // 20}")
    stop.send("open")
    while not stop.poll(0):
        for key, _ in selector.select(0.05):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                closed = not sock.recv(512)
            except OSError:
                closed = True
            if closed:
                selector.unregister(sock)
                sock.close()
                open_one(key.data)


@pytest.mark.parametrize("first", [b"", b"\x00"], ids=["silent", "one octet"])
def test_a_reconnecting_idle_flood_does_not_lock_clients_out(tmp_path: Path,
                                                             first: bytes) -> None:
    """#12: idle connections that reopen whatever is closed kept every new client out. Four
    times the limit of them now only churn among themselves. Silent ones never reach the
    table (TCP_DEFER_ACCEPT); ones that send an octet do, and are evicted as the longest idle:
    the newest connection is read before enough others arrive to make it the longest idle."""
    server = Server([], tmp_path, ONE_RESPONDER.format(idle=30.0, limit=16, per_client=16))
    server.start()
    ours, theirs = multiprocessing.Pipe()
    attacker = multiprocessing.Process(target=hold_and_reopen,
                                       args=(server.host, server.port, 64, theirs, first))
    attacker.start()
    try:
        assert ours.poll(10) and ours.recv() == "open"
        def one(qid: int) -> bool:
            with connect(server) as sock:
                return ask(sock, qid) == qid

        with concurrent.futures.ThreadPoolExecutor(4) as pool:  # 4 a time, as a resolver may
            answered = sum(pool.map(one, range(100)))
        assert answered >= 99, f"{answered} of 100 answered"
    finally:
        ours.send("stop")
        attacker.join(5)
        if attacker.is_alive():
            attacker.kill()
            attacker.join()
        assert server.stop() == 0


def test_the_responder_raises_its_open_files_limit() -> None:
    """The connection limit is only real with the descriptors to hold it."""
    script = """if True:
        import resource
        from healthdns.responder import tcp
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        allowed = tcp.raise_fd_limit(2000)
        print(allowed, resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)
    """
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.split()
    allowed, soft, hard = (int(x) for x in out)
    if hard >= 2000 + tcp.FD_RESERVE:
        assert (allowed, soft) == (2000, 2000 + tcp.FD_RESERVE)
    else:
        assert (allowed, soft) == (hard - tcp.FD_RESERVE, hard)


def test_a_stopping_responder_answers_the_connections_queued_for_it(tmp_path: Path) -> None:
    """#10: a responder told to stop answers what is queued on its sockets before it closes
    them; a TCP connection still in its accept queue would otherwise be reset."""
    import os
    import signal

    server = Server([], tmp_path, ONE_RESPONDER.format(idle=5.0, limit=64, per_client=64))
    server.start()
    try:
        (pid,) = [p for p, name in server.children().items() if "responder" in name]
        os.kill(pid, signal.SIGSTOP)  # it accepts nothing more: connections queue up
        socks = [connect(server) for _ in range(5)]
        for qid, sock in enumerate(socks, start=1):
            sock.sendall(framed("www.example.test", qid))
        os.kill(pid, signal.SIGTERM)  # delivered on SIGCONT: it stops, draining first
        os.kill(pid, signal.SIGCONT)
        for qid, sock in enumerate(socks, start=1):
            with sock:
                raw = read_tcp_message(sock)
                assert raw is not None, f"connection {qid} was closed unanswered"
                assert dns.message.from_wire(raw).id == qid
    finally:
        assert server.stop() == 0
