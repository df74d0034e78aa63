"""Configuration errors in the file's words, table-driven: what is wrong with the value (not
`expected int | null, got str`), the key an unknown key most likely means, and the line of the
file the value is on."""

from __future__ import annotations

import datetime
import textwrap
from pathlib import Path
from typing import Any

import pytest
import test_config
from harness import run_cli

from healthdns.shared import config
from healthdns.shared.errors import ConfigError
from healthdns.supervisor import cli, validate

BASE: dict[str, Any] = {"zones": [{
    "origin": "example.test", "nameservers": ["ns1.example.net"],
    "records": {"www": {"pool": {"addresses": ["192.0.2.1"], "check": {"port": 80}}}}}]}


def with_(path: str, value: Any) -> dict[str, Any]:
    """BASE with the value at a path set (`zones/0/records/www/ttl`)."""
    return test_config.with_(path, value, BASE)


CHECK = "zones[0].records.www.pool.check"

WORDS = [
    # The example: `expected int | null, got str`.
    (with_("zones/0/records/www/ttl", "300"),
     ("zones[0].records.www.ttl: '300' must be a whole number of seconds (write 300, without "
     "quotes)")),
    (with_("server/warm_start_max_age", "60"),
     "server.warm_start_max_age: '60' must be a number of seconds (write 60, without quotes)"),
    (with_("zones/0/records/www/ttl", 1.5),
     "zones[0].records.www.ttl: 1.5 must be a whole number of seconds"),
    (with_("zones/0/ttl", 60.0), "zones[0].ttl: 60.0 must be a whole number of seconds (write 60)"),
    (with_("zones/0/soa/expire", [1]), ("zones[0].soa.expire: must be a whole number of seconds, "
     "not a list")),
    (with_("zones/0/records/www/pool/check/interval", "5s"),
     f"{CHECK}.interval: '5s' must be a number of seconds"),
    (with_("server/port", "53"),
     "server.port: '53' must be a port number, 1-65535 (write 53, without quotes)"),
    (with_("server/port", datetime.date(2024, 1, 1)),
     "server.port: 2024-01-01 must be a port number, 1-65535"),
    (with_("server/responders", True), "server.responders: true must be a whole number"),
    (with_("rrl/enabled", "yes"), "rrl.enabled: 'yes' must be true or false"),
    (with_("rrl/enabled", "true"), ("rrl.enabled: 'true' must be true or false (write true, "
     "without quotes)")),
    (with_("server/listen", [53]), "server.listen[0]: 53 must be a string (text in quotes)"),
    (with_("zones/0/nameservers", "ns1.example.net"),
     "zones[0].nameservers: 'ns1.example.net' must be a list: write [\"ns1.example.net\"]"),
    (with_("tsig", {"name": "k"}),
     "tsig: must be a list, not a table (write [[tsig]], with two brackets, before each one)"),
    (with_("server", 5), "server: 5 must be a table"),
    (with_("zones/0/records/api.eu", "192.0.2.9"),
     "zones[0].records.\"api.eu\": '192.0.2.9' must be a table"),
    (with_("zones/0/records/www/pool/check/headers", {"X-Key": 1}),
     f"{CHECK}.headers.X-Key: 1 must be a string (text in quotes)"),
    ({"zones": [{"nameservers": ["ns1.example.net"]}]}, "zones[0].origin: is required"),
    # Unknown keys, and what they most likely mean.
    (with_("server/prot", 53), "server.prot: unknown key; did you mean 'port'?"),
    (with_("server/TTL", 53), "server.TTL: unknown key"),
    (with_("zones/0/recrods", {}), "zones[0].recrods: unknown key; did you mean 'records'?"),
    (with_("zones/0/records/www/TTL", 5), ("zones[0].records.www.TTL: unknown key; did you mean "
     "'ttl'?")),
    (with_("zones/0/records/www/pool/check/timout", 1),
     f"{CHECK}.timout: unknown key; did you mean 'timeout'?"),
    (with_("zones/0/records/www/pool/check/variant", 1),  # internal: never suggested
     f"{CHECK}.variant: unknown key (healthdns sets it, the file may not)"),
    (with_("zones/0/records/www/pol", {"addresses": ["192.0.2.1"]}),
     "zones[0].records.www.pol: unknown key; did you mean 'pool'?"),
    (with_("prober/fence", 3), "prober.fence: unknown key; did you mean 'fence_min_targets'?"),
    # Values that are not one of a few words.
    (with_("zones/0/records/www/pool/check/kind", "HTTP"),
     f"{CHECK}.kind: 'HTTP' is not one of 'http', 'https', 'tcp'; did you mean 'http'?"),
    (with_("server/log_level", "warn"),
     ("server.log_level: 'warn' is not one of 'debug', 'info', 'warning', 'error', 'critical'; "
     "did you mean 'warning'?")),
    (with_("zones/0/records/www/pool/policy", "random"),
     "zones[0].records.www.pool.policy: 'random' is not one of 'serve-all', 'empty', 'backup'"),
]


