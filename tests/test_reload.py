"""Changing a running server: reload (SIGHUP, `POST /reload`), rolling responders, hung children.

Every test here edits the configuration file of a running supervisor and asks it to reload, or
stops one of its children, and checks what clients see meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import textwrap
import threading
from pathlib import Path

import dns.exception
import pytest
from harness import Backend, Server
from test_control import TOKEN, call, status, total

SLOW = 60.0  # a check interval no test outlives: a check seen after the first round is a re-check
FAST = 0.2


def config(port: int, *, static: str = "192.0.2.1", responders: int = 2,
           interval: float = SLOW, hung_after: float = 5.0, extra: str = "") -> str:
    return textwrap.dedent(f"""
        [server]
        listen = ["127.0.0.1:0"]
        responders = {responders}
        hung_after = {hung_after}

        [control]
        token = "{TOKEN}"

        [[zones]]
        origin = "example.test"
        nameservers = ["ns1.example.net"]

        [zones.records.www]
        ttl = 5
        pool = {{ addresses = ["127.0.0.1", "127.0.0.2"], check = {{ port = {port}, interval = {interval}, timeout = {min(interval, 1.0)}, rise = 1, fall = 1 }} }}

        [[zones]]
        origin = "other.test"
        nameservers = ["ns1.example.net"]

        [zones.records.static]
        a = ["{static}"]
    """) + textwrap.dedent(extra)


def start(tmp_path: Path, text: str) -> Server:
    server = Server([], tmp_path, text).start()
    server.wait_until(lambda: len(server.addresses("www.example.test")) == 2, 5, "both up")
    return server


def rewrite(tmp_path: Path, text: str) -> None:
    """Replace the file the server was started with (the harness wrote it there)."""
    (tmp_path / "healthdns.toml").write_text(text)


def serials(server: Server) -> dict[str, int]:
    return {z["zone"]: z["serial"] for z in status(server)["zones"]}


def targets(server: Server) -> dict[str, tuple[str, float, int, int]]:
    """address -> (state, since, changes, checks) of every target."""
    return {t["address"]: (t["state"], t["since"], t["changes"], t["checks"])
            for t in status(server)["targets"]}


def test_reload_changes_one_zone_and_keeps_the_health_it_knows(
        tmp_path: Path, backends: tuple[Backend, Backend]) -> None:
    port = backends[0].port
    server = start(tmp_path, config(port))
    try:
        before, health = serials(server), targets(server)
        assert {state for state, *_ in health.values()} == {"up"}
        rewrite(tmp_path, config(port, static="192.0.2.99"))
        os.kill(server.pid, signal.SIGHUP)
        server.wait_for(r"reloaded: zones changed: other\.test\.$", 5)
        server.wait_until(lambda: server.addresses("static.other.test") == {"192.0.2.99"}, 5,
                          "the new record served")
        after = serials(server)
        assert after["example.test"] == before["example.test"]
        assert after["other.test"] != before["other.test"]
        # The unchanged checks kept their state and schedule: no flip, no re-check.
        assert targets(server) == health
        assert server.addresses("www.example.test") == {"127.0.0.1", "127.0.0.2"}
        assert total(server, "healthdns_reloads_total", {}) == 1
    finally:
        server.stop()


def test_a_reload_that_fails_validation_keeps_serving(
        tmp_path: Path, backends: tuple[Backend, Backend]) -> None:
    port = backends[0].port
    server = start(tmp_path, config(port))
    try:
        before = serials(server)
        rewrite(tmp_path, config(port, static="192.0.2.99") + "[server\n")
        code, answer = call(server, "POST", "/reload")
        assert code == 422 and "TOML" in answer["error"].upper(), answer
        missing = tmp_path / "missing.pem"
        rewrite(tmp_path, config(port, static="192.0.2.99", extra=f"""
            [zones.dnssec]
            algorithm = "ED25519"
            csk = "{missing}"
        """))
        os.kill(server.pid, signal.SIGHUP)
        server.wait_for("reload failed, still serving the previous configuration: "
                        f".*{re.escape(str(missing))}", 5)
        rewrite(tmp_path, config(port, static="192.0.2.99", extra="""
            [rrl]
            responses_per_second = 5
        """))
        code, answer = call(server, "POST", "/reload")
        assert code == 422 and answer["error"].startswith(
            "rrl (on or off) changed from False to True: that takes a restart"), answer
        assert server.addresses("static.other.test") == {"192.0.2.1"}
        assert serials(server) == before
        assert total(server, "healthdns_reload_failures_total", {}) == 3
        assert total(server, "healthdns_reloads_total", {}) == 0
    finally:
        server.stop()


def ask_until(server: Server, done: threading.Event, lost: list[int], sent: list[int]) -> None:
    """One query after another, each waited for: every one without an answer is lost."""
    while not done.is_set():
        sent[0] += 1
        try:
            if server.addresses("static.other.test") != {"192.0.2.1"}:
                lost[0] += 1
        except dns.exception.Timeout:
            lost[0] += 1


def test_changing_the_responder_count_rolls_them_without_losing_a_query(
        tmp_path: Path, backends: tuple[Backend, Backend]) -> None:
    port = backends[0].port
    server = start(tmp_path, config(port, responders=2))
    done, lost, sent = threading.Event(), [0], [0]
    client = threading.Thread(target=ask_until, args=(server, done, lost, sent))
    client.start()
    try:
        old = set(server.children())
        rewrite(tmp_path, config(port, responders=3))
        code, answer = call(server, "POST", "/reload")
        assert code == 200, answer
        # Replaced in turn, each only once its successor is ready, then the new one added.
        steps = [r"responder0 \(pid \d+\) ready, taking over",
                 r"responder0 \(pid \d+\) replaced", r"responder1 \(pid \d+\) ready",
                 r"responder1 \(pid \d+\) replaced", r"responder2 \(pid \d+\) ready"]
        server.wait_until(lambda: all(re.search(s, server.output()) for s in steps), 10,
                          "the responders rolled")
        output = server.output()
        assert sorted(steps, key=lambda s: re.search(s, output).start()) == steps  # type: ignore[union-attr]
        # In either order: the two drain at once (`wait_for` reads on from the line it met).
        exits = [rf"responder{index} exited with code 0, replaced" for index in (0, 1)]
        server.wait_until(lambda: all(re.search(e, server.output()) for e in exits), 20,
                          "the replaced responders exited")
    finally:
        done.set()
        client.join()
    try:
        assert sent[0] > 50 and lost[0] == 0, f"{lost[0]} of {sent[0]} queries lost"
        assert len(status(server)["responders"]) == 3
        responders = [p for p, cmd in server.children().items() if "responder" in cmd]
        assert len(responders) == 3 and not set(responders) & old
    finally:
        server.stop()


HUNG_AFTER = 3.0  # the least the config takes: three reports of a healthy child (1 s apart)


@pytest.mark.parametrize("role", ["responder1", "prober"])
def test_a_stopped_child_is_killed_and_replaced(
        tmp_path: Path, backends: tuple[Backend, Backend], role: str) -> None:
    """Only the stopped child is taken as hung: the others, busy or not, report in time."""
    port = backends[0].port
    server = start(tmp_path, config(port, interval=FAST, hung_after=HUNG_AFTER))
    victim = int(re.findall(rf"{role} started \(pid (\d+)\)", server.output())[-1])
    os.kill(victim, signal.SIGSTOP)
    try:
        if role == "responder1":  # the other follows every flip meanwhile (a query that
            backends[1].down()  # meets the stopped one times out: 2 s lost)
            server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.1"},
                              15, "127.0.0.2 leaving the answers")
        server.wait_for(rf"{role} \(pid {victim}\) sent nothing for [\d.]+ s: hung",
                        HUNG_AFTER + 10)
        server.wait_for(rf"{role} started \(pid \d+\)", 15)
        if role == "prober":  # the new prober sees a flip
            backends[1].down()
            want = {"127.0.0.1"}
        else:  # the new responder serves the flip back
            backends[1].up()
            want = {"127.0.0.1", "127.0.0.2"}
        server.wait_until(lambda: server.addresses("www.example.test") == want, 15,
                          "the replacement following the backend")
        kind = role.rstrip("0123456789")
        assert total(server, "healthdns_child_hung_total", {"role": kind}) == 1
    finally:
        with contextlib.suppress(ProcessLookupError):  # it was killed, as it should be
            os.kill(victim, signal.SIGCONT)
        server.stop()
