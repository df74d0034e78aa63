"""`healthdns-ctl` against the real supervisor: every command, in words and in JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Backend, Server
from test_control import TOKEN, config, status


def ctl(server: Server, *args: str, token: bool = False) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "healthdns-ctl"
    auth = ["--token", TOKEN] if token else []
    return subprocess.run([str(script), "--url", server.control, *auth, *args],
                          capture_output=True, text=True, timeout=20, check=False)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Server, Backend, Backend]]:
    first = Backend("127.0.0.1")
    second = Backend("127.0.0.2", first.port)
    first.up()
    second.up()
    srv = Server([], tmp_path, config(first.port, tmp_path / "overrides.json")).start()
    srv.wait_until(lambda: len(srv.addresses("www.example.test")) == 2, 5, "both up")
    yield srv, first, second
    srv.stop()
    first.close()
    second.close()


def test_status_and_targets(setup: tuple[Server, Backend, Backend]) -> None:
    server, _, second = setup
    result = ctl(server, "status")
    assert result.returncode == 0, result.stderr
    assert "zone example.test: serial " in result.stdout
    assert "targets: 2 up, 0 down" in result.stdout
    second.down()
    server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.1"}, 5,
                      "127.0.0.2 down")
    down = ctl(server, "targets", "--down")
    assert down.returncode == 0
    assert [line.split()[:2] for line in down.stdout.splitlines()] == [["down", "127.0.0.2"]]
    rows = json.loads(ctl(server, "--json", "targets").stdout)
    assert {r["address"]: r["state"] for r in rows} == {"127.0.0.1": "up", "127.0.0.2": "down"}


def test_explain_says_the_answer_and_why(setup: tuple[Server, Backend, Backend]) -> None:
    server, first, second = setup
    result = ctl(server, "explain", "WWW.example.test.", "A")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("www.example.test A: 127.0.0.1, 127.0.0.2\n")
    assert "group 1 of 1 has at least min_healthy = 1 addresses up" in result.stdout
    first.down()
    second.down()
    server.wait_until(lambda: status(server)["names"][0]["answers"][0]["rule"]
                      == "policy empty", 5, "every address down")
    words = ctl(server, "explain", "api.example.test").stdout
    assert "api.example.test A: no address (NODATA)" in words
    assert "the pool's policy 'empty' answers" in words
    assert "down: 127.0.0.1, 127.0.0.2" in words
    doc = json.loads(ctl(server, "--json", "explain", "api.example.test").stdout)
    assert doc["answers"][0]["rule"] == "policy empty"
    missing = ctl(server, "explain", "static.example.test")
    assert missing.returncode == 1 and "has no checked pool" in missing.stderr


def test_drain_force_undrain(setup: tuple[Server, Backend, Backend]) -> None:
    server, _, _ = setup
    refused = ctl(server, "drain", "127.0.0.2")
    assert refused.returncode == 1 and "needs the control token" in refused.stderr
    result = ctl(server, "drain", "127.0.0.2", "--reason", "disk swap", token=True)
    assert (result.returncode, result.stdout) == (0, "drain: 127.0.0.2\n"), result.stderr
    server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.1"}, 2,
                      "drained")
    assert "override: drain 127.0.0.2 (disk swap)" in ctl(server, "status").stdout
    assert ctl(server, "force", "api.example.test.", "--expires", "60",
               token=True).returncode == 0
    assert [o["name"] for o in status(server)["overrides"]] == ["", "api.example.test"]
    assert ctl(server, "undrain", "127.0.0.2", token=True).returncode == 0
    server.wait_until(lambda: len(server.addresses("www.example.test")) == 2, 2, "undrained")
    bad = ctl(server, "drain", "192.0.2.77", token=True)
    assert bad.returncode == 1 and "400" in bad.stderr and "192.0.2.77" in bad.stderr


def test_reload_needs_the_token_and_a_dead_url_is_named(
        setup: tuple[Server, Backend, Backend]) -> None:
    server, _, _ = setup
    refused = ctl(server, "reload")
    assert refused.returncode == 1 and "needs the control token" in refused.stderr
    result = ctl(server, "reload", token=True)
    assert result.returncode == 0 and result.stdout == "reloaded\n", result.stderr
    server.wait_for("reloaded: nothing", 5)
    script = Path(sys.executable).parent / "healthdns-ctl"
    dead = subprocess.run([str(script), "--url", "http://127.0.0.1:9", "status"],
                          capture_output=True, text=True, timeout=20, check=False)
    assert dead.returncode == 1 and "cannot reach http://127.0.0.1:9/status" in dead.stderr
