"""`server.signer_user`: started as root, the signer runs as a user of its own, so the keys
it makes and reads are that user's alone: the responders' uid (`server.user`) cannot open
them, and a reload re-reads a key replaced under the same file name."""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import harness
from tests.harness import Server
from tests.test_dnssec import generate
from tests.test_privilege import _as_user, _pids, _status, launcher, user  # noqa: F401

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not sys.platform.startswith("linux"),
                                reason="needs root on Linux: it tests dropping root")

SIGNER_USER = "healthdns-signer-test"


@pytest.fixture(scope="module")
def signer_user() -> tuple[int, int]:
    if shutil.which("useradd"):
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", SIGNER_USER], capture_output=True, check=False)
    try:
        entry = pwd.getpwnam(SIGNER_USER)
    except KeyError:
        pytest.skip(f"no user {SIGNER_USER}")
    return entry.pw_uid, entry.pw_gid


def _toml(uid: int, signer_uid: int, csk: Path, keys: Path) -> str:
    zone = """
        nameservers = ["ns1.example.net"]
        ttl = 1
        ns_ttl = 1
        soa = {{ ttl = 1, minimum = 1 }}
    """
    return f"""
        [server]
        listen = ["127.0.0.1:0"]
        responders = 1
        user = "{uid}"
        signer_user = "{signer_uid}"

        [[zones]]
        origin = "manual.test"
        {zone.format()}
        [zones.dnssec]
        csk = "{csk}"
        [zones.records.www]
        a = ["192.0.2.1"]

        [[zones]]
        origin = "policy.test"
        {zone.format()}
        [zones.dnssec]
        algorithm = "ED25519"
        dnskey_ttl = 1
        key_dir = "{keys}"
        policy = {{ zsk_lifetime = 10, propagation = 0 }}
        [zones.records.www]
        a = ["192.0.2.1"]
    """


def _own(path: Path, owner: tuple[int, int], mode: int) -> Path:
    os.chown(path, *owner)
    path.chmod(mode)
    return path


@pytest.fixture(scope="module")
def running(launcher: tuple[list[str], dict[str, str]], user: tuple[int, int],  # noqa: F811
            signer_user: tuple[int, int]) -> Iterator[tuple[Server, Path, Path]]:
    folder = Path(tempfile.mkdtemp(prefix="healthdns-signer-"))  # root's: every user enters
    folder.chmod(0o755)
    csk = _own(generate(folder, "ECDSAP256SHA256", "csk")[0], signer_user, 0o600)
    (folder / "keys").mkdir()
    keys = _own(folder / "keys", signer_user, 0o700)
    command, env = launcher
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(harness, "supervisor_command", lambda: command)
        for name, value in env.items():
            patch.setenv(name, value)
        server = Server([], folder, _toml(user[0], signer_user[0], csk, keys)).start()
    yield server, csk, keys
    assert server.stop() == 0
    shutil.rmtree(folder)


def _dnskeys(server: Server, zone: str) -> set[str]:
    return {"".join(rd.to_text().split()) for rrset in server.query(zone, "DNSKEY").answer
            for rd in rrset}


def test_the_signer_runs_as_its_own_user_and_the_others_as_the_user(
        running: tuple[Server, Path, Path], user: tuple[int, int],  # noqa: F811
        signer_user: tuple[int, int]) -> None:
    server, _, _ = running
    pids = _pids(server)
    for role, pid in pids.items():
        want = signer_user if role == "signer" else user
        status = _status(pid)
        # The signer's real uid is the supervisor's, which signals it (see shared/privilege.py).
        uids = [user[0]] + [want[0]] * 3
        assert status["Uid"].split() == [str(uid) for uid in uids], (role, status["Uid"])
        assert status["Gid"].split() == [str(want[1])] * 4, (role, status["Gid"])
        assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0, role
        assert status["NoNewPrivs"] == "1"
    assert _status(server.pid)["Uid"].split() == [str(user[0])] * 4


