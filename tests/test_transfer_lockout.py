"""The transfer port cannot be locked out (issue #20 item 4): clients no rule admits are
answered REFUSED and closed without taking a slot, one address holds at most its share, and
a configured secondary always gets a slot. The slots against a model; then the real
supervisor, with kdig as the secondary."""

from __future__ import annotations

import re
import selectors
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Self

import dns.message
import dns.rcode
import pytest
from conftest import need_tool
from harness import Server
from hypothesis import given, settings
from hypothesis import strategies as st

from healthdns.transfer.slots import PER_CLIENT, Slots

# --- the slots against a model ----------------------------------------------------------------

HOSTS = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "192.0.2.53"]  # the last one: the secondary
SECONDARY = HOSTS[-1]

actions = st.lists(st.one_of(
    st.tuples(st.just("open"), st.sampled_from(HOSTS)),
    st.tuples(st.just("close"), st.integers(0, 200)),
    st.tuples(st.just("busy"), st.integers(0, 200), st.booleans()),
), max_size=120)


@settings(max_examples=300, deadline=None)
@given(limit=st.integers(1, 12), schedule=actions)
def test_slots_follow_the_rules(limit: int, schedule: list[tuple[object, ...]]) -> None:
    now = [0.0]
    slots = Slots(limit, clock=lambda: now[0])
    # The model: each open connection's host, whether busy, since when (in admission order).
    model: dict[int, list[object]] = {}
    closed: list[int] = []
    for step, action in enumerate(schedule):
        now[0] += 1.0
        if action[0] == "open":
            host = str(action[1])
            secondary = host == SECONDARY
            mine = sum(1 for h, *_ in model.values() if h == host)
            others = {k: v for k, v in model.items() if v[0] != SECONDARY}
            victim = None
            if len(model) >= limit and secondary and others and mine < PER_CLIENT:
                victim = min(others, key=lambda k: (others[k][1], others[k][2]))
            want = mine < PER_CLIENT and (len(model) < limit or secondary)
            got = slots.admit(step, host, secondary, lambda k=step: closed.append(k))
            assert got == want, (action, model)
            if victim is not None:
                assert closed[-1] == victim  # idle before busy, the longest idle first
                del model[victim]
            if got:
                model[step] = [host, False, now[0]]
        elif model:
            key = sorted(model)[int(str(action[1])) % len(model)]
            if action[0] == "close":
                slots.release(key)
                del model[key]
            else:
                slots.busy(key, bool(action[2]))
                model[key][1:] = [bool(action[2]), now[0]]
        non_secondary = sum(1 for h, *_ in model.values() if h != SECONDARY)
        assert non_secondary <= limit and set(slots.held) == set(model)
        assert all(n <= PER_CLIENT for n in slots.per_host.values())


def test_strangers_displace_the_oldest_of_their_own() -> None:
    now = [0.0]
    strangers = Slots(2, displace=True, clock=lambda: now[0])
    closed: list[str] = []
    for key in ("a", "b", "c"):
        now[0] += 1
        assert strangers.admit(key, f"10.0.0.{len(closed) + ord(key)}", False,
                               lambda k=key: closed.append(k))
    assert closed == ["a"] and set(strangers.held) == {"b", "c"}


# --- the real supervisor ---------------------------------------------------------------------

SECRET = "dHJhbnNmZXJzLXRlc3Qta2V5LXNlY3JldA=="
KEY = "xfr-lockout"
TRANSFERS = re.compile(r"transfers on (\S+?):(\d+)")
STRANGERS = 70  # more than the port's 64 slots
SHARED = "127.0.5."  # an allowed network: each address there holds at most PER_CLIENT


def config() -> str:
    return f"""
        [server]
        listen = ["127.0.0.1:0"]
        responders = 1

        [[tsig]]
        name = "{KEY}"
        secret = "{SECRET}"

        [transfer]
        listen = ["127.0.0.1:0"]
        secondaries = [{{ address = "127.0.0.1", key = "{KEY}", notify = false }}]
        allow = [{{ networks = ["{SHARED}0/24"], key = "{KEY}" }}]

        [[zones]]
        origin = "example.test"
        nameservers = ["ns1.example.net"]

        [zones.records.www]
        a = ["192.0.2.1"]
    """


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    running = Server([], tmp_path_factory.mktemp("lockout"), config()).start()
    found = TRANSFERS.search(running.output())
    assert found, running.output()
    yield running, int(found.group(2))
    assert running.stop() == 0


