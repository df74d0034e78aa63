"""Every line a healthdns command writes on stderr is a log record in the chosen format.

Each command runs as installed, with the dependencies this environment resolved: the server
(started, answering, stopped; text and JSON), its `--check-config`, `healthdns-ctl` and
`healthdns-key` (their own commands and their errors), and every `--help` and `--version`. A
library's warning (cryptography deprecating DSA, which dnspython's `dns.dnssec` imports) would
be a bare line; and a warning raised inside any process still arrives as a record.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Backend, Server, config_toml, supervisor_command

from healthdns.signer import keys, keytool
from healthdns.supervisor import ctl

BIN = Path(sys.executable).parent
TEXT = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (supervisor|prober|signer|transfer|"
                  r"responder\d+)\[\d+\] (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S.*")
COMMAND = re.compile(r"healthdns-(supervisor|ctl|key): \S.*")


def assert_records(text: str, fmt: str) -> list[dict[str, object]]:
    """Every line of `text` is a record in `fmt`; returns the JSON ones."""
    found = []
    for line in text.splitlines():
        if fmt == "json":
            record = json.loads(line)  # a bare line fails here, as `jq` would
            assert {"time", "level", "role", "pid", "message"} <= set(record), line
            found.append(record)
        else:
            assert TEXT.fullmatch(line) or COMMAND.fullmatch(line), f"not a record: {line!r}"
    return found


def config(port: int, key: Path) -> str:
    check = {"port": port, "interval": 0.2, "timeout": 0.1}
    return config_toml({"www": {"pool": {"addresses": ["127.0.0.1"], "check": check}}},
                       zone={"dnssec": {"csk": str(key)}})


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Backend]]:
    tmp = tmp_path_factory.mktemp("stderr")
    key = tmp / "csk.pem"
    keys.write(keys.generate(keys.Algorithm.ECDSAP256SHA256), str(key), "csk")
    backend = Backend()
    backend.up()
    path = tmp / "healthdns.toml"
    path.write_text(config(backend.port, key))
    yield tmp, path, backend
    backend.close()


def run(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False,
                          env=env)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_server_start_and_stop_and_the_control_command(
        fmt: str, setup: tuple[Path, Path, Backend]) -> None:
    _, path, _ = setup
    server = Server(["--config", str(path), "--log-format", fmt]).start()
    try:
        assert server.addresses("www.example.test") == {"127.0.0.1"}
        for command in (["status"], ["targets"], ["explain", "www.example.test"]):
            done = run([str(BIN / "healthdns-ctl"), "--url", server.control, *command])
            assert done.returncode == 0 and done.stderr == "", done.stderr
    finally:
        assert server.stop() == 0
    records = assert_records(server.output(), fmt)
    if fmt == "json":
        assert {r["role"] for r in records} >= {"supervisor", "prober", "signer"}
    assert "starting" in server.output() and "stopped" in server.output()


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_check_config_and_its_errors(fmt: str, setup: tuple[Path, Path, Backend],
                                     tmp_path: Path) -> None:
    _, path, _ = setup
    done = run([*supervisor_command(), "--config", str(path), "--log-format", fmt,
                "--check-config"])
    assert done.returncode == 0, done.stderr
    assert_records(done.stderr, fmt)
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[server]\nlog_format = "{fmt}"\nport = 70000\n'
                   '[[zones]]\norigin = "example.test"\nnameservers = ["ns1.example.net"]\n')
    done = run([*supervisor_command(), "--config", str(bad)])  # the format from the file
    assert done.returncode == 1
    (record,) = assert_records(done.stderr, fmt) or [{"message": done.stderr}]
    assert "server.port: 70000 is not a port" in str(record["message"])


def test_ctl_and_key_commands_and_their_errors(setup: tuple[Path, Path, Backend],
                                               tmp_path: Path) -> None:
    _, path, _ = setup
    key = [str(BIN / "healthdns-key")]
    out = tmp_path / "k.pem"
    for command, code in (([*key, "generate", "--zone", "example.test", "--out", str(out)], 0),
                          ([*key, "generate", "--zone", "example.test", "--out", str(out)], 1),
                          ([*key, "ds", "--config", str(path)], 0),
                          ([*key, "ds", "--zone", "example.test", "--key", str(out)], 0),
                          ([str(BIN / "healthdns-ctl"), "--url", "http://127.0.0.1:1",
                            "status"], 1)):
        done = run(command)
        assert done.returncode == code, done.stderr
        assert_records(done.stderr, "text")
        assert (done.stderr == "") == (code == 0), done.stderr


def subcommands(parser: argparse.ArgumentParser) -> list[str]:
    found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [name for action in found for name in action.choices]


@pytest.mark.parametrize("command", [
    *([name, *extra] for name in ("healthdns-supervisor", "healthdns-ctl", "healthdns-key")
      for extra in (["--help"], ["--version"])),
    *(["healthdns-ctl", sub, "--help"] for sub in subcommands(ctl.parser())),
    *(["healthdns-key", sub, "--help"] for sub in subcommands(keytool.parser())),
], ids=" ".join)
def test_help_and_version_write_nothing_on_stderr(command: list[str]) -> None:
    done = run([str(BIN / command[0]), *command[1:]])
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout


# --- a warning inside each process --------------------------------------------------------------

HOOK = '''
import sys, warnings

class _WarnOnImport:
    """Warns when a module named in WARN is imported: a stand-in for a library's warning."""

    def find_spec(self, name, path=None, target=None):
        if name in WARN:
            warnings.warn(f"injected warning: {name}", UserWarning, stacklevel=2)
        return None

WARN = {"healthdns.prober.main", "healthdns.signer.main", "healthdns.shared.keyfiles"}
sys.meta_path.insert(0, _WarnOnImport())
'''


def hooked(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "sitecustomize.py").write_text(HOOK)
    return {**os.environ, "PYTHONPATH": str(tmp_path)}


def test_the_hook_warns_in_plain_python(tmp_path: Path) -> None:
    """The hook itself works: without healthdns's logging, the warning is a bare line."""
    done = run([sys.executable, "-c", "import healthdns.shared.keyfiles"], hooked(tmp_path))
    assert "injected warning: healthdns.shared.keyfiles" in done.stderr


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_warning_in_any_process_is_a_record(fmt: str, setup: tuple[Path, Path, Backend],
                                              tmp_path: Path) -> None:
    _, path, _ = setup
    env = hooked(tmp_path)
    command = [*supervisor_command(), "--config", str(path), "--log-format", fmt,
               "--control-listen", "127.0.0.1:0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env)
    assert server.stderr is not None
    lines = []
    for line in server.stderr:  # until ready, then stop it
        lines.append(line)
        if "ready: serving" in line:
            server.terminate()
    assert server.wait(20) == 0, "".join(lines)
    output = "".join(lines)
    assert_records(output, fmt)
    # In the prober and the signer (children), and in the configuration check (a process the
    # supervisor runs before it starts them).
    for module in ("healthdns.prober.main", "healthdns.signer.main",
                   "healthdns.shared.keyfiles"):
        assert f"UserWarning: injected warning: {module}" in output, output
    checked = run([*supervisor_command(), "--config", str(path), "--log-format", fmt,
                   "--check-config"], env)
    assert_records(checked.stderr, fmt)
    assert "injected warning: healthdns.shared.keyfiles" in checked.stderr
