"""The control endpoint's connection table against a model of its rules, over random schedules.

The rules (supervisor/connections.py): at most `limit` connections, at most `per_client` from
one client; a connection is idle from `grace` after its admission, and between requests; a new
connection that meets a full table takes the place of the longest-idle connection (of its own
client when the client is at its cap, else of all), and is refused only when none is idle. The
overflow's table (`oldest`) closes the first admitted instead, idle or not, and so never
refuses.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthdns.supervisor.connections import Connection, Connections, client_key

LIMIT, PER_CLIENT, GRACE = 6, 3, 1.5
CLIENTS = ("192.0.2.1", "192.0.2.2", "192.0.2.3")


@dataclass
class Model:
    """The rules, written out plainly: (name, client, idle since or None) in admission order."""

    oldest: bool = False  # the overflow's rule: the first admitted goes, idle or not
    now: float = 0.0
    open: dict[int, tuple[str, float | None]] = field(default_factory=dict)

    def longest_idle(self, client: str | None) -> int | None:
        if self.oldest:
            return min((n for n, (c, _) in self.open.items() if client in (None, c)),
                       default=None)
        idle = [(since, name) for name, (c, since) in self.open.items()
                if since is not None and since <= self.now and client in (None, c)]
        return min(idle)[1] if idle else None

    def admit(self, name: int, client: str) -> tuple[bool, list[int]]:
        closed = []
        if sum(c == client for c, _ in self.open.values()) >= PER_CLIENT:
            victim = self.longest_idle(client)
            if victim is None:
                return False, []
            del self.open[victim]
            closed.append(victim)
        if len(self.open) >= LIMIT:
            victim = self.longest_idle(None)
            if victim is None:
                return False, closed
            del self.open[victim]
            closed.append(victim)
        self.open[name] = (client, self.now + (0.0 if self.oldest else GRACE))
        return True, closed


STEPS = st.lists(st.one_of(
    st.tuples(st.just("connect"), st.sampled_from(CLIENTS)),
    st.tuples(st.sampled_from(["busy", "idle", "close"]), st.integers(0, 40)),
    st.tuples(st.just("tick"), st.just("")),
), max_size=80)


@settings(max_examples=300, deadline=None)
@given(steps=STEPS, oldest=st.booleans())
def test_admission_follows_the_rules(steps: list[tuple[str, object]], oldest: bool) -> None:
    model = Model(oldest)
    table = Connections(LIMIT, PER_CLIENT, 0.0 if oldest else GRACE, clock=lambda: model.now,
                        oldest=oldest)
    conns: list[Connection] = []
    with socket.socket() as placeholder:  # the table never touches a connection's socket
        for op, arg in steps:
            if op == "tick":
                model.now += 1.0
            elif op == "connect":
                conn = Connection(placeholder, str(arg))
                admitted, closed = table.admit(conn)
                want_admitted, want_closed = model.admit(len(conns), str(arg))
                conns.append(conn)
                assert admitted == want_admitted
                assert [conns.index(c) for c in closed] == want_closed
                assert all(c.gone for c in closed)
            elif conns:
                index = int(str(arg)) % len(conns)
                conn, known = conns[index], index in model.open
                if op == "close":
                    table.remove(conn)
                    model.open.pop(index, None)
                    continue
                assert (table.busy(conn) if op == "busy" else table.idle(conn)) == known
                if known:
                    model.open[index] = (conn.client, None if op == "busy" else model.now)
            assert len(table) == len(model.open) <= LIMIT


@pytest.mark.parametrize(("address", "client"), [
    ("192.0.2.7", "192.0.2.7"),
    ("::ffff:192.0.2.7", "192.0.2.7"),  # a dual-stack socket's IPv4 client
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),  # the same host's other address
    ("fe80::1%eth0", "fe80::/64"),
])
def test_clients_are_ipv4_addresses_and_ipv6_slash_64s(address: str, client: str) -> None:
    assert client_key(address) == client
