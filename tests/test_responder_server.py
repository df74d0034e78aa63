"""The responder's serving loop: internal errors are counted, their tracebacks bounded."""

from __future__ import annotations

import gc
import logging
import subprocess
import sys
import weakref

import pytest

from healthdns.responder import main, server
from healthdns.responder.table import Table
from healthdns.shared import config, heap, messages


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


class _Table(Table):
    """A table a weak reference can follow (`Table` has no `__weakref__` slot)."""

    __slots__ = ("__weakref__",)


def test_the_first_table_is_freed_once_a_new_generation_replaces_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`main.run` loads the first table before it binds: once the server serves another
    generation, nothing may keep the first one alive (both would stay in memory: twice a
    table's size, 16 MB at 10,000 signed names, for the life of the process)."""
    from test_responder_paths import answerer

    loaded = answerer().table
    assert loaded is not None
    first = _Table.__new__(_Table)
    for name in Table.__slots__:
        setattr(first, name, getattr(loaded, name))
    made = [first]  # handed over, so that this test holds no reference of its own
    del first
    freed: list[bool] = []

    class Serving(server.Server):
        async def serve(self) -> None:  # a new generation is loaded, as `_load` does
            ref = weakref.ref(self.answerer.table)  # type: ignore[arg-type]
            self.answerer.table = loaded
            gc.collect()
            freed.append(ref() is None)

    cfg = config.from_mapping({"zones": [{"origin": "example.test",
                                          "nameservers": ["ns1.example.net"]}]})
    start = messages.Start(0, b"", [("127.0.0.1", 53, True)])
    monkeypatch.setattr(main.child, "start", lambda conn, role: (start, cfg))
    monkeypatch.setattr(main, "_first_table", lambda conn, cfg: made.pop())
    monkeypatch.setattr(main, "bind_all", lambda listen: [])
    monkeypatch.setattr(main.privilege, "drop", lambda: None)
    monkeypatch.setattr(main.messages, "send", lambda conn, message: None)
    monkeypatch.setattr(main, "Server", Serving)
    main.run(None)  # type: ignore[arg-type]
    assert freed == [True]


FREED_HEAP = r"""
import re
from pathlib import Path
from healthdns.responder import server

def rss_kib() -> int:
    text = Path("/proc/self/smaps_rollup").read_text()
    return int(re.search(r"^Rss:\s+(\d+) kB", text, re.MULTILINE).group(1))

blocks = [bytes(2000) for _ in range(10_000)]  # 20 MB of the C heap (over 512: not pymalloc)
last = blocks[-1]  # kept: the heap cannot simply shrink from its top
del blocks
before = rss_kib()
server.settle()
print(before - rss_kib())
"""


@pytest.mark.skipif(heap._malloc_trim is None, reason="malloc_trim is glibc's")
def test_a_load_gives_the_heap_s_free_pages_back() -> None:
    """A load frees large blocks (the received message, the dicts the table outgrew) that
    glibc keeps in its heap; `settle`, run after every load, returns their pages. In a fresh
    interpreter: 20 MB freed below a block still in use must leave the process's memory."""
    done = subprocess.run([sys.executable, "-c", FREED_HEAP], capture_output=True, text=True,
                          check=True, timeout=60)
    returned_kib = int(done.stdout)
    assert returned_kib > 10 * 1024, f"{returned_kib} KiB returned of 20 MB freed"