@pytest.mark.parametrize("document,message", WORDS, ids=[m.split(": ")[0] for _, m in WORDS])
def test_errors_say_what_the_value_must_be(document: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config.from_mapping(document)
    assert str(raised.value) == message


FILE = """\
[server]
port = 53053
listen = [
  "127.0.0.1:53053",
  "[::1]:5353x",
]

[[zones]]
origin = "example.test"
nameservers = ["ns1.example.net"]
txt_note = '''
  a multi-line string
'''

[zones.records."api.eu"]
ttl = "60"
a = ["192.0.2.9"]
[zones.records.www]
pool = { addresses = ["192.0.2.1"], check = { port = 80, interval = 1 } }

[[zones]]
origin = "example.org"
nameservers = ["ns1.example.net"]

[zones.records.www.pool]
check = { port = 80 }

[[zones.records.www.pool.groups]]
addresses = ["192.0.2.1"]

[[zones.records.www.pool.groups]]
addresses = ["192.0.2.2", "192.0.2.x"]
weights = [1, 2, 3]
"""

# Each case: a mistake of FILE, its fix (as many lines), the error, the line it names.
LINES = [
    ('"[::1]:5353x"', '"[::1]:5353"', "server.listen[1]: '[::1]:5353x': '5353x' is not a port",
     5),
    ("txt_note = '''\n  a multi-line string\n'''", "#\n#\n#", "zones[0].txt_note: unknown key",
     11),
    ('ttl = "60"', "ttl = 60",
     "zones[0].records.\"api.eu\".ttl: '60' must be a whole number of seconds", 16),
    # The default timeout (2 s) is longer than this interval: the line of the check.
    ("interval = 1 }", "interval = 5 }",
     "zones[0].records.www.pool.check.timeout: 2 must be positive", 19),
    ('"192.0.2.x"', '"192.0.2.3"',
     "zones[1].records.www.pool.groups[1].addresses[1]: '192.0.2.x' is not", 32),
    ("weights = [1, 2, 3]", "weights = [1, 2]",
     "zones[1].records.www.pool.groups[1].weights: 3 given for 2", 33),
]


def _checked(text: str, tmp_path: Path, *flags: str) -> str:
    path = tmp_path / "healthdns.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        validate.checked(cli.parser().parse_args(["--config", str(path), *flags]))
    return str(raised.value)


def _fixed(but: str | None = None) -> str:
    """FILE with every mistake fixed but `but`."""
    text = FILE
    for mistake, fix, _, _ in LINES:
        if mistake != but:
            assert mistake in text
            text = text.replace(mistake, fix)
    return text


@pytest.mark.parametrize("case", LINES, ids=[c[2].split(":")[0] for c in LINES])
def test_errors_name_the_line_of_the_value(case: tuple[str, str, str, int],
                                           tmp_path: Path) -> None:
    mistake, _, message, line = case
    problem = _checked(_fixed(but=mistake), tmp_path)
    assert problem.startswith(message), problem
    assert problem.endswith(f" (line {line} of {tmp_path}/healthdns.toml)"), problem


def test_a_value_from_a_flag_or_not_in_the_file_names_no_line(tmp_path: Path) -> None:
    problem = _checked(_fixed(), tmp_path, "--port", "70000")
    assert problem == "--port: 70000 is not a port (1-65535)"
    assert _checked("", tmp_path) == "zones: at least one zone is required"


def test_the_supervisor_prints_the_line(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(textwrap.dedent("""\
        [server]
        prot = 53
    """))
    done = run_cli(["--config", str(path), "--check-config"])
    assert done.returncode == 1
    assert done.stderr == ("healthdns-supervisor: configuration error: server.prot: unknown "
                           f"key; did you mean 'port'? (line 2 of {path})\n")
