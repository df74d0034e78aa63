"""The responder's TCP connections (responder/tcp.py) against a model, without sockets.

Framing: any split of a stream of length-prefixed queries gives the same answers, one write per
read. Management: a model of the open connections (last activity, client) says which one an
admission evicts, which the sweep closes and what the per-client limit refuses.
"""

from __future__ import annotations

import asyncio

import hypothesis.strategies as st
from hypothesis import given, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from healthdns.responder import tcp


class FakeTransport(asyncio.Transport):
    """A transport that keeps what is written; `unread`: the octets of it the client has not
    read (0: the client reads everything at once)."""

    def __init__(self, peer: tuple[str, int]) -> None:
        super().__init__()
        self.peer = peer
        self.writes: list[bytes] = []
        self.closed = False
        self.reading = True
        self.unread: int | None = None  # None: read as written
        self.protocol: asyncio.BaseProtocol | None = None

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self.peer if name == "peername" else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))
        if self.unread is not None:  # as asyncio: past the high mark, the protocol pauses
            self.unread += len(data)
            if self.unread > tcp.UNSENT_MAX and isinstance(self.protocol, tcp.Connection):
                self.protocol.pause_writing()

    def get_write_buffer_size(self) -> int:
        return self.unread or 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        assert high == tcp.UNSENT_MAX

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


def echo(query: bytes, is_tcp: bool) -> bytes | None:
    """A stand-in answerer: the query with a mark, or nothing for a query that asks none."""
    assert is_tcp
    return None if query[2] == 0xFF else query + b"!"


def frame(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_tcp(max_connections: int = 64, per_client: int = 64, idle: float = 10.0,
             clock: Clock | None = None) -> tcp.Tcp:
    return tcp.Tcp(echo, lambda data: None, tcp.Limits(max_connections, per_client, idle, 1024),
                   clock or Clock())


def open_connection(manager: tcp.Tcp, host: str = "127.0.0.1") -> tuple[tcp.Connection,
                                                                        FakeTransport]:
    conn = tcp.Connection(manager)
    transport = FakeTransport((host, 40000))
    transport.protocol = conn
    conn.connection_made(transport)
    return conn, transport


queries = st.lists(st.binary(min_size=12, max_size=300), min_size=1, max_size=20)


@given(queries, st.data())
@settings(max_examples=200, deadline=None)
def test_any_split_of_a_stream_gives_every_answer_one_write_per_read(
        messages: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(frame(m) for m in messages)
    cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=40)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    conn, transport = open_connection(make_tcp())
    for chunk in chunks:
        conn.data_received(chunk)
    expected = b"".join(frame(m + b"!") for m in messages if m[2] != 0xFF)
    assert b"".join(transport.writes) == expected
    assert len(transport.writes) <= len(chunks)
    assert conn.pending == b"" and not transport.closed


@given(st.integers(0, tcp.HEADER - 1), st.booleans())
def test_a_length_prefix_shorter_than_a_header_closes_the_connection(length: int,
                                                                     after_good: bool) -> None:
    conn, transport = open_connection(make_tcp())
    good = frame(b"\x00\x01" + b"\x00" * 10) if after_good else b""
    conn.data_received(good + length.to_bytes(2, "big") + b"\x00" * 40 + good)
    assert transport.closed
    assert transport.writes == ([frame(b"\x00\x01" + b"\x00" * 10 + b"!")] if after_good else [])


@given(st.integers(1, 1000), st.integers(1, 1000), st.floats(0.01, 3600))
def test_idle_timeout_shrinks_with_pressure_within_bounds(count: int, limit: int,
                                                          full: float) -> None:
    timeout = tcp.idle_timeout(count, limit, full)
    floor = full * tcp.IDLE_FLOOR
    assert floor <= timeout <= full
    if count * 2 <= limit:
        assert timeout == full
    if count >= limit:
        assert timeout == floor
    assert tcp.idle_timeout(count + 1, limit, full) <= timeout


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(12, 3000), min_size=1, max_size=400), st.integers(0, 40_000),
       st.lists(st.integers(1, 200_000), max_size=30))
