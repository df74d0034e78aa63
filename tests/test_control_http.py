"""The control endpoint's HTTP server (issue #12): the standard library's, not aiohttp.

The supervisor no longer maps aiohttp; the endpoint routes as aiohttp's router did (checked
against that router, which stays installed for the prober), and bounds what a slow client or
a flood of connections can take: each request has `REQUEST_TIMEOUT` seconds, and at most
`MAX_CONNECTIONS` connections are served at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st

from healthdns.shared.config import ControlSpec, Endpoint
from healthdns.supervisor import catalog, control, httpd, readout, status

TOKEN = "test-token-0123456789abcdef"


LIMITS = httpd.Limits(connections=4, per_client=4, overflow=1, request_timeout=0.5,
                      probe_timeout=0.5, linger=0.2)


@pytest.fixture
def endpoint() -> Iterator[control.ControlServer]:
    ours, _theirs = socket.socketpair()
    spec = ControlSpec(listen="127.0.0.1:0", listener=Endpoint("127.0.0.1", 0), token=TOKEN)
    server = control.ControlServer(spec, catalog.Catalog({}, {}, []), ours, LIMITS)
    server.start()
    yield server
    server.stop()
    ours.close()
    _theirs.close()


def connect(server: control.ControlServer) -> http.client.HTTPConnection:
    host, port = server.address.rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=5)


def get(connection: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    connection.request("GET", path)
    response = connection.getresponse()
    return response.status, response.read()


def test_the_supervisor_does_not_import_aiohttp_or_asyncio() -> None:
    code = ("import sys, healthdns.supervisor.main; print(sorted({n.split('.')[0] for n in "
            "sys.modules} & {'aiohttp', 'asyncio', 'yarl', 'multidict'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_keep_alive_serves_many_requests_on_one_connection(
        endpoint: control.ControlServer) -> None:
    connection = connect(endpoint)
    for _ in range(3):
        assert get(connection, "/healthz") == (200, b"ok\n")
    connection.request("POST", "/reload", body=b'{"x": 1}')  # refused: its body is not read
    response = connection.getresponse()
    assert (response.status, response.getheader("Connection")) == (401, "close")
    response.read()
    connection.close()


def test_a_client_that_trickles_its_request_is_cut_at_the_deadline(
        endpoint: control.ControlServer) -> None:
    host, port = endpoint.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as slow:
        started = time.monotonic()
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        # A byte each 50 ms: every read is quick, the request never ends.
        while not closed(slow) and time.monotonic() - started < 3.0:
            try:
                slow.sendall(b"a")
            except OSError:
                break  # reset: cut
            time.sleep(0.05)  # the client's pace, not a wait for readiness
        assert closed(slow), "the trickling client was never cut"
        assert time.monotonic() - started < 2.0  # REQUEST_TIMEOUT is 0.5 s here
        # Other clients were served meanwhile and still are.
        assert get(connect(endpoint), "/healthz") == (200, b"ok\n")


def closed(sock: socket.socket) -> bool:
    """The peer closed (or reset) the connection."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_connections_over_the_cap_get_probes_answered_and_the_cap_frees_up(
        endpoint: control.ControlServer) -> None:
    host, port = endpoint.address.rsplit(":", 1)
    held = []
    for _ in range(LIMITS.connections):  # each in the middle of a request: none is idle
        sock = socket.create_connection((host, int(port)), timeout=5)
        sock.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")
        held.append(sock)
    wait_until(lambda: len(endpoint._http.connections) == LIMITS.connections, "all held")
    over = connect(endpoint)  # to the overflow: a probe is answered, nothing else
    assert get(over, "/healthz") == (200, b"ok\n")
    over = connect(endpoint)
    assert get(over, "/status") == (503, b"too many control connections\n")
    held.pop().close()  # its thread ends once it sees the close
    deadline = time.monotonic() + 5
    while True:
        again = connect(endpoint)
        try:
            if get(again, "/status")[0] == 200:
                break
        finally:
            again.close()
        assert time.monotonic() < deadline, "the freed connection slot was never reused"
    for sock in held:
        sock.close()


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.02)  # polling period


def reference_router() -> web.Application:
    """aiohttp's router with the routes the endpoint had when it ran on aiohttp."""
    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    for path in ("/", "/healthz", "/readyz", "/metrics", "/status", "/overrides"):
        app.router.add_get(path, handler)
    app.router.add_post("/overrides", handler)
    app.router.add_delete("/overrides/{key}", handler)
    app.router.add_post("/reload", handler)
    return app


