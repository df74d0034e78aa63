"""Process boundaries: what a child can make the supervisor do, and what each child is told.

The integration tests play a compromised responder: they take a copy of a real responder's pipe
to the supervisor (`pidfd_getfd`, no hook in the server) and write forged frames into it.
"""

from __future__ import annotations

import ctypes
import os
import re
import select
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import hypothesis.strategies as st
import msgspec
import pytest
from harness import Backend, Server
from hypothesis import given, settings

from healthdns.shared import config, messages
from healthdns.shared.config import CheckSpec, Config, GroupSpec, PoolSpec, RecordSpec, ZoneSpec
from healthdns.signer.main import Signer
from healthdns.supervisor import views
from healthdns.supervisor.channel import Channel, FrameTooLarge

INTERVAL = 0.1
SYS_PIDFD_GETFD = 438


def toml(port: int) -> str:
    return f"""
        [server]
        listen = ["127.0.0.1:0"]
        responders = 2

        [[zones]]
        origin = "example.test"
        nameservers = ["ns1.example.net"]

        [zones.records.www]
        ttl = 1
        pool = {{ addresses = ["127.0.0.1", "127.0.0.2"], check = {{ port = {port}, interval = {INTERVAL}, timeout = 0.1, rise = 1, fall = 1 }} }}
    """


@pytest.fixture(scope="module")
def backends() -> Iterator[tuple[Backend, Backend]]:
    first = Backend("127.0.0.1")
    second = Backend("127.0.0.2", first.port)
    first.up()
    yield first, second
    first.close()
    second.close()


@pytest.fixture
def server(tmp_path: Path, backends: tuple[Backend, Backend]) -> Iterator[Server]:
    srv = Server([], tmp_path, toml(backends[0].port)).start()
    yield srv
    assert srv.stop() == 0


def frame(payload: bytes) -> bytes:
    """What `Connection.send_bytes` writes."""
    return len(payload).to_bytes(4, "big") + payload


def forged_published() -> bytes:
    """A complete, loadable snapshot that serves www at an address of the attacker's choosing,
    published far ahead of the real generations."""
    cfg = config.from_mapping({"zones": [{"origin": "example.test",
                                          "nameservers": ["ns1.example.net"],
                                          "records": {"www": {"a": ["192.0.2.66"]}}}]})
    published = Signer(cfg).publish()
    assert published is not None
    snapshot = msgspec.msgpack.decode(published.snapshot, type=messages.Snapshot)
    forged = msgspec.structs.replace(snapshot, generation=10**6)
    return frame(messages.encode(messages.Published(10**6, published.serials, published.prints,
                                                    messages.encode(forged))))


FORGERIES = {
    "published far ahead": forged_published,
    "undecodable bytes": lambda: frame(b"\xc1\xc1\xc1\xc1"),
    "a 1 GiB header and no body": lambda: (1 << 30).to_bytes(4, "big"),
    "fatal": lambda: frame(messages.encode(messages.Fatal(1, "forged"))),
    "a health report": lambda: frame(messages.encode(messages.HealthReport({}, True))),
}


