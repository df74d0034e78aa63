from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from harness import Backend, Server
from hypothesis import settings

# Hypothesis's per-example deadline measures wall time: on a shared, loaded machine it fails
# tests for being slow, not wrong. Time bounds that matter have tests of their own.
settings.register_profile("healthdns", deadline=None)
settings.load_profile("healthdns")


def need_tool(name: str) -> str:
    """The path of a client tool; CI installs them all, so there a missing one fails.

    Servers (knotd, nsd) live in /usr/sbin, which a non-root PATH may leave out."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed: .ci/run must install it")
        pytest.skip(f"{name} is not installed (apt-get install it to run this test)")
    return path


@pytest.fixture
def backends() -> Iterator[tuple[Backend, Backend]]:
    """Two TCP backends on 127.0.0.1 and 127.0.0.2, one port, both up (a module may define
    its own `backends` with another start state)."""
    first = Backend("127.0.0.1")
    second = Backend("127.0.0.2", first.port)
    first.up()
    second.up()
    yield first, second
    first.close()
    second.close()


@pytest.fixture
def dig() -> str:
    return need_tool("dig")


BIG_TXT = ", ".join(f"'\"{i:03d} {'x' * 96}\"'" for i in range(40))

CONFORMANCE = f"""
    [server]
    listen = ["127.0.0.1:0"]
    responders = 2
    nsid = "healthdns-test"
    tcp_idle_timeout = 1.0
    tcp_max_connections = 8

    [[zones]]
    origin = "example.test"
    aliases = ["example.org"]
    nameservers = ["ns1.example.net", "ns2.example.net"]
    ttl = 300

    [zones.soa]
    ttl = 3600
    minimum = 60

    [zones.records.www]
    a = ["192.0.2.1", "192.0.2.2"]
    aaaa = ["2001:db8::1"]

    [zones.records.mail]
    a = ["192.0.2.25"]

    [zones.records."@"]
    mx = ["10 mail"]
    txt = ['"v=spf1 -all"']
    caa = ['0 issue "letsencrypt.org"']

    [zones.records.big]
    txt = [{BIG_TXT}]

    [zones.records."a.b.c"]
    txt = ['"deep"']

    [zones.records."_sip._udp"]
    srv = ["10 60 5060 sip"]

    [zones.records.sip]
    a = ["192.0.2.60"]

    [zones.records.alias]
    cname = "www"

    [zones.records.chain1]
    cname = "chain2"

    [zones.records.chain2]
    cname = "www.example.org."

    [zones.records.loop1]
    cname = "loop2"

    [zones.records.loop2]
    cname = "loop1"

    [zones.records.dangling]
    cname = "nothere"

    [zones.records.ext]
    cname = "www.example.net."

    [zones.records.rev]
    ptr = ["www.example.test."]

    [[zones]]
    origin = "second.test"
    nameservers = ["ns1.second.test"]

    [zones.records.ns1]
    a = ["192.0.2.53"]
"""


@pytest.fixture(scope="session")
def conformance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One read-only server for the per-RFC conformance tests."""
    server = Server([], tmp_path_factory.mktemp("conformance"), CONFORMANCE).start()
    yield server
    assert server.stop() == 0