REFERENCE = reference_router()
SEGMENTS = st.sampled_from(["", "overrides", "healthz", "readyz", "metrics", "status",
                            "reload", "www.example.test.", "127.0.0.2", "2001:db8::1", "x",
                            "a%20b", "%6Fverrides"])


@given(method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
       # "//..." would be a URL with a host, not a path
       segments=st.lists(SEGMENTS, min_size=1, max_size=3).filter(
           lambda s: len(s) == 1 or s[0] != ""),
       query=st.sampled_from(["", "?a=1"]))
def test_routes_as_aiohttp_did(method: str, segments: list[str], query: str) -> None:
    path = "/" + "/".join(segments)
    server = control.ControlServer.__new__(control.ControlServer)  # routing needs no socket
    handler, extra = server.route(method, path + query)
    match = asyncio.run(REFERENCE.router.resolve(make_mocked_request(method, path + query)))
    refused = match.http_exception
    if refused is None:
        assert handler is not None, (method, path)
        assert extra == (match.get("key") or "")
    elif isinstance(refused, web.HTTPMethodNotAllowed):
        assert (handler, extra) == (None, ",".join(sorted(refused.allowed_methods)))
    else:
        assert isinstance(refused, web.HTTPNotFound)
        assert (handler, extra) == (None, "")


def test_status_is_rendered_once_per_view_however_many_poll_it(
        endpoint: control.ControlServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: every request rendered the whole document (0.26 s of CPU at 20,000 names)."""
    renders = []
    real = status.Document.render

    def counted(self: status.Document, view: readout.Readout,
                known: catalog.Catalog) -> tuple[bytes | bytearray, ...]:
        renders.append(view)
        return real(self, view, known)

    monkeypatch.setattr(status.Document, "render", counted)

    def poll() -> None:
        connection = connect(endpoint)
        for _ in range(5):
            assert get(connection, "/status")[0] == 200
            assert get(connection, "/overrides") == (200, b"[]")
        connection.close()

    pollers = [threading.Thread(target=poll) for _ in range(LIMITS.connections)]
    for thread in pollers:
        thread.start()
    for thread in pollers:
        thread.join(10)
    assert len(renders) == 1
    first = json.loads(get(connect(endpoint), "/status")[1])
    endpoint.readout = dataclasses.replace(endpoint.readout, generation=7)
    # A new view is served once the last rendering has had its time: ten times its CPU cost
    # (a few ms here, longer on a loaded host), until then the kept one.
    deadline, connection = time.monotonic() + 5, connect(endpoint)
    second = json.loads(get(connection, "/status")[1])
    while second["generation"] != 7 and time.monotonic() < deadline:
        time.sleep(0.01)
        second = json.loads(get(connection, "/status")[1])
    connection.close()
    assert (len(renders), second["generation"]) == (2, 7)
    assert second["now"] > first["now"]  # the time of the answer, not of the rendering
    assert first.keys() == second.keys() >= {"now", "generation", "targets", "overrides"}


def test_a_costly_rendering_serves_new_views_for_ten_times_its_cost() -> None:
    now, cpu = [0.0], [0.0]
    renders: list[readout.Readout] = []

    def render(view: readout.Readout, known: catalog.Catalog) -> int:
        renders.append(view)
        cpu[0] += 0.3  # seconds of CPU, as 20,000 names take
        return len(renders)

    cached = control.Cached(render, clock=lambda: now[0], cpu=lambda: cpu[0])
    known = catalog.Catalog({}, {}, [])
    views = [readout.Readout(generation=g) for g in range(4)]
    assert cached.get(views[0], known) == 1
    now[0] = 2.9
    assert cached.get(views[1], known) == 1  # 0.3 s of CPU: new views wait 3 s
    now[0] = 3.1
    assert cached.get(views[1], known) == 2
    now[0] = 100.0
    assert cached.get(views[1], known) == 2  # the view it shows: never rendered again
    assert cached.get(views[2], known) == 3
    cached.renew()  # a write went through: its client reads it at once
    assert cached.get(views[3], known) == 4
    assert cached.get(views[3], catalog.Catalog({}, {}, [])) == 5  # a reload's catalog
