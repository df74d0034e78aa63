"""`healthdns-ctl` against the real supervisor: every command, in words and in JSON."""

from __future__ import annotations

import argparse
import datetime
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Backend, Server
from test_control import TOKEN, config, status

from healthdns.shared.version import version
from healthdns.supervisor.ctl import duration

DATE = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"  # a local date and time, as ctl writes them


def refused(server: Server, address: str) -> bool:
    """Whether the latest check of `address` says why it is down (the prober sends its
    detail once a second, after the health change itself)."""
    row = next(t for t in status(server)["targets"] if t["address"] == address)
    return "refused" in (row["reason"] or "").lower()


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
    assert result.stdout.startswith(f"healthdns {version()}\n")
    assert "zone example.test: serial " in result.stdout
    assert "targets: 2 up, 0 down" in result.stdout
    second.down()
    server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.1"}, 5,
                      "127.0.0.2 down")
    server.wait_until(lambda: refused(server, "127.0.0.2"), 5, "the reason reported")
    down = ctl(server, "targets", "--down")
    assert down.returncode == 0
    header, *rows = down.stdout.splitlines()
    assert header.split() == ["STATE", "ADDRESS", "CHECK", "SINCE", "WHY", "NAMES"]
    # Since when (with its date) and why, in the columns the header names.
    assert [row.split()[:2] for row in rows] == [["down", "127.0.0.2"]]
    since = header.index("SINCE")
    assert re.match(DATE, rows[0][since:])
    assert "refused" in rows[0][header.index("WHY"):].lower()
    assert "www.example.test, api.example.test" in rows[0]
    rows_json = json.loads(ctl(server, "--json", "targets").stdout)
    assert {r["address"]: r["state"] for r in rows_json} == {"127.0.0.1": "up",
                                                             "127.0.0.2": "down"}


def test_targets_say_who_drained_and_until_when(setup: tuple[Server, Backend, Backend]) -> None:
    server, _, _ = setup
    assert ctl(server, "drain", "127.0.0.2", "--reason", "disk swap", "--by", "alice",
               "--expires", "2h", token=True).returncode == 0
    line = next(row for row in ctl(server, "targets", "--down").stdout.splitlines()
                if "127.0.0.2" in row)
    assert re.search(rf"drain \(disk swap, by alice, since {DATE}, until {DATE}\); checks "
                     "say up", line), line
    until = re.search(rf"until ({DATE})", line)
    assert until is not None
    expires = datetime.datetime.strptime(until[1], "%Y-%m-%d %H:%M:%S").timestamp()
    assert abs(expires - (time.time() + 7200)) < 60
    assert "override: drain 127.0.0.2 (disk swap, by alice, since " in ctl(server,
                                                                           "status").stdout


def test_explain_says_the_answer_and_why(setup: tuple[Server, Backend, Backend]) -> None:
    server, first, second = setup
    result = ctl(server, "explain", "WWW.example.test.", "A")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("www.example.test A: 127.0.0.1, 127.0.0.2 (ttl 5)\n")
    assert "group 1 of 1 has at least min_healthy = 1 addresses up" in result.stdout
    assert "each answer holds both addresses" in result.stdout
    first.down()
    second.down()
    server.wait_until(lambda: status(server)["names"][0]["answers"][0]["rule"]
                      == "policy empty", 5, "every address down")
    server.wait_until(lambda: refused(server, "127.0.0.1") and refused(server, "127.0.0.2"), 5,
                      "the reasons reported")
    words = ctl(server, "explain", "api.example.test").stdout
    assert "api.example.test A: no address (NODATA)" in words
    assert "the pool's policy 'empty' answers: no address" in words
    assert re.search(rf"down: 127\.0\.0\.1 since {DATE}: .*refused", words, re.IGNORECASE)
    assert re.search(rf"down: 127\.0\.0\.2 since {DATE}: .*refused", words, re.IGNORECASE)
    doc = json.loads(ctl(server, "--json", "explain", "api.example.test").stdout)
    assert doc["answers"][0]["rule"] == "policy empty"
    static = ctl(server, "explain", "static.example.test")
    assert static.returncode == 0, static.stderr
    assert static.stdout.startswith("static.example.test A: 192.0.2.1 (ttl 300)\n  because "
                                    "the static A records of static.example.test\n")
    assert "static.example.test AAAA: no address (NODATA)" in static.stdout
    absent = ctl(server, "explain", "absent.example.test")
    assert absent.stdout == ("absent.example.test: NXDOMAIN\n  because zone example.test has "
                             "no name absent.example.test, nor any name below it\n")
    other = ctl(server, "explain", "www.example.org")
    assert other.stdout.startswith("www.example.org: REFUSED\n  because www.example.org is in "
                                   "none of this server's zones")
    bad = ctl(server, "explain", "www.example.test", "DNSKEY")
    assert bad.returncode == 1 and "400 type: 'DNSKEY' is not one of" in bad.stderr


