"""The command line: bad flags and configs fail before binding, with a message naming them."""

from __future__ import annotations

import importlib.metadata
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Backend, Server, run_cli

ZONE = ["--hosted-zone", "example.test", "--ns", '["ns1.example.net"]']


@pytest.mark.parametrize("args,message", [
    ([], "give exactly one of --config PATH, --demo, or --hosted-zone"),
    (["--hosted-zone", "example.test", "--ns", '["ns1.example.net"]'],
     "--zone-resolutions: is required with --hosted-zone"),
    ([*ZONE, "--zone-resolutions", "{www: 1}"], "--zone-resolutions: not valid JSON"),
    ([*ZONE, "--zone-resolutions", '["192.0.2.1"]'],
     "--zone-resolutions: expected a JSON object"),
    ([*ZONE, "--zone-resolutions", '{"www": ["2001:db8::1"]}'],
     "--zone-resolutions.www[0]: '2001:db8::1' is not an IPv4 address"),
    ([*ZONE, "--zone-resolutions", '{"www": {"ips": ["192.0.2.1"], "health_port": 70000}}'],
     "--zone-resolutions.www.health_port: 70000 is not a port (1-65535)"),
    ([*ZONE, "--zone-resolutions", '{"www": {"ips": ["192.0.2.1"]}}'],
     "--zone-resolutions.www: 'health_port' is required"),
    ([*ZONE, "--zone-resolutions", '{"www": {"ips": ["192.0.2.1"], "port": 80}}'],
     "--zone-resolutions.www: unknown key 'port'"),
    ([*ZONE, "--zone-resolutions", '{"bad name": ["192.0.2.1"]}'],
     "--zone-resolutions.\"bad name\": 'bad name' is not a valid DNS name"),
    (["--hosted-zone", "example.test", "--ns", '["ns1"]', "--zone-resolutions",
      '{"www": ["192.0.2.1"]}'],
     "--ns[0]: 'ns1' is not a fully qualified host name"),
    # Its own port: the key is read after binding, and `./dev demo` may hold 53053.
    ([*ZONE, "--zone-resolutions", '{"www": ["192.0.2.1"]}', "--priv-key-path", "/k.pem",
      "--listen", "127.0.0.1:0"],
     "zones[0].dnssec.csk: /k.pem: cannot read: No such file or directory"),
    ([*ZONE, "--zone-resolutions", '{"www": ["192.0.2.1"]}', "--priv-key-path", "/k.pem",
      "--priv-key-alg", "ED448"],
     "--priv-key-alg: ED448 is not supported; use one of ECDSAP256SHA256, ED25519"),
    ([*ZONE, "--zone-resolutions", '{"www": ["192.0.2.1"]}', "--priv-key-alg", "ROT13"],
     "--priv-key-alg: 'ROT13' is not a DNSSEC algorithm"),
    ([*ZONE, "--zone-resolutions", '{"www": ["192.0.2.1"]}', "--test-timeout", "0"],
     "--test-timeout: 0 is not positive"),
    (["--config", "/nonexistent/healthdns.toml"],
     "/nonexistent/healthdns.toml: cannot read: No such file or directory"),
    (["--demo", "--listen", "localhost"],
     "--listen: 'localhost': 'localhost' is not an IPv4 or IPv6 address"),
])
def test_bad_input_exits_non_zero_naming_the_problem(args: list[str], message: str) -> None:
    result = run_cli(args)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_version_comes_from_the_package_metadata() -> None:
    result = run_cli(["--version"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"healthdns-supervisor {importlib.metadata.version('healthdns')}\n"


def test_unknown_flag_value_is_an_argparse_error() -> None:
    result = run_cli(["--demo", "--log-level", "loud"])
    assert result.returncode == 2 and "invalid choice: 'loud'" in result.stderr


def test_bad_toml_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[zones]]\norigin = "example.test"\nnameservers = ["ns1.example.net"]\n'
                    '[zones.records.www]\npool = { addresses = ["192.0.2.1"], '
                    'check = { port = 70000 } }\n')
    result = run_cli(["--config", str(path)])
    assert result.returncode == 1
    assert "zones[0].records.www.pool.check.port: 70000 is not a port (1-65535)" in result.stderr