def axfr(port: int) -> bool:
    """One AXFR by kdig, signed, from the secondary's address: whether it got the zone."""
    # Generous: the transfer process runs at nice 19, last in line on a busy machine.
    done = subprocess.run([need_tool("kdig"), "@127.0.0.1", "-p", str(port), "+retry=0",
                           "+timeout=10", "-y", f"hmac-sha256:{KEY}:{SECRET}", "AXFR",
                           "example.test."], capture_output=True, text=True, timeout=30,
                          check=False)
    return done.returncode == 0 and "www.example.test." in done.stdout \
        and done.stdout.count("\tSOA\t") >= 2


class Strangers:
    """Clients outside every rule, each asking the SOA every `every` seconds over a connection
    it keeps (and opens again when it is closed), in one thread until `stop`."""

    def __init__(self, port: int, count: int, every: float) -> None:
        self.port, self.count, self.every = port, count, every
        self.answers: list[int] = []  # rcodes
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.thread.join(10)

    def _run(self) -> None:
        wire = dns.message.make_query("example.test", "SOA").to_wire()
        frame = len(wire).to_bytes(2, "big") + wire
        due = {i: time.monotonic() + i * self.every / self.count for i in range(self.count)}
        socks: dict[int, socket.socket] = {}
        with selectors.DefaultSelector() as selector:
            while not self.stopping.is_set():
                now = time.monotonic()
                for i, when in due.items():
                    if when <= now:
                        due[i] = now + self.every
                        self._ask(i, socks, selector, frame)
                for key, _ in selector.select(0.05):
                    self._read(key.data, socks, selector)
            for sock in socks.values():
                sock.close()

    def _ask(self, i: int, socks: dict[int, socket.socket], selector: selectors.BaseSelector,
             frame: bytes) -> None:
        sock = socks.get(i)
        if sock is None:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=2,
                                            source_address=(f"127.0.4.{i + 1}", 0))
            socks[i] = sock
            selector.register(sock, selectors.EVENT_READ, i)
        try:
            sock.sendall(frame)
        except OSError:
            self._drop(i, socks, selector)

    def _read(self, i: int, socks: dict[int, socket.socket],
              selector: selectors.BaseSelector) -> None:
        try:
            data = socks[i].recv(4096)
        except OSError:
            data = b""
        if len(data) >= 6:
            self.answers.append(data[5] & 0x0F)
        if not data:
            self._drop(i, socks, selector)

    @staticmethod
    def _drop(i: int, socks: dict[int, socket.socket], selector: selectors.BaseSelector) -> None:
        sock = socks.pop(i)
        selector.unregister(sock)
        sock.close()


def test_strangers_never_lock_the_secondary_out(server: tuple[Server, int]) -> None:
    """70 clients outside the rules, one query every 2 s each, kept connections (the attack
    that made every AXFR fail): every AXFR of the secondary succeeds, and each stranger is
    answered REFUSED."""
    _, port = server
    with Strangers(port, STRANGERS, 2.0) as strangers:
        time.sleep(2.5)  # every stranger has connected and asked once: the attack is on
        results = [axfr(port) for _ in range(5)]
    assert results == [True] * 5
    assert len(strangers.answers) >= STRANGERS
    assert set(strangers.answers) == {dns.rcode.REFUSED}


def test_one_address_holds_its_share_and_the_secondary_displaces_idle_ones(
        server: tuple[Server, int]) -> None:
    """Allowed clients that open connections and send nothing: one address gets PER_CLIENT
    of them, the rest are closed at once; the port full of them, the secondary's AXFR still
    goes through, displacing the longest idle."""
    _, port = server
    held: list[socket.socket] = []
    try:
        for _ in range(PER_CLIENT + 4):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=2,
                                                 source_address=(f"{SHARED}1", 0)))
        assert closed_within(held, 1.0) == 4
        for host in range(2, 10):  # 8 more addresses: 64 held idle, the port full
            for _ in range(PER_CLIENT):
                held.append(socket.create_connection(("127.0.0.1", port), timeout=2,
                                                     source_address=(f"{SHARED}{host}", 0)))
        late = socket.create_connection(("127.0.0.1", port), timeout=2,
                                        source_address=(f"{SHARED}20", 0))
        held.append(late)
        assert closed_within([late], 1.0) == 1  # full: an allowed client, no secondary, waits
        assert all(axfr(port) for _ in range(3))
    finally:
        for sock in held:
            sock.close()


def closed_within(socks: list[socket.socket], seconds: float) -> int:
    """How many of `socks` the server closes within `seconds` (it sends nothing to an idle
    connection: anything readable is the end)."""
    closed = 0
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(left):
                selector.unregister(key.fileobj)
                closed += 1
    return closed
