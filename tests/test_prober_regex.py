"""`body_regex` is matched in linear time (RE2): a hostile body cannot stall the prober's loop,
and a pattern RE2 cannot run is a configuration error naming the field."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from healthdns.prober.checks import probe
from healthdns.shared import config, regex
from healthdns.shared.config import CheckSpec
from healthdns.shared.errors import ConfigError

CATASTROPHIC = r"^(a+)+$"  # exponential for a backtracking engine on "aaa...a!"
# Python's re needs seconds for 28 a's (each one more doubles it); RE2 needs microseconds
# however long the body is, so the test also sends a body near the 64 KiB the prober reads.
HOSTILE_BODIES = ["a" * 28 + "!", "a" * 60_000 + "!"]
P = "zones[0].records.www.pool.check"


def _check(port: int, **fields: object) -> CheckSpec:
    doc = {"zones": [{"origin": "example.test", "nameservers": ["ns1.example.test"],
                      "records": {"www": {"pool": {"addresses": ["127.0.0.1"], "check": {
                          "kind": "http", "port": port, "timeout": 0.5, **fields}}}}}]}
    pool = config.from_mapping(doc).zones[0].records["www"].pool
    assert pool is not None and pool.groups[0].check is not None
    return pool.groups[0].check


async def _lag_while(body: str, pattern: str) -> tuple[tuple[bool, str], float]:
    """The check's result, and the longest the event loop went without running a ticker."""
    async def handle(request: web.Request) -> web.Response:
        return web.Response(text=body)

    app = web.Application()
    app.router.add_get("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    worst = 0.0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            worst = max(worst, now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    try:
        result = await probe("127.0.0.1", _check(port, body_regex=pattern))
    finally:
        stop.set()
        await ticking
        await runner.cleanup()
    return result, worst


@pytest.mark.timeout(60)
@pytest.mark.parametrize("body", HOSTILE_BODIES, ids=["28-a", "60000-a"])
def test_a_catastrophic_pattern_does_not_stall_the_loop(body: str) -> None:
    """Before: Python's re took seconds here, and every other check waited with it."""
    started = time.monotonic()
    result, lag = asyncio.run(_lag_while(body, CATASTROPHIC))
    assert result == (False, f"body mismatch: no match for {CATASTROPHIC!r}")
    assert lag < 0.5, f"the event loop stalled for {lag:.2f} s"
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("pattern,reason", [
    (r"(ok)\1", r"invalid escape sequence: \1"),
    (r"ok(?=!)", "invalid perl operator: (?="),
    (r"(?<!not )ok", "invalid perl operator: (?<!"),
    ("(", "missing ): ("),
])
def test_a_pattern_re2_cannot_run_is_a_config_error(pattern: str, reason: str) -> None:
    """Before: backreferences and lookaround were accepted (Python syntax)."""
    with pytest.raises(ConfigError) as caught:
        _check(80, body_regex=pattern)
    assert str(caught.value) == (f"{P}.body_regex: {pattern!r} is not a valid regular "
                                 f"expression: {reason} (RE2 syntax: no backreferences or "
                                 "lookaround)")


@given(needle=st.text(min_size=1, max_size=8), hay=st.text(max_size=40))
def test_an_escaped_literal_matches_where_the_text_occurs(needle: str, hay: str) -> None:
    """RE2 reads the patterns operators wrote for Python the same way where both apply."""
    found = regex.compile(re.escape(needle)).search(hay)
    assert (found is not None) == (needle in hay)
