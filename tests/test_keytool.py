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


# ---------------------------------------------------------------------------------------------
# healthdns-key


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from healthdns.signer import keytool

    try:
        code = keytool.main(list(argv))
    except SystemExit as e:  # argparse refusing a value
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _generate(capsys: pytest.CaptureFixture[str], tmp: Path, role: str,
              algorithm: str = "ED25519") -> tuple[Path, str]:
    """A key made by `healthdns-key generate`, and what it printed."""
    path = tmp / f"{role}.pem"
    code, out, err = _run(capsys, "generate", "--zone", "example.test", "--out", str(path),
                          "--role", role, "--algorithm", algorithm)
    assert code == 0, err
    return path, out


def _ds_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if " IN DS " in line]


def test_ds_refuses_a_zsk(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Before: it printed a DS whose key tag (flags 257) matched no published DNSKEY."""
    zsk, _ = _generate(capsys, tmp_path, "zsk")
    code, out, err = _run(capsys, "ds", "--zone", "example.test", "--key", str(zsk))
    assert code == 1 and not _ds_lines(out)
    assert f"--key: {zsk} is a ZSK (DNSKEY flags 256); a DS is for the KSK or CSK (flags 257)" \
        in err


@pytest.mark.parametrize("algorithm", config.ALGORITHMS)
@pytest.mark.parametrize("role", ["ksk", "csk"])
def test_ds_infers_the_algorithm_and_matches_what_generate_printed(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, algorithm: str, role: str) -> None:
    """Before: without --algorithm, every key but an ECDSAP256SHA256 one was refused."""
    key, generated = _generate(capsys, tmp_path, role, algorithm)
    code, out, err = _run(capsys, "ds", "--zone", "example.test", "--key", str(key))
    assert code == 0, err
    assert _ds_lines(out) == _ds_lines(generated) and len(_ds_lines(out)) == 1


@pytest.mark.parametrize("argv,code,message", [
    (["ds", "--zone", "example.test", "--key", "{csk}", "--algorithm", "ECDSAP256SHA256"], 1,
     "--key: {csk} holds an Ed25519 key, which is not a ECDSAP256SHA256 key"),
    (["ds", "--config", "{unsigned}"], 1,
     "--config: {unsigned}: no zone is signed (none has [zones.dnssec]), so there is no DS"),
    (["generate", "--zone", "example.test", "--out", "{new}", "--ttl", "-5"], 2,
     "argument --ttl: -5 is not a TTL (0 to 2147483647 seconds"),
    (["generate", "--zone", "example.test", "--out", "{new}", "--ttl", "2147483648"], 2,
     "argument --ttl: 2147483648 is not a TTL"),
    (["generate", "--zone", "example.test", "--out", "{new}", "--ttl", "1h"], 2,
     "argument --ttl: '1h' is not a whole number of seconds"),
])
def test_key_tool_refuses_with_a_message(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                         argv: list[str], code: int, message: str) -> None:
    csk, _ = _generate(capsys, tmp_path, "csk")
    unsigned = tmp_path / "unsigned.toml"
    unsigned.write_text('[[zones]]\norigin = "example.test"\nnameservers = ["ns1.example.net"]\n')
    names = {"csk": csk, "unsigned": unsigned, "new": tmp_path / "new.pem"}
    got, _, err = _run(capsys, *(a.format(**names) for a in argv))
    assert got == code, err
    assert message.format(**names) in err
    assert not (tmp_path / "new.pem").exists()


def test_every_option_of_the_key_tool_says_what_it_does() -> None:
    import argparse

    from healthdns.signer import keytool

    commands = next(a for a in keytool.parser()._actions
                    if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        for action in sub._actions:
            assert action.help, f"healthdns-key {name} {action.option_strings} has no help"


def test_ds_of_a_key_made_elsewhere_says_it_takes_it_for_a_ksk(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    key = tmp_path / "other.pem"
    keys.write(keys.generate(ALGORITHM), str(key))  # no role noted, as from another tool
    code, out, err = _run(capsys, "ds", "--zone", "example.test", "--key", str(key))
    assert code == 0, err
    assert f"; {key} does not say its role" in out and len(_ds_lines(out)) == 1
