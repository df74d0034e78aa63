"""Log formats: JSON lines a pipeline can parse, with structured fields; the first round's
summary per zone."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Backend, Server, config_toml
from hypothesis import given
from hypothesis import strategies as st

from healthdns.prober import summary
from healthdns.shared import logs

INTERVAL, FALL = 0.2, 2

# Keys an `extra=` may not use (LogRecord's own attributes) or that the formatter sets itself.
RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "time", "level",
                                                       "role", "pid", "slot"}
extra_keys = st.text(st.characters(categories=("Ll",)), min_size=1, max_size=8).filter(
    lambda k: k not in RESERVED)
extra_values = st.one_of(st.text(), st.integers(-2**53, 2**53), st.booleans(),
                         st.lists(st.text(), max_size=3))


@given(message=st.text(), extra=st.dictionaries(extra_keys, extra_values, max_size=4),
       slot=st.one_of(st.none(), st.integers(0, 127)))
def test_json_line_is_one_object_with_every_field(message: str, extra: dict[str, Any],
                                                  slot: int | None) -> None:
    formatter = logs.JsonFormatter("responder", slot)
    record = logging.makeLogRecord({"msg": "%s", "args": (message,), "levelname": "WARNING",
                                    **extra})
    line = formatter.format(record)
    assert "\n" not in line  # one object a line, whatever the message holds
    parsed = json.loads(line)
    assert parsed["message"] == message
    assert parsed["level"] == "warning" and parsed["role"] == "responder"
    assert parsed["pid"] == record.process
    assert parsed.get("slot") == slot
    assert {k: parsed[k] for k in extra} == extra
    assert parsed["time"].endswith("Z")


def test_json_line_carries_a_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), None)
        record.exc_info = sys.exc_info()
    parsed = json.loads(logs.JsonFormatter("signer").format(record))
    assert parsed["message"] == "failed" and "ValueError: boom" in parsed["traceback"]


# --- first round summary ------------------------------------------------------------------------

targets = st.lists(st.sampled_from([f"t{i}" for i in range(8)]), unique=True, max_size=8)


@given(zones=st.dictionaries(st.sampled_from(["a.test", "b.test", "c.test"]), targets),
       health=st.dictionaries(st.sampled_from([f"t{i}" for i in range(8)]), st.booleans()))
def test_zone_counts_follow_the_states(zones: dict[str, list[str]],
                                       health: dict[str, bool]) -> None:
    """One row per zone in order; each of its targets with a state counts once, up or down."""
    rows = summary.counts(health, zones)
    assert [zone for zone, _, _ in rows] == list(zones)
    for zone, up, down in rows:
        assert up == len([t for t in zones[zone] if health.get(t) is True])
        assert down == len([t for t in zones[zone] if health.get(t) is False])


# --- the real supervisor ------------------------------------------------------------------------


def config(port: int) -> str:
    check = {"port": port, "interval": INTERVAL, "timeout": 0.1, "fall": FALL}
    ns = ["ns1.example.net"]
    return config_toml(zones=[
        {"origin": "pool.test", "nameservers": ns, "records": {
            "www": {"pool": {"addresses": ["127.0.0.1", "127.0.0.2"], "check": check}},
            "api": {"pool": {"addresses": ["127.0.0.1"], "check": check}}}},
        {"origin": "static.test", "nameservers": ns, "records": {"www": {"a": ["192.0.2.1"]}}},
    ])


@pytest.fixture
def backend() -> Iterator[Backend]:
    up = Backend("127.0.0.1")
    down = Backend("127.0.0.2", up.port)  # bound, not listening: refused
    up.up()
    yield up
    up.close()
    down.close()


def test_json_logs_of_the_real_supervisor(tmp_path: Path, backend: Backend) -> None:
    server = Server(["--log-format", "json"], tmp_path, config(backend.port)).start()
    try:
        backend.down()
        server.wait_for(r"\(\d failures\)", INTERVAL * FALL + 2.0)
    finally:
        assert server.stop() == 0
    lines = [json.loads(line) for line in server.lines]  # every line parses
    assert all({"time", "level", "role", "pid", "message"} <= set(line) for line in lines)
    # (responders log nothing at info)
    assert {line["role"] for line in lines} == {"supervisor", "prober", "signer"}
    flip = next(line for line in lines if line.get("state") == "down" and "failure" in
                line["message"])
    assert flip["target"] == f"tcp 127.0.0.1:{backend.port}"
    assert flip["reason"] == "connection refused"
    assert flip["names"] == ["www.pool.test", "api.pool.test"]
    assert flip["role"] == "prober"
    zones = {line["zone"]: (line["up"], line["down"]) for line in lines if "zone" in line}
    assert zones == {"pool.test": (1, 1), "static.test": (0, 0)}


def test_first_round_summary_in_text(tmp_path: Path, backend: Backend) -> None:
    server = Server([], tmp_path, config(backend.port)).start()
    assert server.stop() == 0
    output = server.output()
    assert "first round: zone pool.test: 1 up, 1 down" in output
    assert "first round: zone static.test: no health checks (static answers only)" in output
