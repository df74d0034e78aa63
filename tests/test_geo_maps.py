"""A map's database file replaced while the server runs: the signer compiles it again when it
looks (every `check_interval`, and at a reload), the next generation carries the new tables
to the responders (in a delta only when they changed), and a broken or truncated file keeps
the previous tables in service with an error that names the file."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import need_tool
from harness import Backend, Server, bench_module, config_toml

from healthdns.shared import config, messages
from healthdns.signer.main import Signer

geodata = bench_module("harness/geodata.py", "geodata")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, continent: str) -> None:
    """10.0.0.0/16 in `continent`, written beside and renamed over `path` (as geoipupdate
    replaces a database)."""
    part = path.with_suffix(".part")
    geodata.write_mmdb(part, [("10.0.0.0/16", geodata.record(continent, "DE"))])
    os.replace(part, path)


def document(path: Path, interval: float) -> dict[str, Any]:
    return {
        "sites": {"fra": {}, "iad": {}},
        "maps": {"world": {"database": str(path), "check_interval": interval,
                           "default": ["fra", "iad"],
                           "rules": [{"continent": "NA", "sites": ["iad", "fra"]}]}},
        "zones": [{"origin": "example.test", "nameservers": ["ns1.example.net"],
                   "records": {"www": {"pool": {
                       "map": "world", "check": {"port": 80},
                       "sites": {"fra": {"addresses": ["192.0.2.1"]},
                                 "iad": {"addresses": ["192.0.2.2"]}}}}}}],
    }


def orders(signer: Signer) -> list[tuple[str, ...]] | None:
    """The orders of the map sent before the latest generation; None when none was sent."""
    if signer.new_maps is None:
        return None
    maps = messages.decode_to_responder(messages.encode(signer.new_maps))
    assert isinstance(maps, messages.Maps)
    return list(maps.tables["world"].orders)


@pytest.fixture
def started(tmp_path: Path) -> tuple[Signer, Clock, Path, dict[str, bool]]:
    path = tmp_path / "geo.mmdb"
    write(path, "EU")
    cfg = config.from_mapping(document(path, 30.0))
    clock = Clock()
    signer = Signer(cfg, now=clock)
    health = dict.fromkeys(cfg.checks(), True)
    first = signer.update(health, True)
    assert first is not None and orders(signer) == [("fra", "iad")]  # EU: the default
    return signer, clock, path, health


def test_a_replaced_database_is_compiled_when_the_interval_is_up(
        started: tuple[Signer, Clock, Path, dict[str, bool]]) -> None:
    signer, clock, path, health = started
    write(path, "NA")
    assert signer.maps.refresh() == set()  # not yet due
    assert signer.publish() is None
    due = signer.next_wakeup()
    assert due is not None and due <= clock.now + 30.0
    clock.now += 30.0
    assert signer.maps.refresh() == {"world"}
    published = signer.publish()
    assert published is not None and orders(signer) == [("fra", "iad"), ("iad", "fra")]
    # A generation without a new map sends no maps.
    flipped = signer.update({next(iter(health)): False}, False)
    assert flipped is not None and orders(signer) is None


@pytest.mark.parametrize("damage", ["truncated", "text"])
def test_a_broken_database_keeps_the_previous_tables_and_says_which_file(
        started: tuple[Signer, Clock, Path, dict[str, bool]], damage: str,
        caplog: pytest.LogCaptureFixture) -> None:
    signer, clock, path, _ = started
    before = signer.maps.tables()["world"]
    data = path.read_bytes()
    path.unlink()  # a new file: another inode
    path.write_bytes(data[:len(data) // 2] if damage == "truncated" else b"not a database")
    clock.now += 30.0
    with caplog.at_level(logging.ERROR, logger="healthdns.signer"):
        assert signer.maps.refresh() == set()
    assert signer.maps.tables()["world"] is before
    assert str(path) in caplog.text and "previous tables stay in service" in caplog.text
    state = signer.maps.states()[0]
    assert str(path) in state.error and state.orders == [["fra", "iad"]]
    assert signer.publish() is None  # nothing changed for the responders
    # but the operator is told at once, without a generation: /status and the metric
    assert signer.maps.restated and str(path) in signer.choices().maps[0].error
    assert not signer.maps.restated
    clock.now += 30.0  # the same broken file again: nothing new to tell
    assert signer.maps.refresh() == set() and not signer.maps.restated
    write(path, "NA")  # fixed: compiled at the next look
    clock.now += 30.0
    assert signer.maps.refresh() == {"world"}
    assert signer.maps.states()[0].error == ""


def test_a_reload_compiles_a_replaced_database_and_keeps_an_unchanged_one(
        started: tuple[Signer, Clock, Path, dict[str, bool]]) -> None:
    signer, _, path, health = started
    before = signer.maps.tables()["world"]
    same = config.from_mapping(document(path, 30.0))
    signer.reconfigure(same)
    assert signer.maps.tables()["world"] is before
    write(path, "NA")
    signer.reconfigure(config.from_mapping(document(path, 0.0)))
    assert signer.next_wakeup() is None  # check_interval 0: only at reloads
    published = signer.update(health, True)
    assert published is not None and orders(signer) == [("fra", "iad"), ("iad", "fra")]


def test_a_running_server_takes_a_replaced_database_and_keeps_its_map_through_bad_ones(
        tmp_path: Path, backends: tuple[Backend, Backend]) -> None:
    """The real supervisor: a database renamed over the old one is served within
    `check_interval`; a truncated one changes nothing (the signer says which file), and a
    reload with it fails validation and keeps the previous configuration."""
    path = tmp_path / "geo.mmdb"
    write(path, "EU")
    doc = document(path, 0.3)
    pool = doc["zones"][0]["records"]["www"]["pool"]
    pool["check"] = {"port": backends[0].port, "interval": 0.5, "timeout": 0.4}
    pool["sites"] = {"fra": {"addresses": ["127.0.0.1"]}, "iad": {"addresses": ["127.0.0.2"]}}
    zone = {k: v for k, v in doc["zones"][0].items() if k != "origin"}
    toml = config_toml(zone["records"], zone={"nameservers": zone["nameservers"]},
                       sites=doc["sites"], maps=doc["maps"])
    server = Server([], tmp_path, toml).start()
    client = ["+subnet=10.0.3.0/24", "www.example.test"]
    try:
        assert site(server, client) == "127.0.0.1"  # EU: the default order, fra first
        write(path, "NA")
        server.wait_until(lambda: site(server, client) == "127.0.0.2", 15, "iad for NA")
        data = path.read_bytes()
        broken = tmp_path / "broken.mmdb"
        broken.write_bytes(data[:len(data) // 2])
        os.replace(broken, path)
        server.wait_for(rf"map world: maps\.world\.database: {re.escape(str(path))} is not a "
                        r"MaxMind DB file, or is truncated .*previous tables stay in service", 10)
        assert site(server, client) == "127.0.0.2"
        os.kill(server.pid, signal.SIGHUP)
        server.wait_for("reload failed, still serving the previous configuration: "
                        rf"maps\.world\.database: {re.escape(str(path))}", 10)
        assert site(server, client) == "127.0.0.2"
    finally:
        assert server.stop() == 0


def site(server: Server, args: list[str]) -> str:
    out = subprocess.run([need_tool("dig"), "@127.0.0.1", "-p", str(server.port), "+short",
                          *args], capture_output=True, text=True, timeout=10, check=True)
    return out.stdout.strip()


def test_a_responder_waiting_for_its_first_snapshot_keeps_the_maps_sent_before_it(
        started: tuple[Signer, Clock, Path, dict[str, bool]]) -> None:
    """With every port known, a responder loads its first table before it binds
    (`responder.main._first_table`): the maps the supervisor sends first go with it."""
    from multiprocessing import Pipe

    from healthdns.responder import main

    signer, _, _, health = started
    published = signer.update({next(iter(health)): False}, False)
    assert published is not None
    ours, theirs = Pipe()

    def supervisor() -> None:  # a pipe holds less than a snapshot: sent as it is read
        ours.send_bytes(messages.encode(messages.Maps(signer.maps.tables())))
        ours.send_bytes(published.snapshot)

    sending = threading.Thread(target=supervisor)
    sending.start()
    table = main._first_table(theirs, config.Config())
    sending.join()
    assert set(table.maps) == {"world"} and len(table.geo) == 1
