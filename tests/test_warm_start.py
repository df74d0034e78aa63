"""Warm start: a restarted server serves the health its predecessor kept, before its own checks."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import HttpBackend, Server, config_toml

SLOW_CHECK = 3.0  # the HTTP timeout a silent backend makes the first round wait out


def config(port: int, state: Path, max_age: float | None = None) -> str:
    check = {"kind": "http", "port": port, "interval": SLOW_CHECK, "timeout": SLOW_CHECK,
             "rise": 1, "fall": 1}
    return config_toml({"www": {"ttl": 5, "pool": {"addresses": ["127.0.0.1", "127.0.0.2"],
                                                   "check": check}}},
                       server={"warm_start_max_age": max_age},
                       control={"state_file": str(state)})


@pytest.fixture
def backends() -> Iterator[tuple[HttpBackend, HttpBackend]]:
    first = HttpBackend("127.0.0.1")
    second = HttpBackend("127.0.0.2", first.port)
    first.up()  # the second stays down: bound, refusing connections
    yield first, second
    first.close()
    second.close()


def first_round_after_ready(server: Server) -> bool:
    output = server.output()
    ready = re.search(r"ready: serving", output)
    return ready is not None and "first round:" not in output[:ready.start()]


def test_a_restart_serves_the_kept_health_before_its_first_round(
        tmp_path: Path, backends: tuple[HttpBackend, HttpBackend]) -> None:
    state = tmp_path / "state.json"
    toml = config(backends[0].port, state)
    old = Server([], tmp_path, toml).start()
    try:
        old.wait_until(lambda: old.addresses("www.example.test") == {"127.0.0.1"}, 5,
                       "127.0.0.2 known down")
    finally:
        old.stop()
    kept = json.loads(state.read_text())["state"]["health"]["targets"]
    assert sorted(up for up, _ in kept.values()) == [False, True]
    # Now 127.0.0.2 takes connections but never answers: the new prober's first round waits
    # SLOW_CHECK for it, so an answer without it before then can only come from the kept health.
    backends[1].sock.listen(8)
    new = Server([], tmp_path, toml).start()
    try:
        assert new.addresses("www.example.test") == {"127.0.0.1"}
        assert first_round_after_ready(new), new.output()
        assert re.search(r"warm start: serving the health kept [\d.]+ s ago .*\(1 of 2 targets "
                         r"down\)", new.output())
    finally:
        new.stop()


@pytest.mark.parametrize(("max_age", "why"), [
    (0, "server.warm_start_max_age is 0"),
    (0.001, r"the health in \S+ is [\d.]+ s old"),
])
def test_old_or_unwanted_health_means_a_cold_start(
        tmp_path: Path, backends: tuple[HttpBackend, HttpBackend], max_age: float,
        why: str) -> None:
    state = tmp_path / "state.json"
    old = Server([], tmp_path, config(backends[0].port, state)).start()
    old.stop()
    new = Server([], tmp_path, config(backends[0].port, state, max_age)).start()
    try:
        assert re.search(f"cold start: {why}", new.output()), new.output()
        assert not first_round_after_ready(new)  # as before: ready only after the checks
    finally:
        new.stop()


def test_a_replacing_server_warm_starts_from_a_running_one_with_steady_health(
        tmp_path: Path, backends: tuple[HttpBackend, HttpBackend]) -> None:
    # The documented restart: the new server starts while the old one runs. Health that has
    # not changed for longer than warm_start_max_age is still current, and must count as such.
    state = tmp_path / "state.json"
    # The running server rewrites the file every second (SAVE_PERIOD): a max age of 3 s leaves
    # a loaded loop two seconds of lateness, and health steady for 4 s is older than that.
    toml = config(backends[0].port, state, 3.0)
    old = Server([], tmp_path, toml).start()
    new = None
    try:
        old.wait_until(lambda: old.addresses("www.example.test") == {"127.0.0.1"}, 5,
                       "127.0.0.2 known down")
        steady = time.monotonic()
        old.wait_until(lambda: time.monotonic() - steady > 4.0, 8, "health steady for 4 s")
        backends[1].sock.listen(8)  # silent from now on: the new first round waits SLOW_CHECK
        new = Server(["--config", str(tmp_path / "healthdns.toml"), "--replace",
                      "--listen", f"{old.host}:{old.port}"]).start()
        assert "warm start: serving" in new.output(), new.output()
        assert first_round_after_ready(new)
        old.stop()
        assert new.addresses("www.example.test") == {"127.0.0.1"}
    finally:
        if new is not None:
            new.stop()
        old.stop()
