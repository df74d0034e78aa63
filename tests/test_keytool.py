"""DNSSEC key files: who may own and read them, and `healthdns-key` refusing what is wrong."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthdns.shared import config
from healthdns.signer import keys

ALGORITHM = keys.Algorithm.ECDSAP256SHA256


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "csk.pem"
    keys.write(keys.generate(ALGORITHM), str(path))
    return path


def _accepted(mode: int, allow_group_read: bool) -> bool:
    """The rule: no access for others; for the group none, or read only if allowed."""
    if os.geteuid() != 0 and not mode & stat.S_IRUSR:
        return False  # we could not read it at all
    rest = mode & 0o077
    return rest == 0 or (allow_group_read and rest == 0o040)


def _spec(file: Path, allow_group_read: bool) -> config.DnssecSpec:
    return config.DnssecSpec(csk=str(file), allow_group_read=allow_group_read)


@settings(max_examples=150)
@given(mode=st.integers(0, 0o777))
def test_a_key_is_refused_unless_only_its_owner_has_access(key_file: Path, mode: int) -> None:
    """Before: only "readable by others" was refused, so 602, 622, 640 and 660 passed."""
    key_file.chmod(mode)
    try:
        keys.load(str(key_file), "csk", ALGORITHM, "zones[0].dnssec.csk")
    except keys.KeyFileError as e:
        assert not _accepted(mode, False), f"{mode:o}: {e}"
        if os.geteuid() == 0 or mode & stat.S_IRUSR:
            assert f"has mode {mode:03o}: group and others must have no access" in str(e)
    else:
        assert _accepted(mode, False), f"mode {mode:o} was accepted"


@settings(max_examples=150)
@given(mode=st.integers(0, 0o777))
def test_allow_group_read_accepts_group_read_and_nothing_more(key_file: Path, mode: int) -> None:
    key_file.chmod(mode)
    try:
        keys.load_all(_spec(key_file, True), "zones[0].dnssec")
    except keys.KeyFileError as e:
        assert not _accepted(mode, True), f"{mode:o}: {e}"
    else:
        assert _accepted(mode, True), f"mode {mode:o} was accepted"


def test_a_key_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another user")
    path = tmp_path / "csk.pem"
    keys.write(keys.generate(ALGORITHM), str(path))
    os.chown(path, 4242, 4242)
    with pytest.raises(keys.KeyFileError, match=r"is owned by uid 4242, neither by the user "
                       r"healthdns runs as \(uid 0\) nor by root"):
        keys.load(str(path), "csk", ALGORITHM, "zones[0].dnssec.csk")


def test_the_mode_checked_is_that_of_the_file_read(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A key swapped for a world-readable one between a check and the read is seen."""
    from healthdns.shared import files

    path = tmp_path / "csk.pem"
    keys.write(keys.generate(ALGORITHM), str(path))
    swapped = tmp_path / "swapped.pem"
    keys.write(keys.generate(ALGORITHM), str(swapped))
    swapped.chmod(0o644)
    real_open = os.open

    def open_after_swap(name: str, flags: int, *args: int) -> int:
        if name == str(path):
            os.replace(swapped, path)  # the attacker wins the race
        return real_open(name, flags, *args)

    monkeypatch.setattr(files.os, "open", open_after_swap)
    with pytest.raises(keys.KeyFileError, match="has mode 644"):
        keys.load(str(path), "csk", ALGORITHM, "zones[0].dnssec.csk")
