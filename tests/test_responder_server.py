"""The responder's serving loop: internal errors are counted, their tracebacks bounded."""

from __future__ import annotations

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
