"""The control endpoint's HTTP server (issue #12): the standard library's, not aiohttp.

The supervisor no longer maps aiohttp; the endpoint routes as aiohttp's router did (checked
against that router, which stays installed for the prober), and bounds what a slow client or
a flood of connections can take: each request has `REQUEST_TIMEOUT` seconds, and at most
`MAX_CONNECTIONS` connections are served at once.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st

from healthdns.supervisor import control, status

TOKEN = "test-token-0123456789abcdef"


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[control.ControlServer]:
    monkeypatch.setattr(control, "REQUEST_TIMEOUT", 0.5)
    monkeypatch.setattr(control, "MAX_CONNECTIONS", 4)
    ours, _theirs = socket.socketpair()
    server = control.ControlServer("127.0.0.1", 0, TOKEN, status.Catalog({}, {}, []), ours)
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
    connection.request("POST", "/reload", body=b'{"x": 1}')  # refused: its body is read past
    response = connection.getresponse()
    assert (response.status, response.getheader("Connection")) == (401, None)
    response.read()
    assert get(connection, "/healthz") == (200, b"ok\n")
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


def test_connections_over_the_cap_are_answered_503_and_the_cap_frees_up(
        endpoint: control.ControlServer) -> None:
    held = [connect(endpoint) for _ in range(control.MAX_CONNECTIONS)]
    for connection in held:  # each one served once and kept open: each holds its thread
        assert get(connection, "/healthz")[0] == 200
    over = connect(endpoint)
    status_code, body = get(over, "/healthz")
    assert (status_code, body) == (503, b"too many control connections\n")
    over.close()
    held.pop().close()  # its thread ends once it sees the close
    deadline = time.monotonic() + 5
    while True:
        again = connect(endpoint)
        try:
            if get(again, "/healthz")[0] == 200:
                break
        finally:
            again.close()
        assert time.monotonic() < deadline, "the freed connection slot was never reused"
    for connection in held:
        connection.close()


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
