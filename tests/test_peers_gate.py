"""The peers listener's caps against a model: over random accepts and closes from a few
addresses, a connection is admitted exactly when the total and its address's count are under
their caps, every refusal is counted, and a close gives its place back."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from healthdns.peers import gate

ADDRESSES = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]


@given(st.integers(1, 6), st.integers(1, 4),
       st.lists(st.tuples(st.booleans(), st.sampled_from(ADDRESSES)), max_size=60))
def test_admission_follows_the_caps(total: int, per_client: int,
                                    steps: list[tuple[bool, str]]) -> None:
    door = gate.Gate(total, per_client, 1.0, now=lambda: 0.0)
    held: Counter[str] = Counter()
    refused = 0
    for accept, address in steps:
        if accept:
            fits = held.total() < total and held[address] < per_client
            assert door.admit(address) is fits
            held[address] += fits
            refused += not fits
        elif held[address]:
            door.release(address)
            held[address] -= 1
        assert +door.held == +held and door.refused == refused


def test_the_caps_grow_with_the_peers() -> None:
    assert gate.caps(1) == (gate.PER_CLIENT + gate.SPARE, gate.PER_CLIENT)
    assert gate.caps(3)[0] > gate.caps(1)[0] and gate.caps(3)[1] == gate.caps(1)[1]
