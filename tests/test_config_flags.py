"""Errors in flag mode name the flag the user typed, not the config path it was put at."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from healthdns.shared.errors import ConfigError
from healthdns.supervisor import cli
from tests.harness import run_cli

ZONE = ["--hosted-zone", "example.test", "--ns", '["ns1.example.net"]']
POOL = ["--zone-resolutions", '{"www": {"ips": ["192.0.2.1"], "health_port": 80}}']
LONG_ZONE = ".".join(c * 60 for c in "abcd") + ".test"


def pool(**entry: object) -> list[str]:
    return ["--zone-resolutions", json.dumps({"www": entry})]


CASES = [
    ([*ZONE, *POOL, "--test-min-interval", "0.01"],
     "--test-min-interval: 0.01 is not between 0.05 and 86400 s"),
    ([*ZONE, *POOL, "--port", "0"], "--port: 0 is not a port (1-65535)"),
    ([*ZONE, *POOL, "--listen", "127.0.0.1:99999"], "--listen: 99999 is not a port (1-65535)"),
    ([*ZONE, *POOL, "--responders", "500"], "--responders: 500 is not between 1 and 128"),
    ([*ZONE, *POOL, "--alias-zones", '["example.test"]'],
     "--alias-zones[0]: example.test. is already served by --hosted-zone"),
    (["--hosted-zone", LONG_ZONE, "--ns", '["ns1.example.net"]', *POOL],
     "--hosted-zone: 'hostmaster' is not a valid DNS name: hostmaster.aaaa"),
    ([*ZONE, *pool(ips=["192.0.2.1", "192.0.2.1"], health_port=80)],
     "--zone-resolutions.www.ips[1]: 192.0.2.1 is given twice"),
    ([*ZONE, "--zone-resolutions", '{"a.b": {"ips": ["192.0.2.1"], "health_port": 0}}'],
     '--zone-resolutions."a.b".health_port: 0 is not a port (1-65535)'),
    # JSON values as JSON shows them, not as Python does (None, True).
    ([*ZONE, *pool(ips=["192.0.2.1"], health_port=None)],
     "--zone-resolutions.www.health_port: null is not a port (1-65535)"),
    ([*ZONE, "--zone-resolutions", '{"www": [true]}'],
     "--zone-resolutions.www[0]: true is not an IPv4 address"),
    ([*ZONE, *pool(ips=None, health_port=80)],
     "--zone-resolutions.www.ips: null is not a list of IPv4 addresses"),
    # The server flags with --demo and --config too: the flag overrides the file.
    (["--demo", "--port", "0", "--listen", "127.0.0.1"], "--port: 0 is not a port (1-65535)"),
    (["--demo", "--instance", "a(b)"],
     "--instance: 'a(b)' is not 1-32 letters, digits, '.', '_' or '-'"),
    (["--demo", "--listen", "localhost"],
     "--listen: 'localhost': 'localhost' is not an IPv4 or IPv6 address"),
    (["--demo", "--user", "no body"], "--user: 'no body' is not a user or group name"),
]


def test_unknown_user_is_a_configuration_error() -> None:
    """Checked with the configuration (also by --check-config), before anything starts."""
    done = run_cli(["--demo", "--user", "healthdns-no-such-user", "--check-config"])
    assert done.returncode == 1
    assert "configuration error: --user: no user 'healthdns-no-such-user' on this system" \
        in done.stderr, done.stderr


@pytest.mark.parametrize("argv,message", CASES, ids=[c[1].split(": ")[0] for c in CASES])
def test_flag_errors_name_the_flag(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        cli.load(cli.parser().parse_args(argv))
    assert str(raised.value).startswith(message), str(raised.value)


def test_file_values_keep_their_path(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[server]\nport = 0\n[[zones]]\norigin = "example.test"\n'
                    'nameservers = ["ns1.example.net"]\n[zones.records.www]\na = ["192.0.2.1"]\n')
    with pytest.raises(ConfigError, match=r"^server\.port: 0 is not a port"):
        cli.load(cli.parser().parse_args(["--config", str(path)]))
