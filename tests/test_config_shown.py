"""`--check-config` prints what healthdns will use: effective values, not `null`; names in
full; nothing empty. Relative file paths in the file mean the same file wherever healthdns is
started from (systemd starts it in `/`): they are read under the configuration file's folder.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import pytest
import trustme
from harness import Server, run_cli, supervisor_command

from healthdns.signer import keys


def check_config(*args: str, cwd: str | None = None) -> dict[str, Any]:
    done = subprocess.run([*supervisor_command(), *args, "--check-config"], capture_output=True,
                          text=True, timeout=20, cwd=cwd, check=False)
    assert done.returncode == 0, done.stderr
    shown: dict[str, Any] = json.loads(done.stdout)
    return shown


def test_defaults_that_follow_from_other_settings_are_shown_as_used() -> None:
    """Before: warm_start_max_age, the rrl rates and record ttls were null."""
    shown = check_config("--demo")
    assert shown["server"]["warm_start_max_age"] == 3.0  # three times the 1 s interval
    assert {k: shown["rrl"][k] for k in ("enabled", "responses_per_second",
                                         "nxdomains_per_second", "errors_per_second")} == {
        "enabled": False, "responses_per_second": 5, "nxdomains_per_second": 5,
        "errors_per_second": 5}
    records = shown["zones"][0]["records"]
    assert records["www"]["ttl"] == 5 and records["ns1"]["ttl"] == 60  # the zone's ttl
    assert "null" not in json.dumps({k: shown[k] for k in ("server", "rrl", "prober")})


def test_rrl_rates_are_shown_as_the_responders_apply_them(tmp_path: Path) -> None:
    path = tmp_path / "rrl.toml"
    path.write_text('[rrl]\nresponses_per_second = 20\nerrors_per_second = 0\n[[zones]]\n'
                    'origin = "example.test"\nnameservers = ["ns1.example.net"]\n')
    rrl = check_config("--config", str(path))["rrl"]
    assert (rrl["enabled"], rrl["responses_per_second"], rrl["nxdomains_per_second"],
            rrl["errors_per_second"]) == (True, 20, 20, 0)


def test_record_data_is_shown_with_absolute_names_and_as_each_alias_serves_it() -> None:
    """Before: "10 mail" and "www", which the reader had to complete, wrongly for the alias."""
    zone = check_config("--demo")["zones"][0]
    assert zone["records"]["@"]["mx"] == ["10 mail.demo.test."]
    assert zone["records"]["web"]["cname"] == "www.demo.test."
    assert zone["in_aliases"] == {"demo.example.": {"@": {"mx": ["10 mail.demo.example."]},
                                                    "web": {"cname": "www.demo.example."}}}


def test_empty_record_types_and_fields_that_do_not_apply_are_left_out() -> None:
    """Before: every name listed eight record types, mostly [], and tcp checks their path."""
    shown = check_config("--demo")
    records = shown["zones"][0]["records"]
    assert set(records["static"]) == {"ttl", "a", "aaaa"}
    assert set(records["web"]) == {"ttl", "cname"}
    pool = records["www"]["pool"]
    assert set(pool) == {"groups", "min_healthy", "max_answers", "policy", "backup"}
    assert "verify" not in pool["groups"][0]["check"]  # an http check: no TLS settings
    assert len(json.dumps(shown, indent=2)) < 4000  # 5,171 before, for this 36-line file


@pytest.fixture
def relative(tmp_path: Path) -> Path:
    """A configuration whose file paths are all relative to its own folder, `etc/`."""
    folder = tmp_path / "etc"
    (folder / "keys").mkdir(parents=True)
    keys.write(keys.generate(keys.Algorithm.ED25519), str(folder / "keys" / "zone.pem"))
    trustme.CA().cert_pem.write_to_path(str(folder / "ca.pem"))
    (folder / "token").write_text("token-0123456789abcdef\n")
    (folder / "transfer.key").write_text(
        'key "t" {\n\talgorithm hmac-sha256;\n\tsecret "'
        + "c2VjcmV0LXNlY3JldC1zZWNyZXQtMTI=" + '";\n};\n')
    (folder / "healthdns.toml").write_text("""
        [server]
        listen = ["127.0.0.1:0"]
        responders = 1

        [control]
        token_file = "token"
        state_file = "../var/state.json"

        [[tsig]]
        file = "transfer.key"

        [[zones]]
        origin = "example.test"
        nameservers = ["ns1.example.net"]

        [zones.dnssec]
        algorithm = "ED25519"
        csk = "keys/zone.pem"

        [zones.records.www]
        pool = { addresses = ["127.0.0.1"], check = { kind = "https", ca_file = "./ca.pem", interval = 0.5, timeout = 0.2 } }
    """.replace("\n        ", "\n"))
    (tmp_path / "var").mkdir()
    return folder


def test_relative_paths_are_read_under_the_folder_of_the_file(relative: Path) -> None:
    """Before: read from the working directory (`/` under systemd): cannot read 'token'."""
    shown = check_config("--config", str(relative / "healthdns.toml"), cwd="/")
    assert shown["control"]["token_file"] == f"{relative}/token"
    assert shown["control"]["state_file"] == f"{relative.parent}/var/state.json"
    assert shown["tsig"][0]["file"] == f"{relative}/transfer.key"
    assert shown["zones"][0]["dnssec"]["csk"] == f"{relative}/keys/zone.pem"
    check = shown["zones"][0]["records"]["www"]["pool"]["groups"][0]["check"]
    assert check["ca_file"] == f"{relative}/ca.pem"


def test_a_server_started_elsewhere_finds_its_relative_files(relative: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")
    server = Server(["--config", str(relative / "healthdns.toml")]).start()
    try:
        query = dns.message.make_query("example.test", "DNSKEY", want_dnssec=True)
        answer = dns.query.udp(query, server.host, port=server.port, timeout=2)
        assert answer.answer, answer  # the signer read keys/zone.pem
        server.wait_until((relative.parent / "var" / "state.json").exists, 10,
                          "the state file written under the file's folder")
    finally:
        server.stop()


def test_a_relative_path_in_an_error_is_shown_as_resolved(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[control]\ntoken_file = "missing-token"\n[[zones]]\n'
                    'origin = "example.test"\nnameservers = ["ns1.example.net"]\n')
    done = run_cli(["--config", str(path), "--check-config"])
    assert f"cannot read '{tmp_path}/missing-token'" in done.stderr, done.stderr
