"""The fork server (issue #12): children share its imports, it holds no secret, and only the
supervisor may ask it for a child (see shared/forkserver.py)."""

from __future__ import annotations

import os
import re
import signal
import socket
from collections.abc import Iterator
from multiprocessing import reduction
from pathlib import Path

import pytest
from harness import Server, children_of, config_toml

TOKEN = "fork-server-must-not-hold-this-token-7f3a9c"
TOML = config_toml({"www": {"a": ["192.0.2.1"]}}, server={"responders": 2},
                   control={"listen": "127.0.0.1:0", "token": TOKEN})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server([], tmp_path_factory.mktemp("forkserver"), TOML).start()
    yield srv
    assert srv.stop() == 0


def fork_server(server: Server) -> int:
    found = re.search(r"fork server: pid (\d+)", server.output())
    assert found is not None
    return int(found.group(1))


def holds(pid: int, needle: bytes) -> bool:
    """Whether any writable mapping of `pid` holds `needle` (reads /proc/PID/mem)."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("rw"):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(start)
                if needle in mem.read(end - start):
                    return True
            except OSError:
                continue  # a guard page, or a mapping gone meanwhile
    return False


def test_children_are_forked_from_it(server: Server) -> None:
    pid = fork_server(server)
    assert pid in children_of(server.pid)
    roles = {int(p): name for name, p in re.findall(r"(\w+) started \(pid (\d+)\)",
                                                      server.output())}
    assert set(children_of(pid)) >= set(roles), "every child's parent is the fork server"
    assert server.addresses("www.example.test") == {"192.0.2.1"}


def test_it_holds_no_secret_of_the_configuration(server: Server) -> None:
    pid = fork_server(server)
    assert holds(server.pid, TOKEN.encode())  # the search works: the supervisor holds it
    assert not holds(pid, TOKEN.encode())


def test_a_request_from_another_process_is_refused(server: Server) -> None:
    """A process of the same user that reaches the fork server's socket (a compromised
    responder) gets no child: the request is dropped before it is read."""
    pid = fork_server(server)
    inodes = {os.readlink(f"/proc/{pid}/fd/{fd}")[len("socket:["):-1]
              for fd in os.listdir(f"/proc/{pid}/fd")
              if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")}
    paths = [fields[7] for fields in (line.split() for line in
                                      Path("/proc/net/unix").read_text().splitlines()[1:])
             if len(fields) == 8 and fields[6] in inodes and "listener-" in fields[7]]
    assert len(paths) == 1, paths
    child_r, ours_w = os.pipe()  # what the child would read: nothing it could run
    ours_r, child_w = os.pipe()  # where a fork server writes the pid of the child it forked
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(paths[0])
        client.settimeout(5)
        try:  # refused at once: the send, or the read of its answer, may find it closed
            reduction.sendfds(client, [child_r, child_w, child_r, child_r])
            assert client.recv(1) == b""
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            for fd in (child_r, child_w, ours_w):
                os.close(fd)
    with os.fdopen(ours_r, "rb") as pids:
        assert pids.read() == b"", "the fork server forked a child for another process"
    server.wait_for(rf"fork server: refused a request from pid {os.getpid()}: only the "
                    rf"supervisor \(pid {server.pid}\) may start children", 5)
    assert server.addresses("www.example.test") == {"192.0.2.1"}  # it still serves


def test_a_killed_fork_server_is_replaced_and_every_child_restarted(tmp_path: Path) -> None:
    """Its children's exit codes come through it: without it the supervisor takes them for
    dead, and they see their pipes closed and exit. The next start makes a new fork server."""
    server = Server([], tmp_path, TOML).start()
    try:
        old = fork_server(server)
        os.kill(old, signal.SIGKILL)
        server.wait_until(lambda: all(
            len(re.findall(rf"{role} started \(pid \d+\)", server.output())) == 2
            for role in ("prober", "signer", "responder0", "responder1")), 10, "restarts")
        new = re.findall(r"fork server: pid (\d+)", server.output())
        assert len(new) == 2 and int(new[1]) != old
        server.wait_until(lambda: server.addresses("www.example.test") == {"192.0.2.1"}, 10,
                          "served again")
        assert server.process is not None and server.process.poll() is None
    finally:
        assert server.stop() == 0
