"""The supervisor's crash budget and backoff, with a fake clock."""

from __future__ import annotations

from healthdns.shared import config
from healthdns.supervisor.arbiter import EXIT_FATAL, Supervisor

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
