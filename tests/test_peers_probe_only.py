"""A probe-only instance (`peers.probe_only`) and a check run from one site (`vantages`):
three real healthdns instances on loopback, a and b name servers, c a vantage that serves no
DNS. c runs no responder and binds no DNS socket, yet its checks vote: a backend that a and c
cannot reach leaves a's and b's answers (two of three vantages see it down), and one that
only c cannot reach stays in them. A backend only a reaches, checked by a alone, is in every
answer: b and c do not check it, and their views do not count for it."""

from __future__ import annotations

import base64
import os
import random
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Server, config_toml
from test_peers_sites import Backend, peer_fresh, status, target, wait

NET = f"127.{random.randint(64, 250)}.{random.randint(1, 250)}"  # apart from other tests
SOURCES = {name: f"{NET}.{i}" for i, name in enumerate("abc", 31)}
LISTEN = {name: f"{NET}.{i}" for i, name in enumerate("abc", 41)}
PEER_PORT = 18054
CUT, KEPT, LOCAL = f"{NET}.51", f"{NET}.52", f"{NET}.53"  # LOCAL: reachable from a only
SECRET = base64.b64encode(b"p" * 32).decode()
PROBE_ONLY = re.compile(r"ready: probe-only, reports to \d+ peer\(s\), theirs taken on "
                        r"(\S+?):(\d+); no DNS served")


def site_config(name: str, port: int) -> str:
    check = {"kind": "http", "port": port, "interval": 0.5, "timeout": 0.4, "rise": 1,
             "fall": 2}
    local = {**check, "path": "/local", "vantages": ["a"]}
    peers = [{"name": other, "url": f"http://{LISTEN[other]}:{PEER_PORT}", "secret": SECRET}
             for other in "abc" if other != name]
    probe_only = name == "c"
    return config_toml(
        {"www": {"ttl": 5, "pool": {"addresses": [CUT, KEPT], "check": check}},
         "local": {"ttl": 5, "pool": {"addresses": [LOCAL, KEPT], "check": local}}},
        server={"listen": None} if probe_only else {},
        prober={"source": [SOURCES[name]], "fence_min_targets": 2},
        peers={"name": name, "listen": f"{LISTEN[name]}:{PEER_PORT}", "plain_http": True,
               "interval": 0.2, "stale_after": 3.0, "peers": peers,
               "probe_only": probe_only or None})


@pytest.fixture(scope="module")
def backends() -> Iterator[tuple[Backend, Backend]]:
    cut = Backend(CUT)
    kept = Backend(KEPT, cut.port)
    local = Backend(LOCAL, cut.port)
    local.cut = {SOURCES["b"], SOURCES["c"]}
    yield cut, kept
    for one in (cut, kept, local):
        one.close()


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory,
          backends: tuple[Backend, Backend]) -> Iterator[dict[str, Server]]:
    servers: dict[str, Server] = {}
    try:
        for name in "abc":
            server = Server([], tmp_path_factory.mktemp(f"site-{name}"),
                            site_config(name, backends[0].port))
            servers[name] = server.start(ready=PROBE_ONLY) if name == "c" else server.start()
        for name, server in servers.items():
            for peer in set("abc") - {name}:
                wait(lambda s=server, p=peer: peer_fresh(s, p), f"{name} hearing {peer}")
        yield servers
    finally:
        for server in servers.values():
            assert server.stop() == 0


def tree(pid: int) -> list[int]:
    """`pid` and its descendants, from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        one = todo.pop()
        found.append(one)
        todo.extend(parents.get(one, []))
    return found


def sockets(pids: list[int]) -> dict[str, set[int]]:
    """The local ports of the UDP sockets, and of the listening TCP ones, the processes
    hold (their fds matched against /proc/net by inode)."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            link = os.readlink(fd)
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    out: dict[str, set[int]] = {"udp": set(), "tcp": set()}
    for kind in ("udp", "udp6", "tcp", "tcp6"):
        for line in Path(f"/proc/net/{kind}").read_text().splitlines()[1:]:
            fields = line.split()
            listening = kind.startswith("udp") or fields[3] == "0A"
            if fields[9] in inodes and listening:
                out[kind[:3]].add(int(fields[1].rsplit(":", 1)[1], 16))
    return out


def test_the_probe_only_instance_runs_no_responder_and_binds_no_dns_socket(
        sites: dict[str, Server]) -> None:
    c = sites["c"]
    assert status(c)["responders"] == []
    assert c.process is not None
    pids = tree(c.process.pid)
    titles = " ".join(Path(f"/proc/{pid}/cmdline").read_text() for pid in pids)
    assert "responder" not in titles and "prober" in titles and "peers" in titles, titles
    bound = sockets(pids)
    assert bound["udp"] == set(), bound  # no DNS over UDP (its checks are HTTP)
    control = int(c.control.rsplit(":", 1)[1])
    assert bound["tcp"] == {PEER_PORT, control}, bound  # its peers' reports, and control
    a = sites["a"]
    assert a.process is not None and sockets(tree(a.process.pid))["udp"]  # a serves DNS


def test_its_vote_counts_with_the_name_servers(
        sites: dict[str, Server], backends: tuple[Backend, Backend]) -> None:
    cut, _ = backends
    before = {name: target(sites[name], CUT)["changes"] for name in "ab"}
    cut.cut = {SOURCES["c"]}  # only the probe-only vantage: outvoted, nothing flips
    try:
        wait(lambda: status(sites["a"])["disagreements"] == 1, "a seeing c disagree")
        for name in "ab":
            assert target(sites[name], CUT)["changes"] == before[name], name
            assert sites[name].addresses("www.example.test") == {CUT, KEPT}, name
        cut.cut = {SOURCES["a"], SOURCES["c"]}  # a and c: two of three, c's vote decides
        for name in "ab":
            wait(lambda s=sites[name]: s.addresses("www.example.test") == {KEPT},
                 f"{name} answering without it")
    finally:
        cut.cut = set()
    for name in "ab":
        wait(lambda s=sites[name]: s.addresses("www.example.test") == {CUT, KEPT},
             f"{name} taking it back")


def test_a_check_run_from_one_site_follows_that_site_alone(sites: dict[str, Server]) -> None:
    """b and c cannot reach LOCAL, but its check runs at a only: it is in every answer."""
    for name in "ab":
        wait(lambda s=sites[name]: s.addresses("local.example.test") == {LOCAL, KEPT},
             f"{name} answering with LOCAL")
    for name, server in sites.items():
        assert target(server, LOCAL)["state"] == "up", name
        started = re.search(r"prober\S* .*started in slot \d+: (\d+) targets",
                            server.output())
        assert started is not None, name
        assert int(started.group(1)) == (4 if name == "a" else 2), name  # the local pool: a
    shown = status(sites["a"])["disagreeing"]
    assert isinstance(shown, list)
    assert not [row for row in shown if LOCAL in row["id"]]  # b and c say nothing of it
