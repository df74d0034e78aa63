"""The status page in headless Chromium: it loads, shows a backend going down, logs no errors.

Skipped where Chromium and its driver are not installed (CI installs them: .ci/run).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Backend, Server
from test_control import config

selenium = pytest.importorskip("selenium")
from selenium import webdriver

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="chromium and chromium-driver are not installed")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--no-first-run",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=str(DRIVER)))
    yield driver
    driver.quit()


def rows(browser: Any) -> list[tuple[str, str]]:
    """(state, address) of each target row, in the page's order: read in one script, as the
    page replaces its rows every second (elements found one by one would go stale)."""
    found = browser.execute_script(
        "return [...document.querySelectorAll('#targets tbody tr')]"
        ".map(r => [r.cells[0].textContent, r.cells[1].textContent]);")
    return [(state, address) for state, address in found]


def wait(predicate: Any, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)  # polling period, not a readiness guess
    raise AssertionError(f"{what} did not happen within {timeout} s")


def test_the_page_shows_a_backend_going_down(tmp_path: Path, browser: Any) -> None:
    first = Backend("127.0.0.1")
    second = Backend("127.0.0.2", first.port)
    first.up()
    second.up()
    server = Server([], tmp_path, config(first.port, tmp_path / "o.json")).start()
    try:
        browser.get(server.control + "/")
        wait(lambda: sorted(rows(browser)) == [("up", "127.0.0.1"), ("up", "127.0.0.2")],
             "both targets shown up")
        second.down()
        # Down targets come first, within a few seconds (the page refreshes every second).
        wait(lambda: rows(browser)[:1] == [("down", "127.0.0.2")], "127.0.0.2 shown down")
        assert "www.example.test" in browser.execute_script(
            "return document.getElementById('names').textContent;")
        zones = browser.execute_script(
            "return [...document.querySelectorAll('#zone option')].map(o => o.textContent);")
        assert zones == ["all zones", "example.test"]
        errors = [entry for entry in browser.get_log("browser")
                  if entry["level"] in ("SEVERE", "WARNING")]
        assert errors == []
    finally:
        server.stop()
        first.close()
        second.close()
