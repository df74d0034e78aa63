"""The supervisor's crash budget and backoff, with a fake clock."""

from __future__ import annotations

import pytest

from healthdns.shared import config, heap, messages
from healthdns.supervisor import relay
from healthdns.supervisor.arbiter import EXIT_FATAL, Supervisor
from healthdns.supervisor.channel import Channel
from healthdns.supervisor.roles import SMALL_FRAME_LIMIT

CFG = config.from_mapping({"zones": [{"origin": "example.test",
                                      "nameservers": ["ns1.example.net"],
                                      "records": {"www": {"a": ["192.0.2.1"]}}}]})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_crashes_in_a_burst_exhaust_the_budget() -> None:
    clock = Clock()
    supervisor = Supervisor(CFG, now=clock)
    for _ in range(10):
        supervisor._count_crash()
        clock.now += 1
    assert not supervisor.stopping
    supervisor._count_crash()
    assert supervisor.stopping and supervisor.exit_code == EXIT_FATAL


def test_the_budget_decays_over_time() -> None:
    clock = Clock()
    supervisor = Supervisor(CFG, now=clock)
    for _ in range(100):
        supervisor._count_crash()
        clock.now += 60  # one crash a minute is forgiven as fast as it comes
    assert not supervisor.stopping


# --- what a child may say ------------------------------------------------------------------------


def test_a_published_generation_must_be_the_next_one() -> None:
    supervisor = Supervisor(CFG)
    signer = supervisor.signer
    ahead = messages.Published(10**6, [1], [b""], b"forged")
    assert supervisor.relay.dispatch(signer, ahead) == "generation 1000000 published after 0"
    assert supervisor.relay.snapshot is None and supervisor.relay.generation == 0
    assert supervisor.relay.dispatch(signer, messages.Published(1, [1], [b""], b"real")) is None
    assert supervisor.relay.snapshot == b"real"
    again = messages.Published(1, [1], [b""], b"again")
    assert supervisor.relay.dispatch(signer, again) is not None


def test_the_snapshot_is_kept_compressed_and_handed_on_whole() -> None:
    """Memory (issue #12): the supervisor keeps the latest snapshot for responders that start
    and a respawned signer, compressed; each is handed the snapshot as it was published."""
    supervisor = Supervisor(CFG)
    snapshot = b"".join(i.to_bytes(4, "big") * 3 for i in range(50_000))  # repeats, as DNS does
    assert supervisor.relay.dispatch(supervisor.signer,
                                messages.Published(1, [7], [b"p"], snapshot)) is None
    assert len(supervisor.relay.packed) < len(snapshot) / 2
    assert supervisor.relay.snapshot == snapshot
    assert supervisor.relay.published is not None
    assert supervisor.relay.resume(supervisor.relay.published) == \
        messages.Resume(1, [7], [b"p"], snapshot)


def test_the_heap_is_trimmed_once_a_snapshot_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory (issue #12): compressing a snapshot leaves zlib's buffers free on the heap,
    pages glibc keeps unless told (0.8 MiB at 10,000 signed names, bench/memory.py); the
    supervisor gives them back after each publication it keeps, and only then."""
    pads: list[int] = []
    monkeypatch.setattr(heap, "_malloc_trim", pads.append)
    supervisor = Supervisor(CFG)
    assert supervisor.relay.dispatch(supervisor.signer, messages.Published(2, [1], [b""], b"x"))
    assert pads == []  # refused: nothing kept
    assert supervisor.relay.dispatch(supervisor.signer,
                                messages.Published(1, [1], [b""], b"x" * 100_000)) is None
    assert pads == [0]
    assert supervisor.relay.dispatch(supervisor.signer, messages.Ready(0)) is not None
    assert pads == [0]


def test_a_responder_may_say_it_cannot_bind_only_first_and_stops_the_server_only_at_start_up(
        ) -> None:
    supervisor = Supervisor(CFG)
    responder = supervisor.responders[0]
    responder.spoke = True  # it has sent Bound: from then on Fatal is out of turn
    assert supervisor.relay.dispatch(responder, messages.Fatal(0, "forged")) == "Fatal out of turn"
    assert not supervisor.stopping
    responder.spoke, supervisor.relay.announced = False, True  # a respawn, after start-up
    assert supervisor.relay.dispatch(responder, messages.Fatal(0, "address in use")) is None
    assert not supervisor.stopping
    supervisor.relay.announced = False  # at start-up: the configuration cannot be served
    assert supervisor.relay.dispatch(responder, messages.Fatal(0, "address in use")) is None
    assert supervisor.stopping and supervisor.exit_code == EXIT_FATAL


def test_ready_comes_after_bound_and_names_the_sender() -> None:
    supervisor = Supervisor(CFG)
    responder = supervisor.responders[0]
    responder.state = "starting"
    assert supervisor.relay.dispatch(responder, messages.Ready(0)) == "Ready out of turn"
    responder.spoke = True
    assert supervisor.relay.dispatch(responder, messages.Ready(1)) == "Ready names slot 1"
    assert supervisor.relay.dispatch(responder, messages.Ready(0)) is None
    assert responder.state == "running"


def test_the_prober_reports_only_on_known_targets() -> None:
    supervisor = Supervisor(CFG)
    report = messages.HealthReport({"tcp 192.0.2.1 80 5/2/2/2": False}, full=True)
    assert supervisor.relay.dispatch(supervisor.prober, report) == \
        "health of an unknown target 'tcp 192.0.2.1 80 5/2/2/2'"
    assert supervisor.relay.health is None


def test_a_child_that_breaks_the_protocol_is_counted_and_cut_off() -> None:
    supervisor = Supervisor(CFG)
    responder = supervisor.responders[0]
    responder.channel = Channel(SMALL_FRAME_LIMIT)
    responder.channel.child_end.send_bytes(messages.encode(messages.HealthReport({}, True)))
    supervisor.relay.receive(responder)
    assert supervisor.counters.rejected == {"responder": 1}
    assert responder.channel is None and not supervisor.stopping


def test_a_child_that_leaves_its_pipe_unread_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay, "UNREAD_LIMIT", 1 << 20)
    supervisor = Supervisor(CFG)
    responder = supervisor.responders[0]
    responder.channel = Channel(SMALL_FRAME_LIMIT)
    supervisor.relay.send(responder, bytes(500_000))  # never read: queued, not waited for
    assert supervisor.counters.rejected == {}
    supervisor.relay.send(responder, bytes(2_000_000))
    assert supervisor.counters.rejected == {"responder": 1} and responder.channel is None