def test_explain_says_drained_and_forced(setup: tuple[Server, Backend, Backend]) -> None:
    server, _, second = setup
    second.down()
    server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.1"}, 5,
                      "127.0.0.2 down")
    assert ctl(server, "drain", "127.0.0.1", "--reason", "kernel", "--by", "bob",
               token=True).returncode == 0
    assert ctl(server, "force", "127.0.0.2", token=True).returncode == 0
    server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.2"}, 5,
                      "the force and the drain served")
    server.wait_until(lambda: refused(server, "127.0.0.2"), 5, "the reason reported")
    words = ctl(server, "explain", "www.example.test", "A").stdout
    assert words.startswith("www.example.test A: 127.0.0.2 (ttl 5)\n"), words
    assert re.search(rf"\n  drained: 127\.0\.0\.1; drain \(kernel, by bob, since {DATE}, "
                     rf"until removed\); checks say up since {DATE}: ", words), words
    assert re.search(rf"\n  forced: 127\.0\.0\.2; force \(by \S+, since {DATE}, until "
                     rf"removed\); checks say down since {DATE}: .*refused", words,
                     re.IGNORECASE), words
    assert ctl(server, "drain", "www.example.test", token=True).returncode == 0
    words = ctl(server, "explain", "www.example.test", "A").stdout
    assert "; the name is drained: every address counts as down" in words, words
    assert "\n  name drain (by " in words


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800),
                                               ("1h", 3600), ("2d", 172800), ("1w", 604800),
                                               ("1h30m", 5400), ("1.5h", 5400), ("365d", 31536000)])
def test_durations(text: str, seconds: float) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5", "1y", "h", "366d", "nan", "inf", "1h 30m",
                                  "1e9"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        duration(text)


def test_drain_force_undrain(setup: tuple[Server, Backend, Backend]) -> None:
    server, _, _ = setup
    refused = ctl(server, "drain", "127.0.0.2")
    assert refused.returncode == 1 and "needs the control token" in refused.stderr
    result = ctl(server, "drain", "127.0.0.2", "--reason", "disk swap", token=True)
    assert (result.returncode, result.stdout) == (0, "drain: 127.0.0.2\n"), result.stderr
    server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.1"}, 2,
                      "drained")
    assert re.search(rf"override: drain 127\.0\.0\.2 \(disk swap, by \S+@\S+, since {DATE}, "
                     r"until removed\)", ctl(server, "status").stdout)
    before = time.time()
    assert ctl(server, "force", "api.example.test.", "--expires", "30m",
               token=True).returncode == 0
    overrides = status(server)["overrides"]
    assert [o["name"] for o in overrides] == ["", "api.example.test"]
    assert before + 1800 <= overrides[1]["expires"] <= time.time() + 1800
    # undrain takes only a drain, unforce only a force; clear takes either.
    wrong = ctl(server, "undrain", "api.example.test", token=True)
    assert wrong.returncode == 1 and "409" in wrong.stderr and "force, not a drain" in \
        wrong.stderr
    wrong = ctl(server, "unforce", "127.0.0.2", token=True)
    assert wrong.returncode == 1 and "drain, not a force" in wrong.stderr
    assert len(status(server)["overrides"]) == 2
    result = ctl(server, "unforce", "api.example.test", token=True)
    assert (result.returncode, result.stdout) == (0, "force removed: api.example.test\n")
    assert ctl(server, "undrain", "127.0.0.2", token=True).returncode == 0
    server.wait_until(lambda: len(server.addresses("www.example.test")) == 2, 2, "undrained")
    assert ctl(server, "force", "127.0.0.1", token=True).returncode == 0
    result = ctl(server, "clear", "127.0.0.1", token=True)
    assert (result.returncode, result.stdout) == (0, "override removed: 127.0.0.1\n")
    assert status(server)["overrides"] == []
    bad = ctl(server, "drain", "192.0.2.77", token=True)
    assert bad.returncode == 1 and "400" in bad.stderr and "192.0.2.77" in bad.stderr
    usage = ctl(server, "drain", "127.0.0.2", "--expires", "soon", token=True)
    assert usage.returncode == 2 and "'soon' is not a duration" in usage.stderr


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
