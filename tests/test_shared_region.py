"""Memory (issue #12): no resource tracker, and the RRL table is a memfd, not /dev/shm.

The responders share one table of RRL accounts that the supervisor made (shared/region.py);
multiprocessing's resource tracker, an interpreter of its own, is never started.
"""

from __future__ import annotations

import re
from pathlib import Path

from conftest import CONFORMANCE
from harness import Server

RRL = """
    [rrl]
    responses_per_second = 10
"""


def shared_files(pid: int) -> dict[str, set[int]]:
    """Path -> inodes of the shared memory a process maps: /dev/shm files and memfds."""
    found: dict[str, set[int]] = {}
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and re.match(r"(/dev/shm/|/memfd:)", fields[5]):
            found.setdefault(fields[5], set()).add(int(fields[4]))
    return found


def test_no_resource_tracker_and_one_memfd_table_for_all_responders(tmp_path: Path) -> None:
    server = Server([], tmp_path, CONFORMANCE + RRL).start()
    try:
        processes = server.children()
        assert not [line for line in processes.values() if "resource_tracker" in line]
        responders = [pid for pid, line in processes.items() if "responder" in line]
        assert len(responders) == 2, processes
        maps = [shared_files(pid) for pid in (*responders, server.pid)]
        assert [m for m in maps if any(p.startswith("/dev/shm/") for p in m)] == []
        tables = [m.get("/memfd:healthdns-rrl (deleted)", set()) for m in maps]
        assert len(tables[0]) == 1 and tables[0] == tables[1]  # one table, mapped by both
        assert tables[2] == set()  # the supervisor holds the descriptor and maps nothing
    finally:
        assert server.stop() == 0
