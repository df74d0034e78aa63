"""A key roll in /status and on the status page: every key with its role, state and dates, the
roll's next step and what it waits for, the same facts `healthdns-ctl keys` gives.

A CSK under a policy with a lifetime of 10 s and a parent name server that never answers: its
successor is made and published, and the roll waits for the new DS at the parent from then on.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from harness import Server, config_toml
from test_control import status


def silent_port() -> int:
    """A UDP port of loopback nobody answers on."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class Roll(NamedTuple):
    server: Server
    config: Path
    parent: str  # the name server that never answers
    old: int  # the key tags
    new: int


@pytest.fixture(scope="module")
def waiting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Roll]:
    """The server, once the roll waits for the parent."""
    tmp = tmp_path_factory.mktemp("roll")
    port = silent_port()
    dnssec = {"algorithm": "ED25519", "dnskey_ttl": 1, "key_dir": str(tmp / "keys"),
              "policy": {"csk": True, "csk_lifetime": 10, "propagation": 0, "ds_ttl": 1,
                         "parent_propagation": 0, "check_interval": 1,
                         "parent_nameservers": [f"127.0.0.1:{port}"]}}
    zone = {"ttl": 1, "ns_ttl": 1, "soa": {"ttl": 1, "minimum": 1}, "dnssec": dnssec}
    server = Server([], tmp, config_toml({"www": {"a": ["192.0.2.1"]}}, zone=zone)).start()
    try:
        made = server.wait_for(r"csk (\d+): made and published, to follow (\d+)", 40)
        new, old = int(made.group(1)), int(made.group(2))
        server.wait_until(lambda: len(zone_of(server)["waits"]) == 3, 30,
                          "/status saying what the parent does not serve")
        yield Roll(server, tmp / "healthdns.toml", f"127.0.0.1:{port}", old, new)
    finally:
        server.stop()


def zone_of(server: Server) -> dict[str, Any]:
    shown = status(server)["keys"]
    assert [z["zone"] for z in shown] == ["example.test"]
    zone: dict[str, Any] = shown[0]
    return zone


def ctl_keys(config: Path) -> str:
    ctl = Path(sys.executable).parent / "healthdns-ctl"
    result = subprocess.run([str(ctl), "keys", "--config", str(config)],
                            capture_output=True, text=True, timeout=20, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_status_shows_the_keys_and_what_the_roll_waits_for(waiting: Roll) -> None:
    server, config, parent, old, new = waiting
    zone = zone_of(server)
    assert zone["algorithm"] == "ED25519" and zone["phase"] == "ED25519"
    keys = {k["tag"]: k for k in zone["keys"]}
    assert set(keys) == {old, new}
    assert (keys[old]["role"], keys[old]["state"], keys[old]["algorithm"]) == \
        ("csk", "active", "ED25519")
    assert (keys[new]["role"], keys[new]["state"]) == ("csk", "submitted")
    assert keys[new]["published"] is not None and keys[new]["active"] is None
    assert keys[old]["created"] <= keys[old]["active"] <= keys[new]["published"]
    assert keys[new]["ds"] == "not yet seen"
    assert zone["next"] == f"csk {new}: its DS is not yet served by every parent name server"
    assert zone["waits_for_parent"] is True and zone["held"] is None
    assert zone["next_at"] is None and zone["next_in"] is None  # by the parent, not by time
    assert zone["waits"][0].startswith("parent (asked ")
    assert zone["waits"][1:] == [f"DS {tag}: {parent} did not answer"  # by tag
                                 for tag in sorted((old, new))]
    # The same facts, in the same words, as `healthdns-ctl keys`.
    text = ctl_keys(config)
    assert f"  next: {zone['next']}\n" in text
    for line in zone["waits"][1:]:
        assert f"    {line}\n" in text


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(not (CHROMIUM and shutil.which("chromedriver")),
                    reason="chromium and chromium-driver are not installed")
def test_the_page_shows_the_keys_and_what_the_roll_waits_for(
        waiting: Roll, tmp_path: Path) -> None:
    page = pytest.importorskip("test_status_page")
    server, _, parent, old, new = waiting
    browser = page.chrome(tmp_path)
    try:
        browser.get(server.control + "/")
        page.wait(lambda: browser.execute_script(
            "return !document.getElementById('dnssec').hidden;"), "the DNSSEC keys shown")
        rolls = browser.execute_script(
            "return [...document.querySelectorAll('#rolls tbody tr')]"
            ".map(r => [...r.cells].map(c => c.textContent));")
        assert len(rolls) == 1
        zone, phase, step, earliest, waits = rolls[0]
        assert (zone, phase, earliest) == ("example.test", "ED25519", "")
        assert step == f"csk {new}: its DS is not yet served by every parent name server"
        assert f"DS {new}: {parent} did not answer" in waits
        keys = browser.execute_script(
            "return [...document.querySelectorAll('#keys tbody tr')]"
            ".map(r => [...r.cells].map(c => c.textContent));")
        shown = {int(row[2]): row for row in keys}
        assert set(shown) == {old, new}
        assert shown[old][:5] == ["example.test", "csk", str(old), "ED25519", "active"]
        assert shown[new][4] == "submitted" and shown[new][9] == "not yet seen"
        assert page.re.fullmatch(page.DATE, shown[new][5])  # published
        assert shown[new][6] == ""  # not active yet
        errors = [entry for entry in browser.get_log("browser")
                  if entry["level"] in ("SEVERE", "WARNING")]
        assert errors == []
    finally:
        browser.quit()
