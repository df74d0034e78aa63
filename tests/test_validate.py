"""The configuration checked in a process of its own (issue #12, supervisor/validate.py): the
running supervisor holds none of what checking keys imports, and says what it said before."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from healthdns.shared.errors import ConfigError
from healthdns.supervisor import cli, validate
from tests.harness import Server
from tests.test_dnssec import generate

ZONE = """
[[zones]]
origin = "example.test"
nameservers = ["ns1.example.net"]
{dnssec}
[zones.records.www]
a = ["192.0.2.1"]
"""


def dnssec_config(tmp: Path, key: Path | str) -> Path:
    path = tmp / "c.toml"
    path.write_text("[server]\nlisten = [\"127.0.0.1:0\"]\nresponders = 1\n"
                    + ZONE.format(dnssec=f'dnssec = {{ csk = "{key}" }}'))
    return path


def test_the_running_supervisor_maps_no_key_library(tmp_path: Path) -> None:
    key, _ = generate(tmp_path, "ECDSAP256SHA256", "csk")
    server = Server(["--config", str(dnssec_config(tmp_path, key))]).start()
    try:
        assert "/cryptography/" not in Path(f"/proc/{server.pid}/maps").read_text()
        found = re.search(r"signer started \(pid (\d+)\)", server.output())
        assert found is not None  # the check works: the signer maps it
        assert "/cryptography/" in Path(f"/proc/{found.group(1)}/maps").read_text()
    finally:
        assert server.stop() == 0


def outcome(check: Callable[[], object]) -> object:
    try:
        return check()
    except ConfigError as e:
        return f"problem: {e}"


CASES: dict[str, Callable[[Path], list[str]]] = {
    "the demo": lambda tmp: ["--demo"],
    "flags over the demo": lambda tmp: ["--demo", "--port", "5300", "--responders", "3"],
    "a flag's bad value": lambda tmp: ["--demo", "--port", "70000"],
    "no source": lambda tmp: [],
    "a missing file": lambda tmp: ["--config", str(tmp / "none.toml")],
    "a signed zone": lambda tmp: ["--config", str(dnssec_config(
        tmp, generate(tmp, "ECDSAP256SHA256", "csk")[0]))],
    "a missing key": lambda tmp: ["--config", str(dnssec_config(tmp, tmp / "none.pem"))],
    "a key others may read": lambda tmp: ["--config", str(dnssec_config(
        tmp, (tmp / "c.toml").resolve()))],
}


@pytest.mark.parametrize("case", CASES)
def test_checked_elsewhere_is_checked_here(tmp_path: Path, case: str) -> None:
    argv = CASES[case](tmp_path)
    here = outcome(lambda: validate.checked(cli.parser().parse_args(argv)))
    assert outcome(lambda: validate.elsewhere(argv)) == here
