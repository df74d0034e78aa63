"""A stopped signer does not freeze failover: it is watched like the other children (its
heartbeat comes from a thread of its own, so a long signing run is no silence), killed and
respawned from the last snapshot; and health that waits too long to reach the answers shows on
/readyz and in a metric.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import textwrap
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from harness import Backend, Server
from test_control import get, total
from test_dnssec import generate

from healthdns.shared import messages

WITHIN = 15.0  # seconds: hung_after, the respawn, the first signing run, under load
HUNG_AFTER = 3.0  # the least the configuration takes


def next_word(conn: Connection, timeout: float) -> messages.FromChild | None:
    """The next message a signer process sends but its heartbeat (`Alive`); None when none
    comes within `timeout`."""
    deadline = time.monotonic() + timeout
    while conn.poll(max(0.0, deadline - time.monotonic())):
        message = messages.decode_from("signer", conn.recv_bytes())
        if not isinstance(message, messages.Alive):
            return message
    return None


@pytest.fixture
def backends() -> Iterator[tuple[Backend, Backend]]:
    first = Backend("127.0.0.1")
    second = Backend("127.0.0.2", first.port)
    first.up()
    second.up()
    yield first, second
    first.close()
    second.close()


def config(port: int, hung_after: float, extra: str = "") -> str:
    return textwrap.dedent(f"""
        [server]
        listen = ["127.0.0.1:0"]
        responders = 1
        hung_after = {hung_after}

        [[zones]]
        origin = "example.test"
        nameservers = ["ns1.example.net"]

        [zones.records.www]
        ttl = 5
        pool = {{ addresses = ["127.0.0.1", "127.0.0.2"], check = {{ port = {port}, interval = 0.2, timeout = 0.2, rise = 1, fall = 1 }} }}
    """) + textwrap.dedent(extra)


def signer_pid(server: Server) -> int:
    return int(re.findall(r"signer started \(pid (\d+)\)", server.output())[-1])


def start(tmp_path: Path, text: str, within: float = 10) -> Server:
    server = Server([], tmp_path, text).start(timeout=within)  # ready: the first signing run
    server.wait_until(lambda: len(server.addresses("www.example.test")) == 2, within, "both up")
    return server


def test_a_stopped_signer_is_killed_respawned_and_failover_resumes(
        tmp_path: Path, backends: tuple[Backend, Backend]) -> None:
    server = start(tmp_path, config(backends[0].port, hung_after=HUNG_AFTER))
    stopped = signer_pid(server)
    os.kill(stopped, signal.SIGSTOP)
    try:
        backends[1].down()  # a change only a working signer brings to the answers
        server.wait_for(rf"signer \(pid {stopped}\) sent nothing for [\d.]+ s: hung; "
                        "killing it", WITHIN)
        server.wait_for(r"signer started \(pid \d+\)", WITHIN)
        assert signer_pid(server) != stopped
        server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.1"},
                          WITHIN, "127.0.0.2 leaving the answers")
        assert total(server, "healthdns_child_hung_total", {"role": "signer"}) == 1
        assert re.search(r"resuming from generation \d+", server.output())
        backends[1].up()  # and the new one follows what comes next
        server.wait_until(lambda: len(server.addresses("www.example.test")) == 2, WITHIN,
                          "127.0.0.2 back")
    finally:
        with contextlib.suppress(ProcessLookupError):  # it was killed, as it should be
            os.kill(stopped, signal.SIGCONT)
        assert server.stop() == 0


def test_health_waiting_for_a_stuck_signer_shows_on_readyz_and_in_a_metric(
        tmp_path: Path, backends: tuple[Backend, Backend]) -> None:
    """With the watch off (hung_after = 0) nothing kills it: the operator must see it."""
    server = start(tmp_path, config(backends[0].port, hung_after=0))
    # Ready once every responder has said (in its stats, each second) that it serves the
    # generation with both addresses: a moment after they answer with it.
    server.wait_until(lambda: get(server, "/readyz")[0] == 200, WITHIN, "/readyz")
    # /metrics may show a rendering of a readout a moment older than the one /readyz read
    # (control.Cached): it must come to the same figure, not at the same instant.
    server.wait_until(lambda: unpublished(server) == 0, WITHIN, "the metric at 0")
    stopped = signer_pid(server)
    os.kill(stopped, signal.SIGSTOP)
    try:
        backends[1].down()
        server.wait_until(lambda: get(server, "/readyz")[0] == 503, WITHIN, "/readyz failing")
        _, text = get(server, "/readyz")
        assert re.fullmatch(r"not ready: a change of health has waited [\d.]+ s to reach the "
                            r"answers \(the signer is stuck or restarting; at most 5 s\)\n",
                            text), text
        server.wait_until(lambda: unpublished(server) > 5, WITHIN, "the metric past 5 s")
        assert server.addresses("www.example.test") == {"127.0.0.1", "127.0.0.2"}
        os.kill(stopped, signal.SIGCONT)
        server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.1"},
                          WITHIN, "the change published")
        server.wait_until(lambda: get(server, "/readyz")[0] == 200, WITHIN, "/readyz again")
        server.wait_until(lambda: unpublished(server) == 0, WITHIN, "the metric at 0 again")
    finally:
        os.kill(stopped, signal.SIGCONT)
        assert server.stop() == 0


def unpublished(server: Server) -> float:
    return total(server, "healthdns_health_unpublished_seconds", {})


def names_signed_in(seconds: float) -> int:
    """How many names an RSA-signed zone needs for its first signing run to take about
    `seconds` here: two RSA-2048 signatures a name (its records' and its NSEC's), timed on
    this machine now, so that a fast idle machine and a loaded one both get a long run."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rounds, began = 20, time.perf_counter()
    for i in range(rounds):
        key.sign(i.to_bytes(4, "big") * 64, padding.PKCS1v15(), hashes.SHA256())
    each = (time.perf_counter() - began) / rounds
    return max(1500, min(40_000, math.ceil(seconds / (2 * each))))


def test_a_long_signing_run_is_not_taken_for_a_hang(
        tmp_path: Path, backends: tuple[Backend, Backend]) -> None:
    key, _ = generate(tmp_path, "RSASHA256", "csk")
    records = "\n".join(f'[zones.records.n{i}]\na = ["192.0.2.{i % 250 + 1}"]'
                        for i in range(names_signed_in(2.5 * HUNG_AFTER)))
    server = start(tmp_path, config(backends[0].port, hung_after=HUNG_AFTER, extra=f"""
        [zones.dnssec]
        algorithm = "RSASHA256"
        csk = "{key}"
    """ + records), within=90)
    try:
        first = total(server, "healthdns_sign_seconds", {})  # the whole zone, signed once
        assert first > HUNG_AFTER, f"a signing run of {first:.2f} s proves nothing"
        assert "hung; killing it" not in server.output(), server.output()
        backends[1].down()  # and the signer still follows the health
        server.wait_until(lambda: server.addresses("www.example.test") == {"127.0.0.1"},
                          WITHIN, "the change published")
        assert total(server, "healthdns_child_hung_total", {"role": "signer"}) == 0
    finally:
        assert server.stop() == 0
