"""A zone's own keys on disk (signer/keyring.py): modes, clear errors, and a signer killed at any
moment that resumes exactly where it was."""

from __future__ import annotations

import logging
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from healthdns.shared.config import DnssecSpec, PolicySpec
from healthdns.signer import keyring, rollover
from healthdns.signer.keys import KeyFileError
from healthdns.signer.rollover import RollState, Timings

FAST = Timings(zsk_publish=0.02, zsk_retire=0.03, sep_publish=0.02, ds_wait=0.0,
               sep_retire=0.02, lifetimes={"ksk": 0.0, "zsk": 0.1})


def spec(folder: Path) -> DnssecSpec:
    return DnssecSpec(algorithm="ED25519", key_dir=str(folder), policy=PolicySpec())


def test_the_folder_and_files_are_the_signers_alone(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    ring = keyring.Keyring("example.test.", spec(folder), FAST, time.time())
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    names = sorted(os.listdir(folder))
    assert len(names) == 3 and names[-1] == "example.test.state"
    for name in names:
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    assert [k.role for k in ring.signing_keys()] == ["ksk", "zsk"]
    assert [k.role for k in ring.cds_keys()] == ["ksk"]


def test_a_folder_others_may_enter_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    with pytest.raises(KeyFileError, match=r"key_dir: .*keys has mode 755: group and others "
                       r"must have no access to the folder of private keys; chmod 700"):
        keyring.Keyring("example.test.", spec(folder), FAST, time.time())


def test_a_damaged_state_or_key_file_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    ring = keyring.Keyring("example.test.", spec(folder), FAST, time.time())
    zsk = next(k for k in ring.state.keys if k.role == "zsk")
    (folder / zsk.file).unlink()
    with pytest.raises(KeyFileError, match=rf"example.test zsk {zsk.tag}: .*cannot read"):
        keyring.Keyring("example.test.", spec(folder), FAST, time.time())
    (folder / "example.test.state").write_text("{not json")
    with pytest.raises(KeyFileError, match=r"the state of this zone's keys cannot be read"):
        keyring.Keyring("example.test.", spec(folder), FAST, time.time())


def test_a_roll_runs_through_and_deletes_the_old_key(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    start = time.time()
    ring = keyring.Keyring("example.test.", spec(folder), FAST, start)
    first = next(k.tag for k in ring.state.keys if k.role == "zsk")
    now = start
    while now < start + 0.5:
        now += 0.01
        ring.step(now)
    zsks = [k for k in ring.state.keys if k.role == "zsk"]
    assert first not in {k.tag for k in rollover.published(ring.state)}
    assert len({k.tag for k in zsks}) >= 2
    pem = {n for n in os.listdir(folder) if n.endswith(".pem")}
    assert pem == {k.file for k in rollover.published(ring.state)}


STEPPER = """
import sys, time
from healthdns.shared.config import DnssecSpec, PolicySpec
from healthdns.signer import keyring
from healthdns.signer.rollover import Timings
t = Timings(zsk_publish=0.02, zsk_retire=0.03, sep_publish=0.02, ds_wait=0.0,
            sep_retire=0.02, lifetimes={"ksk": 0.0, "zsk": 0.1})
spec = DnssecSpec(algorithm="ED25519", key_dir=sys.argv[1], policy=PolicySpec())
ring = keyring.Keyring("example.test.", spec, t, time.time())
print("ready", flush=True)
while True:
    ring.step(time.time())
"""


def test_a_signer_killed_at_any_moment_resumes_where_it_was(tmp_path: Path) -> None:
    """SIGKILL at random moments of a run of fast ZSK rolls: each start reads the last state
    written whole, every key it names loads, no file is left that no key uses, and the rolls
    go on (keys made across the runs)."""
    folder = tmp_path / "keys"
    rng = random.Random(25)
    made: set[int] = set()
    for _ in range(12):
        child = subprocess.Popen([sys.executable, "-c", STEPPER, str(folder)],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.0, 0.3))  # the moment of the kill is the point
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        state = msgspec.json.decode((folder / "example.test.state").read_bytes(),
                                    type=RollState)
        made |= {k.tag for k in state.keys}
        ring = keyring.Keyring("example.test.", spec(folder), FAST, time.time())
        assert ring.state == state  # read back exactly, nothing made over it
        assert {k.tag for k in ring.signing_keys()} == \
            {k.tag for k in rollover.published(state)}
        assert {n for n in os.listdir(folder) if n.endswith(".pem")} == \
            {k.file for k in rollover.published(state)}
        assert [k.role for k in rollover.signing(state)] == ["ksk", "zsk"]
    assert len(made) >= 4  # the rolls went on across the kills


class Crash(BaseException):
    """The process dies here (raised where a SIGKILL could land)."""


@pytest.mark.parametrize("at", range(1, 30))
def test_a_crash_at_each_write_leaves_a_state_that_resumes(tmp_path: Path, at: int,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Die at the `at`-th file operation of a run of rolls (each write, sync, rename and
    delete in turn): the state read back is whole, names only keys whose files load, and
    the roll continues from it."""
    folder = tmp_path / "keys"
    start = 1_000_000.0
    ring = keyring.Keyring("example.test.", spec(folder), FAST, start)
    calls = [0]

    def counted(real):  # type: ignore[no-untyped-def]
        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls[0] += 1
            if calls[0] == at:
                raise Crash
            return real(*args, **kwargs)
        return call

    for name in ("fsync", "replace", "unlink"):
        monkeypatch.setattr(keyring.os, name, counted(getattr(os, name)))
    now = start
    with pytest.raises(Crash):
        while now < start + 5:
            now += 0.01
            ring.step(now)
    monkeypatch.undo()
    again = keyring.Keyring("example.test.", spec(folder), FAST, now)
    assert [k.role for k in rollover.signing(again.state)] == ["ksk", "zsk"]
    resumed = now
    while now < resumed + 0.3:
        now += 0.01
        again.step(now)
    assert {k.tag for k in again.state.keys} - {k.tag for k in ring.state.keys}  # rolled on


@pytest.mark.parametrize("damage", ["removed", "garbage", "another key"])
def test_a_key_file_removed_under_the_signer_holds_the_roll(
        tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    """The step that needs a missing or damaged key file is not taken (the zone keeps the keys
    it serves), the error names the file, and it is retried a minute later, not in a loop."""
    from healthdns.shared import config
    from healthdns.signer.keyrings import RETRY, Keyrings

    doc = {"zones": [{"origin": "example.test", "nameservers": ["ns1.example.net"],
                      "ttl": 1, "ns_ttl": 1, "soa": {"ttl": 1, "minimum": 1},
                      "records": {"www": {"a": ["192.0.2.1"]}},
                      "dnssec": {"algorithm": "ED25519", "dnskey_ttl": 1,
                                 "key_dir": str(tmp_path / "keys"),
                                 "policy": {"zsk_lifetime": 10, "propagation": 0}}}]}
    clock = [1_000_000.0]
    rings = Keyrings(lambda: clock[0])
    rings.configure(config.from_mapping(doc))
    ring = rings.rings[0]
    ksk = next(k for k in ring.state.keys if k.role == "ksk")
    path = tmp_path / "keys" / ksk.file
    served = ring.signing_keys()
    if damage == "removed":
        path.unlink()
    elif damage == "garbage":
        path.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    else:  # a key file of another key put in its place
        zsk = next(k for k in ring.state.keys if k.role == "zsk")
        path.write_bytes((tmp_path / "keys" / zsk.file).read_bytes().replace(b"zsk", b"ksk"))
    before = (tmp_path / "keys" / "example.test.state").read_bytes()
    clock[0] += 9.5  # the ZSK's successor is due: the DNSKEY RRset needs the KSK's file too
    with caplog.at_level(logging.ERROR, logger="healthdns.signer"):
        assert rings.step() == set()
    assert (tmp_path / "keys" / "example.test.state").read_bytes() == before
    assert rings.due() == clock[0] + RETRY
    assert ring.signing_keys() == served  # the zone is signed on with the keys it has
    # Errors only: what other loggers let through depends on the tests run before this one.
    [error] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "a key roll's step failed, trying again in 60 s" in error and str(path) in error
