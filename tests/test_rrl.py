"""Response Rate Limiting end to end: a reflection flood against real responders.

Every test floods from its own /24 of 127.0.0.0/8 (the account is per prefix), so that no
test inherits another's debt. Queries are paced (a few milliseconds per batch, not a readiness
wait) so that the server's receive buffer never overflows: every query sent is one the server
decided about, and the counts below are exact up to the stated tolerance.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import pytest
from conftest import CONFORMANCE
from harness import Server, has_ipv6, read_tcp_message
from test_rrl_model import crc_aimed

RATE = 10
RRL = f"""
    [rrl]
    responses_per_second = {RATE}
    window = 1
    slip = 2
"""
BADCOOKIE = 23
QUIET = 0.5  # seconds without a response that end a flood's collection


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server([], tmp_path_factory.mktemp("rrl"), CONFORMANCE + RRL).start()
    yield server
    assert server.stop() == 0


def sockets(source: str, count: int = 1) -> list[socket.socket]:
    out = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        sock.bind((source, 0))
        out.append(sock)
    return out


def query(name: str = "www.example.test", options: list[dns.edns.Option] | None = None,
          qid: int = 0, rdtype: str = "A") -> bytes:
    q = dns.message.make_query(name, rdtype, use_edns=0, options=options or [])
    q.id = qid
    q.flags &= ~dns.flags.RD
    return q.to_wire()


def flood(server: Server, wires: list[bytes], socks: list[socket.socket],
          batch: int = 20, pace: float = 0.01) -> tuple[list[dns.message.Message], float]:
    """Send each query from the sockets in turn, `batch` at a time: every response back, and
    how long the sending took (the time over which tokens came back)."""
    received: list[dns.message.Message] = []
    started = time.monotonic()
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        for start in range(0, len(wires), batch):
            for i in range(start, min(start + batch, len(wires))):
                socks[i % len(socks)].sendto(wires[i], (server.host, server.port))
            received += _drain(selector, pace)
        seconds = time.monotonic() - started
        while more := _drain(selector, QUIET):
            received += more
    for sock in socks:
        sock.close()
    return received, seconds


def _drain(selector: selectors.BaseSelector, timeout: float) -> list[dns.message.Message]:
    out = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        for key, _ in selector.select(left):
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            out.append(dns.message.from_wire(sock.recv(65535)))
    return out


def full(responses: list[dns.message.Message]) -> int:
    return sum(1 for r in responses if r.answer and not r.flags & dns.flags.TC)


def truncated(responses: list[dns.message.Message]) -> int:
    return sum(1 for r in responses if r.flags & dns.flags.TC and not r.answer)


def test_a_reflection_flood_is_cut_by_ninety_percent_and_slips_half(
        conformance: Server, limited: Server) -> None:
    count = 400
    wires = [query(qid=i) for i in range(count)]
    unlimited, _ = flood(conformance, wires, sockets("127.0.1.1"))
    assert full(unlimited) >= count * 0.95  # RRL off (the default): the victim gets it all
    responses, elapsed = flood(limited, wires, sockets("127.0.2.1"))
    answered = full(responses)
    # The burst (one second's worth), plus at most a second's worth more: the flood keeps
    # the account in debt, as it costs even when dropped.
    assert answered <= RATE * (2 + elapsed), (answered, elapsed)
    assert answered <= 0.1 * full(unlimited)
    # slip = 2: every other limited answer goes out truncated, empty, no larger than the query
    assert abs(truncated(responses) - (count - answered) / 2) <= 0.03 * count
    assert all(len(r.to_wire()) <= len(wires[0]) for r in responses if r.flags & dns.flags.TC)
    assert len(responses) == answered + truncated(responses)


def test_a_spoofer_varying_ports_meets_one_limit_across_responders(limited: Server) -> None:
    """SO_REUSEPORT spreads the 4-tuples over both responders; the table is shared."""
    responses, elapsed = flood(limited, [query(qid=i) for i in range(400)],
                               sockets("127.0.3.1", 40))
    # One table: the burst and the rate once, not once per responder (2 lost updates
    # allowed: the table is updated without locks). Per-responder tables let 20 through.
    assert full(responses) <= RATE * (1 + elapsed) + 2, (full(responses), elapsed)


def test_a_valid_server_cookie_exempts_the_client_at_every_responder(limited: Server) -> None:
    raw = _one(limited, query(options=[_cookie(b"clientck")]), "127.0.4.1")
    assert raw is not None
    first = dns.message.from_wire(raw)
    server_cookie = _cookie_of(first)
    assert len(server_cookie) == 24
    wires = [query(options=[_cookie(server_cookie)], qid=i) for i in range(200)]
    responses, _ = flood(limited, wires, sockets("127.0.4.1", 20))  # ports: both responders
    assert full(responses) == 200
    assert all(_cookie_of(r)[:8] == b"clientck" for r in responses)


def test_a_client_cookie_alone_is_limited_and_told_badcookie(limited: Server) -> None:
    wires = [query(options=[_cookie(b"clientck")], qid=i) for i in range(200)]
    responses, _ = flood(limited, wires, sockets("127.0.5.1"))
    bad = [r for r in responses if r.rcode() == BADCOOKIE]
    assert full(responses) <= RATE * 3
    assert abs(len(bad) - (200 - full(responses)) / 2) <= 6  # the slipped ones
    assert truncated(responses) == 0  # a cookie client is told to come back with ours
    retry = query(options=[_cookie(_cookie_of(bad[0]))])
    raw = _one(limited, retry, "127.0.5.1")
    assert raw is not None
    answer = dns.message.from_wire(raw)
    assert answer.rcode() == dns.rcode.NOERROR and answer.answer


def test_a_type_aimed_at_a_victims_account_does_not_limit_the_victim(limited: Server) -> None:
    """The attack without spoofing that CRC-placed accounts let through: from its own /24, a
    flood of NODATA questions of a type whose account landed in the victim's slot whatever
    the start's seed, while the victim asks within its rate. Every victim answer goes out."""
    name = dns.name.from_text("www.example.test").to_wire()
    prefix, qtype = crc_aimed(name, 1, bytes([127, 0, 8]),
                              [bytes([127, 0, n]) for n in range(9, 250)], 65536)
    aimed = [query(qid=i, rdtype=f"TYPE{qtype}") for i in range(30)]
    victim: list[dns.message.Message] = []
    with sockets(".".join(map(str, prefix)) + ".1")[0] as attacker:
        for i in range(8):  # 8 answers in ~0.8 s: within the victim's rate of 10 a second
            for wire in aimed:  # the attacker's answers come back to it, unread
                attacker.sendto(wire, (limited.host, limited.port))
            raw = _one(limited, query(qid=i), "127.0.8.1", timeout=2.0)
            victim.append(dns.message.from_wire(raw) if raw else dns.message.Message())
            time.sleep(0.1)  # the victim's pace is the point, not a readiness wait
    assert full(victim) == 8, [(r.flags & dns.flags.TC, len(r.answer)) for r in victim]


