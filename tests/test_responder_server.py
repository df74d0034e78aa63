"""The responder's serving loop: internal errors are counted, their tracebacks bounded."""

from __future__ import annotations

import gc
import logging

import pytest

from healthdns.responder import server
from healthdns.shared import config


def test_a_flood_of_internal_errors_logs_one_traceback(caplog: pytest.LogCaptureFixture) -> None:
    cfg = config.from_mapping({"zones": [{"origin": "example.test",
                                          "nameservers": ["ns1.example.net"]}]})
    s = server.Server(0, cfg, [], None)  # type: ignore[arg-type]
    caplog.set_level(logging.ERROR, logger="healthdns.responder")
    for _ in range(1000):
        try:
            raise OverflowError("int too big to convert")
        except OverflowError:
            s._bug(b"\x00" * 65534)
    assert s.errors == 1000
    assert len(caplog.records) == 1
    assert caplog.records[0].exc_info is not None
    assert len(caplog.records[0].getMessage()) < 2 * server.BUG_LOG_BYTES + 100


def test_a_loaded_table_is_frozen_out_of_the_collectors_sight() -> None:
    """A full collection must not walk the table (27 ms at 10,000 signed names, a pause of
    every UDP thread): each load freezes what is alive, the new table included."""
    from test_responder_paths import answerer

    table = answerer().table
    assert table is not None
    cfg = config.from_mapping({"zones": [{"origin": "example.test",
                                          "nameservers": ["ns1.example.net"]}]})
    s = server.Server(0, cfg, [], None)  # type: ignore[arg-type]
    s.serving = True  # no event loop here: only the load is under test
    assert any(o is table.answers for o in gc.get_objects())
    try:
        s._load(table)
        assert s.answerer.table is table
        tracked = gc.get_objects()  # the collector's generations; frozen objects are not in them
        assert not any(o is table.answers or o is table.names for o in tracked)
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
