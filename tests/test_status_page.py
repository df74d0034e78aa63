"""The status page in headless Chromium: it loads, shows a backend going down, logs no errors.

Skipped where Chromium and its driver are not installed (CI installs them: .ci/run).
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Backend, Server
from test_control import TOKEN, call, config, status

from healthdns.shared.version import version

selenium = pytest.importorskip("selenium")
from selenium import webdriver

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="chromium and chromium-driver are not installed")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    driver = chrome(tmp_path)
    yield driver
    driver.quit()


def chrome(tmp_path: Path) -> Any:
    """Headless Chromium with its profile under `tmp_path`, logging the page's console."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--no-first-run",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options,
                            service=webdriver.ChromeService(executable_path=str(DRIVER)))


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


DATE = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"  # a date and a time, as the page writes them


def held_config(port: int, state: Path) -> str:
    """Three pools for the three cases an operator must read right: a name drained while its
    addresses are healthy, an address forced while its checks fail, and a pool all down."""
    check = f"check = {{ port = {port}, interval = 0.2, timeout = 0.1, rise = 1, fall = 1 }}"
    return f"""
        [server]
        listen = ["127.0.0.1:0"]
        responders = 1

        [control]
        token = "{TOKEN}"
        state_file = "{state}"

        [[zones]]
        origin = "example.test"
        aliases = ["example.net"]
        nameservers = ["ns1.example.net"]

        [zones.records.www]
        pool = {{ addresses = ["127.0.0.1", "127.0.0.2"], max_answers = 1, {check} }}

        [zones.records.api]
        pool = {{ addresses = ["127.0.0.3"], {check} }}

        [zones.records.dark]
        pool = {{ addresses = ["127.0.0.4"], policy = "backup", backup = ["192.0.2.99"], {check} }}
    """


def page(browser: Any) -> dict[str, Any]:
    """What the page shows, read in one script (it replaces its rows every second)."""
    found: dict[str, Any] = browser.execute_script("""
        const texts = row => [...row.cells].map(c => c.innerText);
        const classes = row => [...row.cells].map(c => c.className);
        return {
          version: document.getElementById("version").textContent,
          targets: [...document.querySelectorAll("#targets tbody tr")].map(r =>
            ({address: r.dataset.address, cells: texts(r), classes: classes(r)})),
          names: [...document.querySelectorAll("#names tbody tr")].map(r =>
            ({name: r.dataset.name, cells: texts(r), classes: classes(r)})),
          overrides: [...document.querySelectorAll("#overrides tbody tr")].map(texts),
        };""")
    return found


def rules(server: Server) -> dict[str, str]:
    """The rule that chose each pooled name's answer, as /status says."""
    return {n["name"]: a["rule"] for n in status(server)["names"] for a in n["answers"]}


def test_the_page_shows_drained_forced_and_all_down_pools(tmp_path: Path, browser: Any) -> None:
    up = Backend("127.0.0.1")
    backends = [up, Backend("127.0.0.2", up.port), Backend("127.0.0.3", up.port),
                Backend("127.0.0.4", up.port)]
    backends[0].up()
    backends[1].up()  # 127.0.0.3 and .4 stay down
    server = Server([], tmp_path, held_config(up.port, tmp_path / "o.json")).start()
    try:
        for override in ({"name": "www.example.test", "action": "drain", "reason": "rollout",
                          "by": "alice@bastion", "expires_in": 7200},
                         {"address": "127.0.0.3", "action": "force", "reason": "canary",
                          "by": "bob"}):
            code, answer = call(server, "POST", "/overrides", override)
            assert code == 200, answer
        # The answers follow the overrides with the next generation: the page shows that one.
        server.wait_until(lambda: server.addresses("api.example.test") == {"127.0.0.3"}
                          and server.addresses("dark.example.test") == {"192.0.2.99"}
                          and len(server.addresses("www.example.test")) == 1
                          and rules(server) == {"www.example.test": "policy serve-all",
                                                "api.example.test": "healthy",
                                                "dark.example.test": "policy backup"},
                          10, "the overrides served, and the rules that chose")
        browser.get(server.control + "/")

        def settled() -> bool:
            shown = page(browser)
            return len(shown["names"]) == 3 and len(shown["overrides"]) == 2 and all(
                n["cells"][1] for n in shown["names"]) and all(
                re.search("refused", t["cells"][4], re.IGNORECASE)
                for t in shown["targets"] if t["address"] in ("127.0.0.3", "127.0.0.4"))
        wait(settled, "the names, their answers and the failure reasons shown", 10)
        shown = page(browser)
        screenshot = tmp_path / "status-page.png"
        browser.set_window_size(1600, 1000)
        browser.save_screenshot(str(screenshot))
        print(f"status page screenshot: {screenshot}")
        check_page(shown)
        errors = [entry for entry in browser.get_log("browser")
                  if entry["level"] in ("SEVERE", "WARNING")]
        assert errors == []
    finally:
        server.stop()
        for backend in backends:
            backend.close()