def test_tcp_is_never_limited(limited: Server) -> None:
    flood(limited, [query(qid=i) for i in range(100)], sockets("127.0.6.1"))
    udp = _one(limited, query(qid=7), "127.0.6.1", timeout=0.3)
    assert udp is None or dns.message.from_wire(udp).flags & dns.flags.TC  # limited over UDP
    with socket.create_connection((limited.host, limited.port), timeout=2,
                                  source_address=("127.0.6.1", 0)) as sock:
        for _ in range(20):
            wire = query()
            sock.sendall(len(wire).to_bytes(2, "big") + wire)
            raw = read_tcp_message(sock)
            assert raw is not None
            assert dns.message.from_wire(raw).answer


def test_dry_run_counts_but_drops_nothing(conformance: Server, tmp_path: Path) -> None:
    server = Server([], tmp_path, CONFORMANCE + RRL + "    dry_run = true\n").start()
    try:
        responses, _ = flood(server, [query(qid=i) for i in range(300)],
                             sockets("127.0.7.1"))
    finally:
        assert server.stop() == 0
    assert full(responses) == 300 and truncated(responses) == 0


@pytest.mark.parametrize("host,batch", [("127.0.0.1", 0), ("::1", 32)],
                         ids=["portable path", "IPv6"])
def test_every_udp_path_knows_the_client(tmp_path: Path, host: str, batch: int) -> None:
    """recvfrom's peer tuple, and an IPv6 sockaddr in the recvmmsg buffers: the address read
    is the client's own, as the exempt network shows (a wrong one would be limited)."""
    if ":" in host and not has_ipv6():
        pytest.skip("no IPv6 loopback")
    listen = f"[{host}]:0" if ":" in host else f"{host}:0"
    toml = CONFORMANCE.replace('listen = ["127.0.0.1:0"]', f'listen = ["{listen}"]')
    toml = toml.replace("responders = 2", f"responders = 2\n    udp_batch = {batch}")
    exempt = f'    exempt = ["{host}/{128 if ":" in host else 32}"]\n'
    server = Server([], tmp_path, toml + RRL + exempt).start()
    try:
        exempted, _ = flood(server, [query(qid=i) for i in range(100)], _bound(host))
        if ":" not in host:  # a neighbour of the exempt address is limited on this path
            limited, _ = flood(server, [query(qid=i) for i in range(100)],
                               _bound("127.0.0.2"))
            assert full(limited) <= RATE * 2 and truncated(limited) >= 40
        raw = _one(server, query(options=[_cookie(b"clientck")]), host)
    finally:
        assert server.stop() == 0
    assert full(exempted) == 100
    assert raw is not None and _cookie_of(dns.message.from_wire(raw))[:8] == b"clientck"


def _bound(host: str) -> list[socket.socket]:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    return [sock]


def _one(server: Server, wire: bytes, source: str, timeout: float = 2.0) -> bytes | None:
    family = socket.AF_INET6 if ":" in source else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(timeout)
        sock.sendto(wire, (server.host, server.port))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def _cookie(data: bytes) -> dns.edns.Option:
    return dns.edns.GenericOption(dns.edns.COOKIE, data)


def _cookie_of(message: dns.message.Message) -> bytes:
    for option in message.options:
        if option.otype == dns.edns.COOKIE:
            return option.to_wire()  # type: ignore[no-any-return]
    raise AssertionError(f"no COOKIE option in {message}")
