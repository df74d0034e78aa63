"""Serials never go back across a restart: the state file keeps the highest served per zone."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from harness import Server, config_toml
from test_state_file import write_sealed

from healthdns.signer.serial import serial_gt


def config(state: Path | None) -> str:
    ns = ["ns1.example.net"]
    return config_toml(control={"state_file": str(state) if state else None}, zones=[
        {"origin": "example.test", "aliases": ["Example.ORG"], "nameservers": ns,
         "records": {"www": {"a": ["192.0.2.1"]}}},
        {"origin": "other.test", "nameservers": ns, "records": {"www": {"a": ["192.0.2.2"]}}},
    ])


def soa_serial(dig: str, server: Server, zone: str) -> int:
    out = subprocess.run([dig, f"@{server.host}", "-p", str(server.port), zone, "SOA", "+short",
                          "+time=2", "+tries=1"], capture_output=True, text=True, timeout=10,
                         check=True).stdout.split()
    assert len(out) == 7, f"no SOA for {zone}: {out}"
    return int(out[2])


def start(tmp_path: Path, kept: dict[str, int] | None) -> Server:
    state = tmp_path / "state.json"
    if kept is not None:  # as a previous server wrote it, health and overrides aside
        write_sealed(state, serials=kept)
    return Server([], tmp_path, config(state)).start()


# Ahead of the clock by a burst of changes; and the last one before the 32-bit wrap, which
# the clock's serial is greater than in RFC 1982 arithmetic.
@pytest.mark.parametrize(("kept", "then"), [(int(time.time()) + 3600, "kept + 1"),
                                            (2**32 - 1, "the clock")],
                         ids=["an hour ahead of the clock", "at the top of serial space"])
def test_a_restart_serves_serials_above_the_kept_ones(tmp_path: Path, dig: str, kept: int,
                                                      then: str) -> None:
    server = start(tmp_path, {"example.test": kept, "example.org": kept})
    try:
        for zone in ("example.test", "example.org"):
            served = soa_serial(dig, server, zone)
            assert serial_gt(served, kept), (zone, served, kept)
            if then == "kept + 1":  # the next one, not a leap
                assert served == kept + 1
            else:
                assert abs(served - time.time()) < 60
        # A zone without a kept serial starts from the clock, as before.
        assert abs(soa_serial(dig, server, "other.test") - time.time()) < 60
    finally:
        server.stop()


def test_the_served_serials_are_kept_for_the_next_process(tmp_path: Path, dig: str) -> None:
    kept = int(time.time()) + 600  # ahead of the clock: written with the first generation
    server = start(tmp_path, {"other.test": kept})
    try:
        served = {z: soa_serial(dig, server, z) for z in ("example.test", "example.org",
                                                         "other.test")}
        assert served["other.test"] == kept + 1
        written = json.loads((tmp_path / "state.json").read_text())["state"]["serials"]
        assert written["other.test"] == kept + 1, written
    finally:
        server.stop()
    assert json.loads((tmp_path / "state.json").read_text())["state"]["serials"] == served


def test_without_a_state_file_serials_start_from_the_clock(tmp_path: Path, dig: str) -> None:
    server = Server([], tmp_path, config(None)).start()
    try:
        assert abs(soa_serial(dig, server, "example.test") - time.time()) < 60
    finally:
        server.stop()