def check_page(shown: dict[str, Any]) -> None:
    assert shown["version"] == version()
    names = {n["name"]: n for n in shown["names"]}
    # The drained name: its healthy addresses are drained, not down in red; and it says
    # what is answered meanwhile (its policy, serve-all, rotating one address per answer).
    www = names["www.example.test"]
    name, answers, up, down, holding, all_down, override = www["cells"]
    assert name.splitlines() == ["www.example.test", "alias www.example.net"]
    assert "down" not in www["classes"][0] and down == "" and up == ""
    assert holding == "drained: 127.0.0.1, 127.0.0.2" and www["classes"][4] == "drained"
    assert answers == ("A: 127.0.0.1, 127.0.0.2 (policy serve-all) · 1 per answer, 2 answers "
                       "rotating")
    assert all_down.splitlines() == ["policy serve-all:", "A: 127.0.0.1, 127.0.0.2"]
    assert re.fullmatch(rf"drain: rollout, by alice@bastion, since {DATE}, until {DATE}",
                        override), override
    # The forced address: served though its checks fail, and the target says so and why.
    api = names["api.example.test"]
    assert api["cells"][1] == "A: 127.0.0.3 (healthy)"
    assert api["cells"][4] == "forced: 127.0.0.3" and api["classes"][4] == "forced"
    targets = {t["address"]: t for t in shown["targets"]}
    forced = targets["127.0.0.3"]
    assert (forced["cells"][0], forced["classes"][0]) == ("forced", "forced")
    assert re.fullmatch(DATE, forced["cells"][3]), forced
    assert "refused" in forced["cells"][4].lower()
    assert re.fullmatch(rf"force: canary, by bob, since {DATE}, until removed \(checks say "
                        r"down\)", forced["cells"][5]), forced
    # The pool all down: in red, with what its policy answers.
    dark = names["dark.example.test"]
    assert dark["classes"][0] == "down" and dark["cells"][3] == "127.0.0.4"
    assert dark["cells"][1] == "A: 192.0.2.99 (policy backup)"
    assert dark["cells"][5].splitlines() == ["policy backup:", "A: 192.0.2.99"]
    assert dark["classes"][5] == "down"
    assert (targets["127.0.0.4"]["cells"][0], targets["127.0.0.4"]["classes"][0]) == ("down",
                                                                                      "down")
    assert "refused" in targets["127.0.0.4"]["cells"][4].lower()
    healthy = targets["127.0.0.1"]  # up by its checks, and its name drained: both said
    assert (healthy["cells"][0], healthy["classes"][0]) == ("up", "up")
    assert healthy["cells"][5].startswith("name www.example.test drain: rollout, by alice")
    assert [row[:4] for row in shown["overrides"]] == [
        ["127.0.0.3", "force", "canary", "bob"],
        ["www.example.test", "drain", "rollout", "alice@bastion"]]
