"""Automatic key rolls started as root with `server.user`: the signer makes and rolls its keys
as that user, after it has dropped every privilege.

The signer runs as `server.user` from the start (the supervisor switches at once) and only
keeps CAP_DAC_READ_SEARCH until its keys are read, so the keys it makes later are written with
that user's rights alone: `key_dir` must be that user's. What this costs is said plainly here:
the responders run as the same uid, so they could open the key files; a signer of its own user
is not there yet.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import harness
from tests.harness import Server
from tests.test_privilege import launcher, user  # noqa: F401  # the fixtures

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not sys.platform.startswith("linux"),
                                reason="needs root on Linux: it tests dropping root")


def policy_toml(uid: int, keys: Path) -> str:
    return f"""
        [server]
        listen = ["127.0.0.1:0"]
        responders = 1
        user = "{uid}"

        [[zones]]
        origin = "example.test"
        nameservers = ["ns1.example.net"]
        ttl = 1
        ns_ttl = 1
        soa = {{ ttl = 1, minimum = 1 }}

        [zones.dnssec]
        algorithm = "ED25519"
        dnskey_ttl = 1
        key_dir = "{keys}"
        policy = {{ zsk_lifetime = 10, propagation = 0 }}

        [zones.records.www]
        a = ["192.0.2.1"]
    """


@pytest.fixture
def home(user: tuple[int, int]) -> Iterator[Path]:  # noqa: F811
    """A folder of the test user's, where it may make `key_dir`."""
    folder = Path(tempfile.mkdtemp(prefix="healthdns-keys-"))
    os.chown(folder, *user)
    folder.chmod(0o700)
    yield folder
    shutil.rmtree(folder)


def start(launcher: tuple[list[str], dict[str, str]], tmp: Path,  # noqa: F811
          toml: str) -> Server:
    command, env = launcher
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(harness, "supervisor_command", lambda: command)
        for name, value in env.items():
            patch.setenv(name, value)
        return Server([], tmp, toml).start()


def test_the_signer_rolls_keys_as_the_user_after_dropping_root(
        launcher: tuple[list[str], dict[str, str]], user: tuple[int, int],  # noqa: F811
        home: Path, tmp_path: Path) -> None:
    keys = home / "keys"
    server = start(launcher, tmp_path, policy_toml(user[0], keys))
    try:
        server.wait_for(r"zsk \d+: removed from the DNSKEY RRset", 40)  # a whole roll
    finally:
        assert server.stop() == 0
    assert keys.stat().st_uid == user[0] and stat.S_IMODE(keys.stat().st_mode) == 0o700
    files = list(keys.iterdir())
    assert len([f for f in files if f.suffix == ".pem"]) == 2  # the KSK and the new ZSK
    for f in files:
        assert f.stat().st_uid == user[0] and stat.S_IMODE(f.stat().st_mode) == 0o600


def test_a_key_dir_the_user_cannot_make_is_a_clear_error_at_start(
        launcher: tuple[list[str], dict[str, str]], user: tuple[int, int],  # noqa: F811
        tmp_path: Path) -> None:
    closed = Path(tempfile.mkdtemp(prefix="healthdns-root-"))  # root's, mode 700
    try:
        toml = policy_toml(user[0], closed / "keys")
        with pytest.raises(AssertionError, match=r"key_dir: .*keys: Permission denied"):
            start(launcher, tmp_path, toml)
    finally:
        shutil.rmtree(closed)
