"""Process titles: the operations page's `pgrep` recipes with two supervisors on one host."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import need_tool
from harness import Server, config_toml

from healthdns.shared import titles

TOML = config_toml({"www": {"a": ["192.0.2.1"]}}, server={"responders": 2})


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    need_tool("pgrep")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    named = Server(["--instance", "edge"], tmp_path / "a", TOML).start()
    try:
        plain = Server([], tmp_path / "b", TOML).start()
    except BaseException:
        named.stop()
        raise
    yield named, plain
    assert named.stop() == 0
    assert plain.stop() == 0


def pgrep(pattern: str) -> set[int]:
    done = subprocess.run(["pgrep", "-f", pattern], check=False, capture_output=True, text=True, timeout=10)
    return {int(pid) for pid in done.stdout.split()}


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


def test_pgrep_tells_two_supervisors_apart(pair: tuple[Server, Server]) -> None:
    named, plain = pair
    roles = ["prober", "signer", "responder 0", "responder 1", "fork server"]
    for server, instance in ((named, "edge"), (plain, "")):
        # The recipe "every child of supervisor PID": exactly its titled children, and the
        # fork server they are forked from.
        children = pgrep(rf"supervisor {server.pid}\)$")
        assert children <= set(server.children())
        assert sorted(cmdline(pid) for pid in children) == sorted(
            titles.title(role.split()[0] if role.startswith("responder") else role, instance, int(role.split()[1])
                         if role.startswith("responder") else None, server.pid)
            for role in roles)
    assert cmdline(named.pid) == "healthdns: supervisor (edge)"
    assert cmdline(plain.pid) == "healthdns: supervisor"
    # "The supervisor named edge", and "every process of edge": none of the other server's.
    assert pgrep(r"^healthdns: supervisor \(edge\)$") == {named.pid}
    assert pgrep(r"^healthdns: .*\(edge[,)]") == {named.pid, *pgrep(rf"supervisor {named.pid}\)$")}
    responders = pgrep(r"^healthdns: responder ")
    assert len(responders & set(plain.children())) == 2
    assert len(responders & set(named.children())) == 2



@pytest.mark.parametrize("args,expected", [
    (("supervisor",), "healthdns: supervisor"),
    (("supervisor", "edge"), "healthdns: supervisor (edge)"),
    (("signer", "", None, 42), "healthdns: signer (supervisor 42)"),
    (("responder", "edge", 3, 42), "healthdns: responder 3 (edge, supervisor 42)"),
])
def test_title(args: tuple[object, ...], expected: str) -> None:
    assert titles.title(*args) == expected  # type: ignore[arg-type]
