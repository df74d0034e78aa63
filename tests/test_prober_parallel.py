"""How many checks the prober runs at once: by default enough for every check to start on time
when every target goes silent (each check then holds its socket for its whole timeout), within
the open files limit; a configured number that cannot is warned about at load.

Before, `prober.parallel` was 2048 whatever the targets: with 10,000 targets checked every
second with a 1 s timeout, half of them silent, checks queued and failover came late (p99 3.8 s
against 3.5 s, bench/prober_scale.py)."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import resource
from collections.abc import Callable
from typing import Any

import pytest

from healthdns.prober.checks import Done
from healthdns.prober.scheduler import Scheduler
from healthdns.shared import config
from healthdns.shared.config import CheckSpec


def document(targets: int, interval: float = 1.0, timeout: float = 1.0,
             parallel: int | None = None) -> dict[str, Any]:
    """`targets` addresses, ten to a name, each checked by TCP every `interval`."""
    addresses = [f"127.{10 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}" for i in range(targets)]
    check = {"port": 80, "interval": interval, "timeout": timeout}
    records = {f"n{n}": {"pool": {"addresses": addresses[n:n + 10], "check": check}}
               for n in range(0, targets, 10)}
    doc: dict[str, Any] = {"zones": [{"origin": "scale.test",
                                      "nameservers": ["ns1.scale.test"], "records": records}]}
    if parallel is not None:
        doc["prober"] = {"parallel": parallel}
    return doc


@pytest.fixture
def files(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Sets the hard open files limit the configuration sees."""
    def set_hard(hard: int) -> None:
        monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, hard))
    set_hard(65536)
    return set_hard


SIZES = [
    # (targets, interval, timeout, hard limit) -> parallel
    ((100, 5.0, 2.0, 65536), 2048),  # a few targets: the floor, for the first round
    ((10_000, 1.0, 1.0, 65536), 11_000),  # every target may hold a socket at once, and 10%
    ((10_000, 10.0, 1.0, 65536), 2048),  # a tenth of them at once, and the slack
    ((3000, 1.0, 0.5, 65536), 2048),  # 3000 x 0.55: 1650, under the floor
    ((10_000, 1.0, 1.0, 4096), 4096 - config.FILES_KEPT),  # all the open files limit holds
    ((10_000, 1.0, 1.0, resource.RLIM_INFINITY), 11_000),
]


@pytest.mark.parametrize("case,parallel", SIZES, ids=[str(c) for c, _ in SIZES])
def test_the_default_is_sized_from_the_targets_and_the_files_limit(
        case: tuple[int, float, float, int], parallel: int, files: Any) -> None:
    targets, interval, timeout, hard = case
    files(hard)
    cfg = config.from_mapping(document(targets, interval, timeout))
    assert cfg.prober.parallel == parallel


def test_a_configured_number_is_kept_and_warned_about_when_too_small(files: Any) -> None:
    cfg = config.from_mapping(document(10_000, parallel=2048))
    assert cfg.prober.parallel == 2048
    assert config.warnings(cfg) == [(
        "prober.parallel",
        ("2048 checks in flight cannot keep every check on schedule: when the targets stop "
        "answering, 10000 checks are in flight at once (each of the 10000 targets holds a "
        "socket for its timeout once per interval), and the rest wait, so failover comes "
        "late; raise it to at least 10000, or leave it out to size it from the targets"))]
    assert config.warnings(config.from_mapping(document(10_000, parallel=10_000))) == []
    assert config.warnings(config.from_mapping(document(10_000))) == []


def test_an_open_files_limit_too_low_is_warned_about(files: Any) -> None:
    files(4096)
    (path, message), = config.warnings(config.from_mapping(document(10_000)))
    assert path == "prober.parallel"
    assert message.startswith("4032 checks in flight cannot keep every check on schedule")
    assert message.endswith("the open files limit holds only 4032: raise it (LimitNOFILE= in "
                            "systemd, ulimit -Hn) to at least 10064")


def test_parallel_zero_means_the_default_and_a_negative_one_is_refused(files: Any) -> None:
    assert config.from_mapping(document(10, parallel=0)).prober.parallel == 2048
    with pytest.raises(config.ConfigError, match=r"prober.parallel: -1 is not between 0 and "):
        config.from_mapping(document(10, parallel=-1))


# ---------------------------------------------------------------------------------------------
# The schedule itself: every target silent, on a fake clock where a check ends at its timeout.


class SilentNetwork:
    """A fake clock and a check that never connects, each check failing at its timeout: a
    discrete-event simulation, the clock moving to the next check end or wake-up once the
    loop has nothing left to run."""

    def __init__(self) -> None:
        self.t = 0.0
        self.events: list[tuple[float, int, Callable[[], None]]] = []
        self.starts: dict[str, list[float]] = {}
        self.order = 0

    def now(self) -> float:
        return self.t

    async def settle(self) -> None:
        """Let the loop run what the last events set off (drains, batches of starts,
        reports, naps) until a few turns go by with no check started and no sleep asked."""
        quiet = 0
        while quiet < 4:
            before = self.order
            await asyncio.sleep(0)
            quiet = quiet + 1 if self.order == before else 0

    def at(self, when: float, event: Callable[[], None]) -> None:
        self.order += 1
        heapq.heappush(self.events, (when, self.order, event))

    def check(self, address: str, spec: CheckSpec, done: Done) -> None:
        self.starts.setdefault(address, []).append(self.t)
        self.at(self.t + spec.timeout, lambda: done(False, f"timeout after {spec.timeout:g} s"))

    async def sleep(self, delay: float) -> None:
        woken = asyncio.get_running_loop().create_future()
        self.at(self.t + max(delay, 0.0), lambda: woken.done() or woken.set_result(None))
        await woken

    async def run(self, seconds: float) -> None:
        while self.t < seconds:
            await self.settle()
            self.t = self.events[0][0]
            while self.events and self.events[0][0] <= self.t:
                heapq.heappop(self.events)[2]()


def _late_starts(cfg: config.Config, seconds: float) -> list[float]:
    """How late each periodic check started, past the first round (every target silent)."""
    net = SilentNetwork()
    targets = cfg.checks()

    async def serve() -> None:
        scheduler = Scheduler(targets, lambda states, full: None, check=net.check, now=net.now,
                              sleep=net.sleep, parallel=cfg.prober.parallel, fence_min_targets=0)
        task = asyncio.create_task(scheduler.serve())
        await net.run(seconds)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(serve())
    late = []
    for address, spec in targets.values():
        starts = [t for t in net.starts[address] if t < seconds - spec.interval]
        late += [max(0.0, b - a - spec.interval) for a, b in itertools.pairwise(starts[1:])]
    return late


def test_with_the_default_every_silent_check_starts_on_time(files: Any) -> None:
    """3,000 silent targets every second, 1 s timeouts: with 2,048 slots (before) checks
    waited for one another, and a target was checked every 1.5 s."""
    cfg = config.from_mapping(document(3000))
    late = _late_starts(cfg, 6.0)
    assert len(late) >= 3000 * 2
    assert max(late) <= 0.02, f"{sum(x > 0.02 for x in late)} of {len(late)} checks started late"
