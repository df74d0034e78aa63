"""What an override request may carry, against the real supervisor: times that end, strings
that cannot forge log lines, who set it, and removal of the one action asked for.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from harness import Backend, Server
from test_control import TOKEN, call, config, get

from healthdns.supervisor.overrides import Override, Overrides

MAX_EXPIRES_IN = 365 * 86400  # docs/operations.md: expires_in is at most 365 days


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("overrides")
    first = Backend("127.0.0.1")
    second = Backend("127.0.0.2", first.port)
    first.up()
    second.up()
    srv = Server([], tmp, config(first.port, tmp / "state.json")).start()
    yield srv
    srv.stop()
    first.close()
    second.close()


@pytest.fixture(autouse=True)
def no_overrides(server: Server) -> Iterator[None]:
    yield
    for o in strict(get(server, "/overrides")[1]):
        call(server, "DELETE", "/overrides/" + (o["name"] or o["address"]))


def strict(text: str) -> Any:
    """JSON as the standard says it: NaN and Infinity are not JSON."""
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def post_raw(server: Server, body: str) -> tuple[int, Any]:
    """POST /overrides with a body as written (json.dumps would not write NaN for us)."""
    request = urllib.request.Request(server.control + "/overrides", data=body.encode(),
                                     method="POST")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "-5", "0", "1e300",
                                   str(MAX_EXPIRES_IN + 1), "1" + "0" * 400, '"3600"', "true",
                                   "[60]"])
def test_an_expiry_that_never_comes_is_refused_naming_the_field(server: Server,
                                                                value: str) -> None:
    code, answer = post_raw(server, '{"address": "127.0.0.2", "action": "drain", '
                            f'"expires_in": {value}}}')
    assert code == 400, answer
    assert answer["error"].startswith("expires_in: "), answer
    assert len(answer["error"]) < 200
    status = strict(get(server, "/status")[1])  # still JSON
    assert status["overrides"] == []


def test_a_finite_expiry_is_kept_and_status_stays_json(server: Server) -> None:
    before = time.time()
    code, answer = post_raw(server, '{"address": "127.0.0.2", "action": "drain", '
                            '"expires_in": 3600.5}')
    assert code == 200, answer
    held = strict(get(server, "/status")[1])["overrides"][0]
    assert before + 3600 < held["expires"] < time.time() + 3601


def test_a_reason_cannot_forge_log_lines(server: Server) -> None:
    forged = "2099-01-01 00:00:00,000 supervisor[1] INFO override removed: 127.0.0.1"
    reason = f"disk\n{forged}\r\x1b[2J\x9b31m\u2028end"
    code, answer = call(server, "POST", "/overrides", {"address": "127.0.0.2",
                                                       "action": "drain", "reason": reason,
                                                       "by": "eve\nforged by"})
    assert code == 200, answer
    line = server.wait_for(r"override set: drain 127\.0\.0\.2 \(disk", 5).string
    assert line.rstrip("\n").endswith(
        r"(disk\n" + forged + r"\r\x1b[2J\x9b31m\u2028end) by eve\nforged by")
    assert not any(ln.startswith("2099-") for ln in server.lines)
    assert not any(c in server.output() for c in "\x1b\x9b\u2028\r")
    # The key of a removal comes from the URL: escaped too.
    assert call(server, "DELETE", "/overrides/127.0.0.2%0A2099-01-01%20forged")[0] == 404


def test_who_set_an_override_is_kept_and_shown(server: Server) -> None:
    code, _ = call(server, "POST", "/overrides", {"address": "127.0.0.2", "action": "force",
                                                  "reason": "canary", "by": "alice@bastion"})
    assert code == 200
    held = strict(get(server, "/status")[1])["overrides"][0]
    assert (held["by"], held["reason"]) == ("alice@bastion", "canary")
    server.wait_for(r"override set: force 127\.0\.0\.2 \(canary\) by alice@bastion", 5)
    code, answer = call(server, "POST", "/overrides", {"address": "127.0.0.2",
                                                       "action": "drain", "by": "x" * 65})
    assert code == 400 and answer["error"].startswith("by: "), answer


def test_removing_one_action_leaves_the_other(server: Server) -> None:
    assert call(server, "POST", "/overrides", {"address": "127.0.0.2", "action": "force"})[0] \
        == 200
    code, answer = call(server, "DELETE", "/overrides/127.0.0.2?action=drain")
    assert code == 409 and "force, not a drain" in answer["error"], answer
    assert [o["action"] for o in strict(get(server, "/status")[1])["overrides"]] == ["force"]
    code, answer = call(server, "DELETE", "/overrides/127.0.0.2?action=bogus")
    assert code == 400 and answer["error"].startswith("action: expected one of drain, force")
    assert call(server, "DELETE", "/overrides/127.0.0.2?action=force")[0] == 200
    assert strict(get(server, "/status")[1])["overrides"] == []


def test_a_kept_override_with_an_absurd_expiry_is_dropped() -> None:
    """Kept overrides are restored through the same checks: a time beyond the maximum
    (written by an older version, or by someone else) is dropped with a line, not held for
    ever."""
    now = time.time()
    kept = [Override(address="192.0.2.1", action="drain", expires=now + 1e300, created=now),
            Override(address="192.0.2.2", action="drain", expires=now + 60, created=now)]
    overrides = Overrides({"192.0.2.1", "192.0.2.2"})
    problems = overrides.restore(kept, now)
    assert [o.address for o in overrides.listing()] == ["192.0.2.2"]
    assert len(problems) == 1 and re.search(r"192\.0\.2\.1.*expires: more than", problems[0])