def test_check_config_prints_the_normalised_config() -> None:
    result = run_cli(["--check-config", *ZONE, "--zone-resolutions",
                      '{"WWW": {"ips": ["192.0.2.1"], "health_port": 80}}',
                      "--test-min-interval", "10"])
    assert result.returncode == 0, result.stderr
    cfg = json.loads(result.stdout)
    zone = cfg["zones"][0]
    assert zone["origin"] == "example.test."
    check = zone["records"]["www"]["pool"]["groups"][0]["check"]
    assert {k: check[k] for k in ("port", "kind", "interval", "timeout", "rise", "fall")} == {
        "port": 80, "kind": "tcp", "interval": 10.0, "timeout": 2.0, "rise": 2, "fall": 2}
    assert zone["records"]["www"]["pool"]["groups"][0]["addresses"] == ["192.0.2.1"]
    assert zone["records"]["www"]["ttl"] == 20  # a-healthy-dns: twice the interval


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A UDP port that someone else holds (no SO_REUSEPORT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_port_in_use_stops_with_the_address(taken_port: int) -> None:
    result = run_cli(["--demo", "--listen", f"127.0.0.1:{taken_port}"])
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{taken_port} (udp): Address already in use" \
        in result.stderr


def test_a_healthy_dns_flags_serve_the_same_answers(tmp_path: Path) -> None:
    backend = Backend("127.0.0.1")
    backend.up()
    resolutions = {"www": {"ips": ["127.0.0.1", "127.0.0.3"], "health_port": backend.port},
                   "static": ["192.0.2.20"]}
    server = Server([*ZONE, "--alias-zones", '["example.org"]', "--zone-resolutions",
                     json.dumps(resolutions), "--test-min-interval", "1", "--test-timeout",
                     "0.2", "--listen", "127.0.0.1:0", "--responders", "1"]).start()
    try:
        assert server.addresses("www.example.test") == {"127.0.0.1"}
        assert server.addresses("www.example.org") == {"127.0.0.1"}
        static = server.query("static.example.test")
        assert [rd.to_text() for rd in static.answer[0]] == ["192.0.2.20"]
        assert static.answer[0].ttl == 2  # twice the check interval, as a-healthy-dns does
    finally:
        assert server.stop() == 0
        backend.close()


def test_a_healthy_dns_flag_without_hosted_zone_is_an_error() -> None:
    result = run_cli(["--demo", "--ns", '["ns1.example.net"]'])
    assert result.returncode == 1
    assert "--ns: is an a-healthy-dns flag: it goes with --hosted-zone" in result.stderr


def _signed_zone(tmp: Path, key: Path, algorithm: str, listen: str = "127.0.0.1:0") -> Path:
    conf = tmp / "signed.toml"
    conf.write_text(f'[server]\nlisten = ["{listen}"]\nresponders = 1\n[[zones]]\n'
                    'origin = "example.test"\nnameservers = ["ns1.example.net"]\n'
                    f'[zones.dnssec]\nalgorithm = "{algorithm}"\ncsk = "{key}"\n'
                    '[zones.records.www]\na = ["192.0.2.1"]\n')
    return conf


def _key(tmp: Path, problem: str) -> tuple[Path, str, str]:
    """A key file with `problem`, the algorithm to configure, and the error expected."""
    from healthdns.signer import keys

    key = tmp / "csk.pem"
    keys.write(keys.generate(keys.Algorithm.ED25519), str(key))
    if problem == "missing":
        key.unlink()
        return key, "ED25519", f"{key}: cannot read: No such file or directory"
    if problem == "mode-644":
        key.chmod(0o644)
        return key, "ED25519", f"{key} has mode 644: group and others must have no access"
    if problem == "mode-620":
        key.chmod(0o620)
        return key, "ED25519", f"{key} has mode 620: group and others must have no access"
    return key, "ECDSAP256SHA256", f"{key} holds an Ed25519 key, which is not a ECDSAP256SHA256"


@pytest.mark.parametrize("problem", ["missing", "mode-644", "mode-620", "wrong-algorithm"])
def test_check_config_fails_on_a_key_the_start_would_refuse(tmp_path: Path,
                                                            problem: str) -> None:
    """Before: --check-config never read the keys and exited 0."""
    key, algorithm, message = _key(tmp_path, problem)
    result = run_cli(["--check-config", "--config", str(_signed_zone(tmp_path, key, algorithm))])
    assert result.returncode == 1, result.stdout
    assert f"configuration error: zones[0].dnssec.csk: {message}" in result.stderr
    assert result.stdout == ""


def test_a_key_error_is_not_hidden_behind_a_busy_port(tmp_path: Path, taken_port: int) -> None:
    """Before: the port was checked first, so only "cannot listen" was said."""
    key, algorithm, message = _key(tmp_path, "mode-644")
    conf = _signed_zone(tmp_path, key, algorithm, listen=f"127.0.0.1:{taken_port}")
    result = run_cli(["--config", str(conf)])
    assert result.returncode == 1
    assert f"zones[0].dnssec.csk: {message}" in result.stderr
    assert "cannot listen" not in result.stderr
