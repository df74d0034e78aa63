"""Operator files (configuration, CA bundles, DNSSEC keys) are read safely: a regular file of
bounded size, opened without blocking, or a clear error naming the field and the file."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from harness import config_toml, run_cli
from hypothesis import given
from hypothesis import strategies as st

from healthdns.shared import config, files
from healthdns.shared.errors import ConfigError
from healthdns.signer import keys

# A FIFO that nobody writes to blocks a reader that opens it the ordinary way: the tests that
# may meet one are bounded so that such a hang fails instead of stalling the suite.
QUICK = pytest.mark.timeout(15)


def _fifo(tmp: Path) -> Path:
    path = tmp / "fifo"
    os.mkfifo(path)
    return path


def _directory(tmp: Path) -> Path:
    return tmp


def _socket_file(tmp: Path) -> Path:
    path = tmp / "sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()  # the socket file stays
    return path


def _big(tmp: Path) -> Path:
    path = tmp / "big"
    path.write_bytes(b"x" * 2000)
    return path


@pytest.fixture
def special(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Path, str]]:
    make: Callable[[Path], Path] | str = request.param[0]
    path = Path(make) if isinstance(make, str) else make(tmp_path)
    yield path, request.param[1]


SPECIAL = [
    ("/dev/zero", "is a character device, not a regular file"),
    ("/dev/null", "is a character device, not a regular file"),
    (_fifo, "is a FIFO (named pipe), not a regular file"),
    (_directory, "is a directory, not a regular file"),
    (_big, "is 2000 bytes, more than the 1 KiB such a file may have"),
    (_socket_file, "is a socket, not a regular file"),
    ("/nonexistent/file", "cannot read: No such file or directory"),
]


@QUICK
@pytest.mark.parametrize("special", SPECIAL, indirect=True)
def test_read_refuses_what_is_not_a_small_regular_file(special: tuple[Path, str]) -> None:
    path, reason = special
    with pytest.raises(files.FileProblem) as caught:
        files.read(path, files.KIB)
    assert str(caught.value) == f"{path}: {reason}"


@given(size=st.integers(0, 3000), limit=st.integers(1, 3000))
def test_read_returns_a_regular_file_up_to_the_limit(tmp_path_factory: pytest.TempPathFactory,
                                                      size: int, limit: int) -> None:
    path = tmp_path_factory.mktemp("read") / "f"
    data = os.urandom(size)
    path.write_bytes(data)
    if size <= limit:
        contents = files.read(path, limit)
        assert contents.data == data and contents.status.st_size == size
    else:
        with pytest.raises(files.FileProblem, match="more than the"):
            files.read(path, limit)


def test_read_follows_a_symlink_to_a_regular_file(tmp_path: Path) -> None:
    # Kubernetes mounts secrets as symlinks: those must keep working.
    (tmp_path / "real").write_bytes(b"data")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert files.read(tmp_path / "link", files.KIB).data == b"data"


def _https_check(ca_file: str) -> dict[str, object]:
    return {"zones": [{"origin": "example.test", "nameservers": ["ns1.example.test"],
                       "records": {"www": {"pool": {"addresses": ["192.0.2.1"], "check": {
                           "kind": "https", "ca_file": ca_file}}}}}]}


@QUICK
@pytest.mark.parametrize("special", SPECIAL[:4], indirect=True)
def test_a_special_ca_file_is_a_config_error(special: tuple[Path, str]) -> None:
    path, reason = special
    with pytest.raises(ConfigError) as caught:
        config.from_mapping(_https_check(str(path)))
    assert str(caught.value) == f"zones[0].records.www.pool.check.ca_file: '{path}' {reason}"


def test_a_ca_file_over_one_mib_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "huge.pem"
    with path.open("wb") as f:
        f.truncate(files.MIB + 1)  # sparse: the size alone must refuse it
    with pytest.raises(ConfigError, match=r"ca_file: '.*' is 1048577 bytes, more than the "
                       r"1 MiB such a file may have"):
        config.from_mapping(_https_check(str(path)))


@QUICK
def test_a_fifo_as_the_config_file_is_an_error_not_a_hang(tmp_path: Path) -> None:
    fifo = _fifo(tmp_path)
    result = run_cli(["--check-config", "--config", str(fifo)], timeout=10)
    assert result.returncode == 1
    assert f"{fifo}: is a FIFO (named pipe), not a regular file" in result.stderr


def _signed_config(tmp: Path, key: Path) -> Path:
    conf = tmp / "signed.toml"
    conf.write_text(config_toml({"www": {"a": ["192.0.2.1"]}}, zone={"dnssec": {"csk": str(key)}}))
    return conf


@QUICK
@pytest.mark.parametrize("special", SPECIAL[:3], indirect=True)
@pytest.mark.parametrize("check_only", [True, False], ids=["check-config", "start"])
def test_a_special_key_file_stops_the_start_and_fails_check_config(
        tmp_path: Path, special: tuple[Path, str], check_only: bool) -> None:
    """Before: --check-config passed; a start crash-looped (/dev/zero) or never got ready."""
    path, reason = special
    conf = _signed_config(tmp_path, path)
    result = run_cli([*(["--check-config"] if check_only else []), "--config", str(conf)],
                     timeout=10)
    assert result.returncode == 1, result.stderr
    assert f"configuration error: zones[0].dnssec.csk: {path}: {reason}" in result.stderr


def test_a_key_file_over_64_kib_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    keys.write(keys.generate(keys.Algorithm.ECDSAP256SHA256), str(key))
    with key.open("ab") as f:
        f.write(b"\n" * 64 * 1024)  # PEM readers skip trailing text: the size alone refuses it
    with pytest.raises(keys.KeyFileError, match=r"--key: .* more than the 64 KiB"):
        keys.load(str(key), "csk", keys.Algorithm.ECDSAP256SHA256, "--key")
