"""The state file (`control.state_file`): believed only when it is a regular file of ours, sealed
with the supervisor's key, and within bounds; anything else is a cold start with a warning that
names the file and the reason, and never hangs or stops the start.

The seal and the bounds are checked against their rules over random contents; the real
supervisor then meets a FIFO, a directory, a planted file and one open to others.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from harness import Backend, Server, config_toml, supervisor_command
from hypothesis import given, settings
from hypothesis import strategies as st
from test_control import TOKEN, status

from healthdns.supervisor import state
from healthdns.supervisor.overrides import MAX_EXPIRES_IN, Override
from healthdns.supervisor.state import Kept, StateFile, Unbelieved
from healthdns.supervisor.warm import Health

KEY = bytes(range(32))
NOW = 1_800_000_000.0
QUICK = pytest.mark.timeout(15)  # a FIFO opened the ordinary way would hang: fail instead


def write_sealed(path: Path, key: bytes = KEY, *, overrides: list[Override] | None = None,
                 health: Health | None = None, serials: dict[str, int] | None = None) -> None:
    """A state file as a supervisor writes it, with the key file beside it."""
    key_file = Path(f"{path}{state.KEY_SUFFIX}")
    key_file.write_text(key.hex() + "\n")
    key_file.chmod(0o600)
    StateFile(str(path), key).save(Kept(overrides or [], health, serials or {}))


# --- the seal --------------------------------------------------------------------------------

overrides = st.lists(st.builds(
    Override, address=st.sampled_from(["192.0.2.1", "192.0.2.2"]),
    action=st.sampled_from(["drain", "force"]), reason=st.text(max_size=30),
    expires=st.one_of(st.none(), st.floats(NOW, NOW + 86400 * 365)),
    created=st.floats(NOW - 86400, NOW)), max_size=4)
healths = st.one_of(st.none(), st.builds(
    Health, saved=st.floats(NOW - 3600, NOW),
    targets=st.dictionaries(st.text(min_size=1, max_size=10),
                            st.tuples(st.booleans(), st.one_of(st.none(),
                                                               st.floats(0, NOW))),
                            max_size=5)))
serials = st.dictionaries(st.sampled_from(["example.test", "example.org"]),
                          st.integers(0, int(NOW) + state.SERIAL_LEAD))
kepts = st.builds(Kept, overrides=overrides, health=healths, serials=serials)


@settings(max_examples=60, deadline=None)
@given(kept=kepts)
def test_a_sealed_file_is_read_back_whole(tmp_path_factory: pytest.TempPathFactory,
                                          kept: Kept) -> None:
    path = tmp_path_factory.mktemp("state") / "state.json"
    StateFile(str(path), KEY).save(kept)
    assert path.stat().st_mode & 0o777 == 0o600
    assert StateFile(str(path), KEY).load(NOW) == kept


@settings(max_examples=100, deadline=None)
@given(kept=kepts, where=st.floats(0, 1, exclude_max=True), byte=st.integers(0, 255))
def test_any_change_to_a_sealed_file_breaks_its_seal(
        tmp_path_factory: pytest.TempPathFactory, kept: Kept, where: float, byte: int) -> None:
    path = tmp_path_factory.mktemp("state") / "state.json"
    StateFile(str(path), KEY).save(kept)
    data = bytearray(path.read_bytes())
    at = int(where * len(data))
    if data[at] == byte:
        return  # no change
    data[at] = byte
    path.write_bytes(bytes(data))
    with pytest.raises(Unbelieved):
        StateFile(str(path), KEY).load(NOW)


def test_a_file_written_without_the_key_is_not_believed(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    drain = {"address": "192.0.2.1", "action": "drain"}
    # The format of versions that kept no seal, and what a process without the key can write.
    path.write_text(json.dumps({"overrides": [drain], "health": None, "serials": {}}))
    with pytest.raises(Unbelieved, match=f"^{path}: not a sealed state file"):
        StateFile(str(path), KEY).load(NOW)
    StateFile(str(path), bytes(32)).save(Kept([Override(address="192.0.2.1", action="drain")]))
    with pytest.raises(Unbelieved, match=f"^{path}: its seal does not match the key in "
                                         f"{path}.key: it was written by another process"):
        StateFile(str(path), KEY).load(NOW)


def test_no_file_yet_is_nothing_kept(tmp_path: Path) -> None:
    assert StateFile(str(tmp_path / "state.json"), KEY).load(NOW) is None


# --- the bounds ------------------------------------------------------------------------------


def serial_ahead(serial: int, now: float) -> int:
    """How far `serial` is ahead of the clock in RFC 1982 arithmetic (0 when behind)."""
    lead = (serial - int(now)) % 2**32
    return lead if lead < 2**31 else 0


@settings(max_examples=200, deadline=None)
@given(serial=st.integers(0, 2**32 - 1),
       expires=st.one_of(st.none(), st.floats(NOW, NOW + 2 * MAX_EXPIRES_IN)))
def test_a_kept_serial_and_an_expiry_are_believed_only_within_bounds(
        tmp_path_factory: pytest.TempPathFactory, serial: int, expires: float | None) -> None:
    path = tmp_path_factory.mktemp("state") / "state.json"
    kept = Kept([Override(address="192.0.2.1", action="drain", expires=expires)],
                serials={"example.test": serial})
    StateFile(str(path), KEY).save(kept)
    sane = serial_ahead(serial, NOW) <= state.SERIAL_LEAD and (
        expires is None or expires - NOW <= MAX_EXPIRES_IN)
    if sane:
        assert StateFile(str(path), KEY).load(NOW) == kept
    else:
        with pytest.raises(Unbelieved, match="ahead of the clock|days from now"):
            StateFile(str(path), KEY).load(NOW)


def test_a_serial_pushed_2_to_the_31_ahead_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    StateFile(str(path), KEY).save(Kept(serials={"example.test": int(NOW) + 2**31 - 1}))
    with pytest.raises(Unbelieved, match=rf"^{path}: the serial of example\.test is 2147483647 "
                                         r"s ahead of the clock, more than the 259200 s"):
        StateFile(str(path), KEY).load(NOW)


# --- what the path names ---------------------------------------------------------------------


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "state.json")
    return tmp / "state.json"


def _directory(tmp: Path) -> Path:
    (tmp / "state.json").mkdir()
    return tmp / "state.json"


def _socket(tmp: Path) -> Path:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp / "state.json"))
    return tmp / "state.json"


def _device(tmp: Path) -> Path:
    (tmp / "state.json").symlink_to("/dev/zero")
    return tmp / "state.json"


def _open_to_others(tmp: Path) -> Path:
    write_sealed(tmp / "state.json")
    (tmp / "state.json").chmod(0o666)
    return tmp / "state.json"


def _group_writable(tmp: Path) -> Path:
    write_sealed(tmp / "state.json")
    (tmp / "state.json").chmod(0o620)
    return tmp / "state.json"


def _someone_elses(tmp: Path) -> Path:
    write_sealed(tmp / "state.json")
    os.chown(tmp / "state.json", 54321, 54321)
    return tmp / "state.json"


@QUICK
@pytest.mark.parametrize(("make", "reason"), [
    (_fifo, "is a FIFO (named pipe), not a regular file"),
    (_directory, "is a directory, not a regular file"),
    (_socket, "is a socket, not a regular file"),
    (_device, "is a character device, not a regular file"),
    (_open_to_others, ("has mode 666: writable by its group or by others, who could plant "
                       "state in it; chmod 600")),
    (_group_writable, "has mode 620: writable by its group or by others"),
    (_someone_elses, "owned by uid 54321, neither by the user healthdns runs as"),
])
def test_what_is_not_a_file_of_ours_is_refused(tmp_path: Path, make: object,
                                               reason: str) -> None:
    if make is _someone_elses and os.geteuid() != 0:
        pytest.skip("needs root to give the file away")
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(Unbelieved) as refused:
        StateFile(str(path), KEY).load(NOW)
    assert str(refused.value).startswith(f"{path}: {reason}")


# --- the key ---------------------------------------------------------------------------------


def test_the_key_is_made_once_private_and_then_kept(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    key = state.seal_key(path)
    assert key is not None and len(key) == state.KEY_BYTES
    key_file = Path(path + state.KEY_SUFFIX)
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.read_text() == key.hex() + "\n"
    assert state.seal_key(path) == key
    assert state.seal_key(None) is None


@pytest.mark.parametrize(("spoil", "why"), [
    (lambda f: f.chmod(0o644), "with mode 644, not this process's own"),
    (lambda f: f.write_text("not a key\n"), "does not hold a key"),
    (lambda f: (f.unlink(), f.symlink_to("/etc/hostname")), "is a symbolic link"),
])
def test_a_key_that_is_not_ours_is_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                             spoil: object, why: str) -> None:
    path = str(tmp_path / "state.json")
    old = state.seal_key(path)
    key_file = Path(path + state.KEY_SUFFIX)
    spoil(key_file)  # type: ignore[operator]
    with caplog.at_level(logging.WARNING):
        new = state.seal_key(path)
    assert new is not None and new != old
    assert why in caplog.text and "making a new key" in caplog.text
    assert not key_file.is_symlink() and key_file.stat().st_mode & 0o777 == 0o600


def test_no_key_to_be_had_keeps_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                        ) -> None:
    path = str(tmp_path / "missing" / "state.json")
    with caplog.at_level(logging.WARNING):
        assert state.seal_key(path) is None
    assert (f"cannot make the key that seals it ({path}.key: No such file or directory): "
            "nothing is kept across restarts") in caplog.text


# --- the real supervisor ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    up = Backend("127.0.0.1")
    up.up()
    yield up
    up.close()


def config(port: int, path: Path) -> str:
    check = {"port": port, "interval": 0.2, "timeout": 0.2}
    return config_toml({"www": {"pool": {"addresses": ["127.0.0.1", "127.0.0.2"], "check": check}}},
                       control={"token": TOKEN, "state_file": str(path)})


def soa_serial(server: Server) -> int:
    answer = server.query("example.test", "SOA")
    return int(answer.answer[0][0].serial)


def test_a_fifo_is_a_cold_start_and_sigterm_stops_the_server(
        tmp_path: Path, backend: Backend) -> None:
    path = _fifo(tmp_path)
    server = Server([], tmp_path, config(backend.port, path)).start()
    assert re.search(rf"WARNING {re.escape(str(path))}: is a FIFO \(named pipe\), not a regular "
                     r"file; starting cold", server.output()), server.output()
    assert server.stop() == 0


def test_a_directory_is_a_cold_start_and_a_failed_write_is_said_once(
        tmp_path: Path, backend: Backend) -> None:
    path = _directory(tmp_path)
    server = Server([], tmp_path, config(backend.port, path)).start()
    try:
        assert f"{path}: is a directory, not a regular file; starting cold" in server.output()
        assert "cannot listen" not in server.output()
        deadline = time.monotonic() + 10
        while f"cannot write the state file {path}: " not in server.output():
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.05)  # polling period
        time.sleep(2.5)  # writes come every second: two more have failed since
        assert server.output().count("cannot write the state file") == 1, server.output()
    finally:
        assert server.stop() == 0


def test_a_planted_file_is_not_believed(tmp_path: Path, backend: Backend) -> None:
    """What a process of the service's uid without the key wrote: a drain that never expires,
    and a serial 2^31 - 1 ahead of the clock."""
    path = tmp_path / "state.json"
    ahead = (int(time.time()) + 2**31 - 1) % 2**32
    drain = Override(address="127.0.0.1", action="drain", reason="planted")
    for plant in (
            lambda: path.write_bytes(msgspec.json.encode(Kept([drain],
                                                              serials={"example.test": ahead}))),
            lambda: StateFile(str(path), bytes(32)).save(Kept([drain],
                                                              serials={"example.test": ahead}))):
        plant()
        server = Server([], tmp_path, config(backend.port, path)).start()
        try:
            assert f"WARNING {path}: " in server.output()
            assert "starting cold: no override, health or serial is taken from it" \
                in server.output()
            assert status(server)["overrides"] == []
            assert abs(soa_serial(server) - time.time()) < 600
        finally:
            assert server.stop() == 0


def test_a_sealed_serial_too_far_ahead_is_not_believed(tmp_path: Path, backend: Backend
                                                        ) -> None:
    path = tmp_path / "state.json"
    write_sealed(path, serials={"example.test": int(time.time()) + 30 * 86400})
    server = Server([], tmp_path, config(backend.port, path)).start()
    try:
        assert re.search(r"the serial of example\.test is \d+ s ahead of the clock",
                         server.output())
        assert abs(soa_serial(server) - time.time()) < 600
    finally:
        assert server.stop() == 0


def test_a_state_file_open_to_others_is_refused_by_the_server(
        tmp_path: Path, backend: Backend) -> None:
    path = tmp_path / "state.json"
    write_sealed(path, overrides=[Override(address="127.0.0.1", action="drain")])
    path.chmod(0o666)
    server = Server([], tmp_path, config(backend.port, path)).start()
    try:
        assert f"{path}: has mode 666: writable by its group or by others" in server.output()
        assert status(server)["overrides"] == []
    finally:
        assert server.stop() == 0
    assert path.stat().st_mode & 0o777 == 0o600  # written anew, as the server writes it


def test_a_sealed_file_of_ours_is_believed(tmp_path: Path, backend: Backend) -> None:
    path = tmp_path / "state.json"
    kept = int(time.time()) + 3600
    write_sealed(path, overrides=[Override(address="127.0.0.2", action="drain", reason="ok")],
                 serials={"example.test": kept})
    server = Server([], tmp_path, config(backend.port, path)).start()
    try:
        assert [o["reason"] for o in status(server)["overrides"]] == ["ok"]
        assert soa_serial(server) == kept + 1
    finally:
        assert server.stop() == 0



@pytest.mark.parametrize("delay", [0.0, 0.1, 0.3, 0.6, 1.0])
def test_sigterm_at_any_moment_of_the_start_stops_the_server(
        tmp_path: Path, backend: Backend, delay: float) -> None:
    """Whatever the start is doing when SIGTERM comes (checking the configuration, reading the
    state file, starting children), the server stops within the stop deadline."""
    path = _fifo(tmp_path)
    (tmp_path / "healthdns.toml").write_text(config(backend.port, path))
    process = subprocess.Popen([*supervisor_command(), "--config",
                                str(tmp_path / "healthdns.toml"), "--control-listen",
                                "127.0.0.1:0"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    time.sleep(delay)  # the moment of the start to interrupt, not a wait for readiness
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(8)
    finally:
        process.kill()
    assert code in (0, -signal.SIGTERM)  # -15: before its handler was set, the default
