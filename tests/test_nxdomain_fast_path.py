"""delv validates NXDOMAIN answers made by the fast path, with NSEC and with NSEC3 (#12).

The answers come from an in-process `Answerer` behind a loopback socket, so the test can tell
which path made each one. delv sends a DNS cookie, an option that sends a query to the slow
path; the socket loop drops the query's options (keeping its DO bit and payload size) so that
the fast path answers, as it does for a resolver that sends no options.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rcode
import pytest
from conftest import need_tool
from test_responder_paths import signed_with

from healthdns.responder.query import Answerer

NAMES = ["nothere.example.test", "q7x.www.example.test", "zz-9.b.example.test",
         "Flood-1234.example.org", "a.deep.under.big.example.test"]


def serve(sock: socket.socket, answerer: Answerer, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            data, peer = sock.recvfrom(65535)
        except TimeoutError:
            continue
        query = dns.message.from_wire(data)
        query.use_edns(0, query.ednsflags, query.payload, options=[])
        response = answerer.answer(query.to_wire(), False)
        if response is not None:
            sock.sendto(response, peer)


@pytest.fixture(params=["nsec", "nsec3"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[int, str, Answerer]]:
    answerer, dnskey = signed_with(request.param)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))  # bound before delv starts: no race
    sock.settimeout(0.1)  # how soon the loop sees `stop`
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(sock, answerer, stop), daemon=True)
    thread.start()
    yield sock.getsockname()[1], dnskey, answerer
    stop.set()
    thread.join()
    sock.close()


def test_delv_validates_fast_path_nxdomain(served: tuple[int, str, Answerer],
                                           tmp_path: Path) -> None:
    port, dnskey, answerer = served
    for zone in ("example.test", "example.org"):
        anchors = tmp_path / f"anchors-{zone}"
        flags, proto, alg, *key = dnskey.split()
        anchors.write_text(f'trust-anchors {{ {zone}. static-key {flags} {proto} {alg} '
                           f'"{"".join(key)}"; }};\n')
        for name in (n for n in NAMES if n.lower().endswith(zone)):
            result = subprocess.run([need_tool("delv"), "@127.0.0.1", "-p", str(port),
                                     "-a", str(anchors), f"+root={zone}", name, "A"],
                                    capture_output=True, text=True, timeout=20, check=False)
            out = result.stdout + result.stderr
            assert "; negative response, fully validated" in out, f"{name}:\n{out}"
            assert "NXDOMAIN" in out, f"{name}:\n{out}"
    nxdomain = answerer.counts()
    assert nxdomain[("fast", 1, dns.rcode.NXDOMAIN)] >= len(NAMES)
    assert not [k for k in nxdomain if k[0] == "slow"]