def pipe_to_supervisor(pid: int, supervisor: int) -> socket.socket:
    """A duplicate of the responder's end of its pipe: the Unix socket whose peer the supervisor
    created (the responder's own socketpairs, such as asyncio's, name the responder)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        for entry in os.listdir(f"/proc/{pid}/fd"):
            if not os.readlink(f"/proc/{pid}/fd/{entry}").startswith("socket:"):
                continue
            fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(entry), 0)
            assert fd >= 0, f"pidfd_getfd: {os.strerror(ctypes.get_errno())}"
            sock = socket.socket(fileno=fd)
            if sock.family == socket.AF_UNIX:
                creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
                if struct.unpack("3i", creds)[0] == supervisor:
                    return sock
            sock.close()
    finally:
        os.close(pidfd)
    raise AssertionError(f"responder {pid} holds no pipe to the supervisor {supervisor}")


def responder_pid(server: Server, slot: int) -> int:
    started = re.findall(rf"responder{slot} started \(pid (\d+)\)", server.output())
    return int(started[-1])


def answers_www(server: Server) -> set[str]:
    """Every address responders answer www with, over enough queries to reach each of them."""
    return set().union(*(server.addresses("www.example.test") for _ in range(12)))


@pytest.mark.parametrize("forgery", FORGERIES)
def test_a_responder_that_breaks_the_protocol_is_respawned_and_obeyed_in_nothing(
        server: Server, backends: tuple[Backend, Backend], forgery: str) -> None:
    assert answers_www(server) == {"127.0.0.1"}
    victim = responder_pid(server, 1)
    with pipe_to_supervisor(victim, server.pid) as pipe:
        pipe.sendall(FORGERIES[forgery]())
    server.wait_for(rf"responder1 \(pid {victim}\) broke the protocol", 5)
    respawned = server.wait_for(r"responder1 started \(pid (\d+)\)", 5)
    assert int(respawned.group(1)) != victim
    assert answers_www(server) == {"127.0.0.1"}
    # Real changes still reach every responder: the forged generation did not shadow them.
    backends[1].up()
    try:
        server.wait_until(lambda: answers_www(server) == {"127.0.0.1", "127.0.0.2"}, 5,
                          "127.0.0.2 served once up")
    finally:
        backends[1].down()
    server.wait_until(lambda: answers_www(server) == {"127.0.0.1"}, 5, "127.0.0.2 withdrawn")
    assert server.process is not None and server.process.poll() is None


# --- the framing, against what multiprocessing writes --------------------------------------------


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=3000), max_size=8), st.integers(1, 4096))
def test_channel_reads_back_every_frame_send_bytes_wrote(payloads: list[bytes],
                                                         limit_slack: int) -> None:
    channel = Channel(max((len(p) for p in payloads), default=0) + limit_slack)
    try:
        for payload in payloads:
            channel.child_end.send_bytes(payload)
        assert channel.receive() == payloads
        assert channel.receive() == []
    finally:
        channel.close()


@given(st.integers(0, 1000), st.integers(1, 1 << 31))
def test_channel_refuses_a_header_over_its_limit_without_its_body(limit: int, excess: int) -> None:
    channel = Channel(limit)
    try:
        size = limit + excess
        header = size.to_bytes(4, "big") if size < 0xFFFFFFFF else b"\xff" * 4 + size.to_bytes(8, "big")
        os.write(channel.child_end.fileno(), header)
        with pytest.raises(FrameTooLarge):
            channel.receive()
    finally:
        channel.close()


def test_channel_says_eof_when_the_child_end_closes() -> None:
    channel = Channel(100)
    channel.child_end.close()
    with pytest.raises(EOFError):
        channel.receive()
    channel.close()


def test_channel_sends_without_waiting_for_the_child_to_read() -> None:
    channel = Channel(100)
    try:
        payloads = [os.urandom(3 << 20), b"", os.urandom(1000)]
        for payload in payloads:
            channel.send(payload)  # far more than a socket buffer holds: returns at once
        assert channel.pending > 0
        received: list[bytes] = []
        reader = threading.Thread(target=lambda: received.extend(
            channel.child_end.recv_bytes() for _ in payloads))
        reader.start()
        while channel.pending:  # the supervisor's loop does this when the socket is writable
            select.select([], [channel], [], 5)
            channel.flush()
        reader.join(5)
        assert received == payloads
    finally:
        channel.close()


# --- what each role is told ----------------------------------------------------------------------


def checked_config(checks: list[CheckSpec]) -> Config:
    groups = tuple(GroupSpec(addresses=("192.0.2.1", "192.0.2.2"), weights=(1, 1), check=c)
                   for c in checks)
    zone = ZoneSpec(origin="example.test", nameservers=("ns1.example.net",),
                    records={"www": RecordSpec(pool=PoolSpec(groups=groups)),
                             "static": RecordSpec(a=("192.0.2.9",))})
    return Config(zones=(zone,))


# Marked, so that a value can only be found where it was copied, not in a field name.
secrets_ = st.text(st.characters(codec="ascii", exclude_categories=("Cc",))).map(
    lambda text: f"Bearer s3cr3t {text}")


@given(st.lists(st.tuples(secrets_, st.none() | secrets_), min_size=1, max_size=4, unique=True))
def test_header_values_and_ca_reach_the_prober_only(secret_pairs: list[tuple[str, str | None]]
                                                    ) -> None:
    checks = [CheckSpec(kind="https", port=443, headers={"Authorization": header}, ca_pem=ca)
              for header, ca in secret_pairs]
    split = views.split(config_ := checked_config(checks))
    told = {role: config.decode(split.for_role(role)) for role in ("responder", "signer", "prober")}
    for role in ("responder", "signer"):
        encoded = split.for_role(role)
        for header, ca in secret_pairs:
            assert header.encode() not in encoded, f"the {role} is sent a header value"
            assert ca is None or ca.encode() not in encoded, f"the {role} is sent a CA"
    assert told["responder"] == Config(server=config_.server, rrl=config_.rrl,
                                       cookies=config_.cookies)
    assert told["prober"].checks() == config_.checks()
    assert "static" not in told["prober"].zones[0].records
    # Every check the prober reports on is one check at the signer, and no two are merged.
    assert set(split.signer_ids) == set(config_.checks())
    assert set(split.signer_ids.values()) == set(told["signer"].checks())
    assert len(set(split.signer_ids.values())) == len(split.signer_ids)


def test_the_signer_is_told_everything_else_about_its_zones() -> None:
    cfg = config.load(Path(__file__).parents[1] / "shared" / "demo.toml")
    told = config.decode(views.split(cfg).signer)
    assert told.server == cfg.server
    for zone, mine in zip(cfg.zones, told.zones, strict=True):
        assert msgspec.structs.replace(mine, records={}) == \
            msgspec.structs.replace(zone, records={})
        assert {n: r.static() for n, r in mine.records.items()} == \
            {n: r.static() for n, r in zone.records.items()}