def test_a_client_that_does_not_read_holds_a_bounded_backlog(
        sizes: list[int], unread: int, reads: list[int]) -> None:
    """Answers are written while the unsent ones stay under UNSENT_MAX (one answer past it at
    most); the other queries wait, unread, with the connection read no more, until the
    client reads; each read lets more through, in order, and none is lost."""
    conn, transport = open_connection(make_tcp())
    transport.unread = unread
    messages = [bytes([i >> 8 & 0xFF, i & 0xFF]) + b"q" * (size - 2)
                for i, size in enumerate(sizes)]
    conn.data_received(b"".join(frame(m) for m in messages))
    biggest = max(sizes) + 3  # an answer, framed
    expected = b"".join(frame(m + b"!") for m in messages)
    # The client reads `taken` octets at a time, then everything until all is answered.
    for taken in [*reads, *[None] * (len(expected) // (tcp.UNSENT_MAX // 2) + 2)]:
        assert transport.get_write_buffer_size() <= max(unread, tcp.UNSENT_MAX) + biggest
        assert transport.reading == (not conn.writing)  # read no more while it is full
        assert conn.writing or conn.pending == b""  # and queries wait only then
        assert transport.unread is not None
        transport.unread = 0 if taken is None else max(0, transport.unread - taken)
        if transport.unread <= tcp.UNSENT_MAX // 4 and not transport.reading:
            conn.resume_writing()  # as asyncio: drained to the low mark
    assert b"".join(transport.writes) == expected
    assert conn.pending == b"" and transport.reading


def test_a_stalled_partial_query_is_idle() -> None:
    clock = Clock()
    manager = make_tcp(idle=5.0, clock=clock)
    conn, transport = open_connection(manager)
    clock.now += 4.0
    conn.data_received(frame(b"\x00" * 30)[:10])  # a piece is not activity
    clock.now += 1.5
    assert manager.sweep() == 1 and transport.closed


class Registry(RuleBasedStateMachine):
    """Tcp's bookkeeping against a plain model: {connection: (last activity, client)}."""

    LIMIT, PER_CLIENT, IDLE = 6, 3, 10.0

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.manager = make_tcp(self.LIMIT, self.PER_CLIENT, self.IDLE, self.clock)
        self.model: dict[tcp.Connection, tuple[float, int, str]] = {}  # last, turn, client
        self.turn = 0
        self.transports: dict[tcp.Connection, FakeTransport] = {}

    @rule(client=st.sampled_from(["192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2",
                                  "2001:db8:0:1::1"]))
    def connect(self, client: str) -> None:
        key = tcp.client_key((client, 1))
        held = sum(1 for *_, c in self.model.values() if c == key)
        oldest = min(self.model, key=lambda c: self.model[c][:2]) if self.model else None
        conn, transport = open_connection(self.manager, client)
        if held >= self.PER_CLIENT:
            assert transport.closed, "a client beyond its share was admitted"
            return
        assert not transport.closed
        if len(self.model) >= self.LIMIT:
            assert oldest is not None and self.transports[oldest].closed, \
                "the longest-idle connection was not the one evicted"
            del self.model[oldest]
        self.turn += 1
        self.model[conn] = (self.clock.now, self.turn, key)
        self.transports[conn] = transport

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def query(self, data: st.DataObject) -> None:
        conn = data.draw(st.sampled_from(self.ordered()))
        conn.data_received(frame(b"\x00\x01" + b"\x00" * 10))
        self.turn += 1
        self.model[conn] = (self.clock.now, self.turn, self.model[conn][2])

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def client_closes(self, data: st.DataObject) -> None:
        conn = data.draw(st.sampled_from(self.ordered()))
        conn.connection_lost(None)
        del self.model[conn]

    @rule(quarters=st.integers(0, 48))
    def time_passes_and_sweep(self, quarters: int) -> None:
        self.clock.now += quarters / 4
        timeout = tcp.idle_timeout(len(self.model), self.LIMIT, self.IDLE)
        self.manager.sweep()
        for conn, (last, *_) in list(self.model.items()):
            expired = last <= self.clock.now - timeout  # as rounded by Tcp.sweep
            assert self.transports[conn].closed == expired
            if expired:
                del self.model[conn]

    def ordered(self) -> list[tcp.Connection]:
        """Open connections in a reproducible order (ids are not), oldest admitted first."""
        return [c for c in self.transports if c in self.model]

    @invariant()
    def same_connections_and_counts(self) -> None:
        assert set(self.manager.open) == set(self.model)
        counts: dict[str, int] = {}
        for *_, client in self.model.values():
            counts[client] = counts.get(client, 0) + 1
        assert self.manager.per_client == counts


TestRegistry = Registry.TestCase
TestRegistry.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_client_key_groups_ipv6_by_64() -> None:
    assert tcp.client_key(("2001:db8::1", 53, 0, 0)) == tcp.client_key(("2001:db8::ff", 5, 0, 0))
    assert tcp.client_key(("2001:db8::1", 53)) != tcp.client_key(("2001:db8:0:1::1", 53))
    assert tcp.client_key(("192.0.2.1", 53)) != tcp.client_key(("192.0.2.2", 53))