def test_the_signer_rolls_keys_as_its_own_user(running: tuple[Server, Path, Path],
                                               signer_user: tuple[int, int]) -> None:
    server, _, keys = running
    server.wait_for(r"zsk \d+: removed from the DNSKEY RRset", 40)  # a whole roll
    assert keys.stat().st_uid == signer_user[0] and stat.S_IMODE(keys.stat().st_mode) == 0o700
    files = list(keys.iterdir())
    assert len([f for f in files if f.suffix == ".pem"]) >= 2  # the KSK and the new ZSK
    for f in files:
        assert f.stat().st_uid == signer_user[0], f
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_the_responders_uid_cannot_open_any_key_file(
        running: tuple[Server, Path, Path], user: tuple[int, int]) -> None:  # noqa: F811
    server, csk, keys = running
    server.wait_until(lambda: any(keys.glob("*.pem")), 20, "the policy zone's keys")
    for file in [csk, keys, *keys.iterdir()]:
        def attempt(path: Path = file) -> None:
            if path.is_dir():
                os.listdir(path)
            else:
                os.close(os.open(path, os.O_RDONLY))

        assert _as_user(*user, attempt) == errno.EACCES, file


def test_a_reload_rereads_a_key_replaced_under_the_same_name(
        running: tuple[Server, Path, Path], signer_user: tuple[int, int]) -> None:
    server, csk, _ = running
    before = _dnskeys(server, "manual.test")
    assert before
    spare = Path(tempfile.mkdtemp(prefix="healthdns-spare-"))
    try:
        new, dnskey = generate(spare, "ECDSAP256SHA256", "csk")
        _own(new, signer_user, 0o600)
        os.replace(new, csk)
    finally:
        shutil.rmtree(spare)
    # A reload that changes nothing is not passed on: the configuration changes too.
    toml = csk.parent / "healthdns.toml"
    toml.write_text(toml.read_text() + '\n[zones.records.new]\na = ["192.0.2.2"]\n')
    os.kill(server.pid, signal.SIGHUP)
    line = server.wait_for(r"reloaded: |reload failed", 20).group(0)
    assert line == "reloaded: ", server.output()
    dnskey = "".join(dnskey.split())
    try:
        server.wait_until(lambda: dnskey in _dnskeys(server, "manual.test"), 20,
                          "the replaced key in the DNSKEY RRset")
    except AssertionError as e:
        raise AssertionError(f"{e}: {_dnskeys(server, 'manual.test')}\n{server.output()}") from None


def test_a_key_dir_not_the_signer_users_is_named_at_start(
        launcher: tuple[list[str], dict[str, str]], user: tuple[int, int],  # noqa: F811
        signer_user: tuple[int, int]) -> None:
    folder = Path(tempfile.mkdtemp(prefix="healthdns-signer-"))
    folder.chmod(0o755)
    try:
        csk = _own(generate(folder, "ECDSAP256SHA256", "csk")[0], signer_user, 0o600)
        (folder / "keys").mkdir()
        keys = _own(folder / "keys", user, 0o700)  # the other processes' user: not the signer's
        command, env = launcher
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(harness, "supervisor_command", lambda: command)
            for name, value in env.items():
                patch.setenv(name, value)
            pattern = (rf"key_dir: {keys} is owned by uid {user[0]}, not by the user the "
                       rf"signer runs as \(uid {signer_user[0]}\)")
            with pytest.raises(AssertionError, match=pattern):
                Server([], folder, _toml(user[0], signer_user[0], csk, keys)).start()
    finally:
        shutil.rmtree(folder)


def test_a_restarted_signer_is_the_signer_user_again(
        running: tuple[Server, Path, Path], user: tuple[int, int],  # noqa: F811
        signer_user: tuple[int, int]) -> None:
    server, _, _ = running
    os.kill(_pids(server)["signer"], signal.SIGKILL)
    server.wait_for(r"signer started \(pid \d+\)", 30)
    server.wait_until(lambda: _status(_pids(server)["signer"])["Uid"].split()[1]
                      == str(signer_user[0]), 20, "the new signer as signer_user")
    assert _dnskeys(server, "manual.test")
