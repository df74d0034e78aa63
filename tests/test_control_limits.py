"""What a client can make the control endpoint hold: every size in a request bounded before it
is read, a body read only when it is wanted, and probes answered whatever other clients hold.

Attacks run against the real supervisor with real clients (raw sockets, http.client, curl);
the parsing rules are checked table by table on `supervisor/httpd.py` itself.
"""

from __future__ import annotations

import http.client
import io
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Backend, Server
from test_control import TOKEN, config

from healthdns.supervisor import httpd

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("limits")
    backend = Backend()
    backend.up()
    srv = Server([], tmp, config(backend.port, tmp / "o.json")).start()
    yield srv
    srv.stop()
    backend.close()


def endpoint(server: Server) -> tuple[str, int]:
    host, port = server.control.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def reset_peak(pid: int) -> None:
    """Make the process's peak RSS (VmHWM) its RSS of now (proc(5), clear_refs 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak(pid: int) -> int:
    """The process's peak RSS since `reset_peak`, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


class Answer:
    """Reads whatever the server sends on `sock`, in a thread, until it closes or resets."""

    def __init__(self, sock: socket.socket) -> None:
        self.data = b""
        self.first_at: float | None = None
        self._sock = sock
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while chunk := self._sock.recv(65536):
                self.first_at = self.first_at or time.monotonic()
                self.data += chunk
        except OSError:
            pass  # reset after its answer, or the test's timeout

    def wait(self, timeout: float) -> bytes:
        self._thread.join(timeout)
        return self.data


def exchange(server: Server, data: bytes, timeout: float = 3.0,
             source: str = "127.0.0.1") -> bytes:
    """Send `data`, and return what comes back until the server closes (or `timeout`)."""
    with socket.create_connection(endpoint(server), timeout=timeout,
                                  source_address=(source, 0)) as sock:
        answer = Answer(sock)
        try:
            sock.sendall(data)
        except OSError:
            pass  # closed after its answer: the rest was not wanted
        return answer.wait(timeout)


def status_line(answer: bytes) -> str:
    return answer.split(b"\r\n", 1)[0].decode()


def test_a_negative_chunk_size_with_megabytes_behind_it_costs_no_memory(server: Server) -> None:
    """Before: `int(b"-1", 16)` passed the size test and the rest was read until EOF."""
    reset_peak(server.pid)
    before = peak(server.pid)
    with socket.create_connection(endpoint(server), timeout=10) as sock:
        answer = Answer(sock)
        started = time.monotonic()
        sent = 0
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n-1\r\n")
            block = b"x" * MIB
            while sent < 48 * MIB:
                sock.sendall(block)
                sent += len(block)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # closed: the server would not read on
        data = answer.wait(15)
    grown = peak(server.pid) - before
    assert grown < 16 * MIB, f"the supervisor grew by {grown / MIB:.0f} MiB"
    assert status_line(data) == "HTTP/1.1 200 OK", data[:200]
    assert b"Connection: close" in data
    assert answer.first_at is not None and answer.first_at - started < 2.0
    assert sent < 48 * MIB, "the server read every byte of an unwanted body"


def test_huge_headers_are_refused_before_they_cost_memory(server: Server) -> None:
    """Before: 100 header lines of 64 KiB each were read and kept, 6.4 MB a connection."""
    reset_peak(server.pid)
    before = peak(server.pid)
    line = b"X-Filler: " + b"a" * (60 * 1024) + b"\r\n"
    socks, answers = [], []
    try:
        for _ in range(24):  # each held open, its headers never ended
            sock = socket.create_connection(endpoint(server), timeout=10)
            socks.append(sock)
            answers.append(Answer(sock))
            try:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + line * 60)
            except OSError:
                pass  # answered and closed after the first long line
        grown = peak(server.pid) - before
        assert grown < 16 * MIB, f"the supervisor grew by {grown / MIB:.0f} MiB"
        for answer in answers:
            assert status_line(answer.wait(5)) == "HTTP/1.1 431 Request Header Fields Too Large"
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize(("headers", "status"), [
    (b"Content-Length: -5\r\n", "400"),
    (b"Content-Length: abc\r\n", "400"),
    (b"Content-Length: \xb2\r\n", "400"),  # a digit to str.isdigit, not to HTTP
    (b"Content-Length: 1\r\nContent-Length: 1\r\n", "400"),
    (b"Content-Length: 5, 5\r\n", "400"),
    (b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "400"),
    (b"Transfer-Encoding: gzip, chunked\r\n", "400"),
    (b"Content-Length: 99999999999999999999999\r\n", "413"),
    (b"Content-Length: 4097\r\n", "413"),
])
def test_bad_body_framing_is_refused_on_any_route(server: Server, headers: bytes,
                                                  status: str) -> None:
    answer = exchange(server, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers
                      + b"\r\n")
    assert status_line(answer).split(" ")[1] == status, answer[:200]
    assert b"Connection: close" in answer


@pytest.mark.parametrize("size_line", [b"-1", b"zz", b"0x10", b" 5", b"123456789", b"+5",
                                       b"5 5"])
def test_a_bad_chunk_size_of_an_authorised_write_is_400(server: Server,
                                                         size_line: bytes) -> None:
    # The body goes on after the size line and is never ended: the answer cannot wait for it.
    answer = exchange(server, b"POST /overrides HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n" + size_line + b"\r\n" + b"{" * 100)
    assert status_line(answer) == "HTTP/1.1 400 Bad Request", answer[:200]


def test_a_chunked_write_within_the_bounds_is_read(server: Server) -> None:
    body = json.dumps({"address": "127.0.0.9", "action": "drain"}).encode()
    answer = exchange(server, b"POST /overrides HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                      b"Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
                      + b"%x;ext=1\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % (len(body), body))
    # Served or not, the body was read and judged: 127.0.0.9 is no address of the config.
    assert status_line(answer) == "HTTP/1.1 400 Bad Request", answer[:300]
    assert b"127.0.0.9" in answer


@pytest.mark.parametrize(("request_head", "status"), [
    (b"GET /healthz HTTP/1.1\r\n", "200"),
    (b"GET /status HTTP/1.1\r\n", "200"),
    (b"POST /overrides HTTP/1.1\r\n", "401"),  # no token: the body would be thrown away
    (b"DELETE /overrides/127.0.0.1 HTTP/1.1\r\n", "401"),
    (b"PUT /status HTTP/1.1\r\n", "405"),
    (b"GET /nowhere HTTP/1.1\r\n", "404"),
])
def test_a_body_nobody_wants_is_not_waited_for(server: Server, request_head: bytes,
                                               status: str) -> None:
    """Before: the endpoint read the body of a GET or a refused write (here: never sent)."""
    started = time.monotonic()
    answer = exchange(server, request_head + b"Host: 127.0.0.1\r\nContent-Length: 4000\r\n\r\n",
                      timeout=5)
    assert status_line(answer).split(" ")[1] == status, answer[:200]
    assert b"Connection: close" in answer
    assert time.monotonic() - started < 3.0


def test_100_continue_only_for_a_body_that_will_be_read(server: Server) -> None:
    head = (b"POST /overrides HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
            b"Content-Length: 2\r\n")
    refused = exchange(server, head + b"\r\n")
    assert status_line(refused) == "HTTP/1.1 401 Unauthorized", refused[:200]
    with socket.create_connection(endpoint(server), timeout=5) as sock:
        sock.sendall(head + b"Authorization: Bearer " + TOKEN.encode() + b"\r\n\r\n")
        assert read_answer(sock) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"[]")
        assert read_answer(sock).endswith(b"the body must be a JSON object\"}")


def read_answer(sock: socket.socket) -> bytes:
    """One answer on a kept-alive connection: its head, and as much body as it says."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(1) or b"\r\n\r\n"  # a byte at a time: never into the next one
    head = data.decode("latin-1").lower()
    length = int(head.split("content-length: ", 1)[1].split("\r\n", 1)[0]) \
        if "content-length: " in head else 0
    while len(data) < len(head) + length and (chunk := sock.recv(len(head) + length - len(data))):
        data += chunk
    return data


def test_curl_is_refused_a_large_body_without_a_reset(server: Server, tmp_path: Path) -> None:
    """The answer comes before the body; curl reads it, not a reset of the unread rest."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    body = tmp_path / "body"
    body.write_bytes(b"x" * (3 * MIB))
    done = subprocess.run([curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                           "--data-binary", f"@{body}", server.control + "/overrides"],
                          capture_output=True, text=True, timeout=20, check=False)
    assert (done.returncode, done.stdout) == (0, "413"), done.stderr


# --- probes and idle clients --------------------------------------------------------------------


def get(server: Server, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(*endpoint(server), timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_idle_keep_alive_clients_lock_out_neither_probes_nor_readers(server: Server) -> None:
    """Before: 128 kept-alive connections held every place, and /healthz answered 503."""
    held = []
    try:
        for i in range(160):  # five clients, 32 connections each
            connection = http.client.HTTPConnection(*endpoint(server), timeout=5,
                                                    source_address=(f"127.0.0.{2 + i % 5}", 0))
            connection.request("GET", "/readyz")
            connection.getresponse().read()  # answered, and kept alive: idle
            held.append(connection)
        for path in ("/healthz", "/readyz", "/status", "/metrics", "/healthz"):
            code, body = get(server, path)
            assert code == 200, (path, body[:200])
    finally:
        for connection in held:
            connection.close()


def test_requests_in_progress_on_every_place_leave_probes_answered(server: Server) -> None:
    """Every place held by a request that has not ended (a slow client, each from one of four
    addresses), and the overflow too, from the probe's own address: a probe on a new
    connection is still answered. Before: 503."""
    held = []
    try:
        for i in range(httpd.LIMITS.connections + 2 * httpd.LIMITS.overflow):
            source = f"127.0.0.{10 + i % 4}" if i < httpd.LIMITS.connections else "127.0.0.1"
            sock = socket.create_connection(endpoint(server), timeout=5,
                                            source_address=(source, 0))
            sock.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            held.append(sock)
        assert get(server, "/healthz") == (200, b"ok\n")
        code, body = get(server, "/readyz")
        assert code == 200, body
    finally:
        for sock in held:
            sock.close()


# --- the parsing rules, on the module itself ----------------------------------------------------


@pytest.mark.parametrize(("head", "status"), [
    (b"GET / HTTP/1.1\r\n" + b"X-A: 1\r\n" * httpd.MAX_HEADERS + b"\r\n", None),
    (b"GET / HTTP/1.1\r\n" + b"X-A: 1\r\n" * (httpd.MAX_HEADERS + 1) + b"\r\n", 431),
    (b"GET /" + b"a" * httpd.MAX_LINE + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nX-A: " + b"a" * httpd.MAX_LINE + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\n" + (b"X-A: " + b"a" * 4000 + b"\r\n") * 5 + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: x\r\n", 400),  # the stream ends inside the head
])
def test_the_head_is_bounded_line_by_line_and_in_all(head: bytes, status: int | None) -> None:
    rfile = io.BufferedReader(io.BytesIO(head))  # type: ignore[arg-type]
    if status is None:
        found = httpd.read_head(rfile)
        assert found is not None and found[0] + found[1] == head
        return
    with pytest.raises(httpd.RequestError) as raised:
        httpd.read_head(rfile)
    assert raised.value.status == status


@pytest.mark.parametrize(("body", "read"), [
    (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
    (b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
    (b"5\nhello\n0\n\n", b"hello"),
    (b"A \r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n", b"0123456789"),
    (b"1000\r\n" + b"a" * 4096 + b"\r\n0\r\n\r\n", b"a" * 4096),
    (b"1001\r\n" + b"a" * 4097 + b"\r\n0\r\n\r\n", 413),
    (b"800\r\n" + b"a" * 2048 + b"\r\n801\r\n", 413),  # the sum counts
    (b"-1\r\n" + b"a" * 100, 400),
    (b"5\r\nhel", 400),
    (b"5\r\nhelloXX0\r\n\r\n", 400),
    (b"5\r\nhello\r\n0\r\n" + b"X-T: 1\r\n" * 100, 400),  # trailers without end
])
def test_chunked_bodies(body: bytes, read: bytes | int) -> None:
    rfile = io.BufferedReader(io.BytesIO(body))  # type: ignore[arg-type]
    if isinstance(read, bytes):
        assert httpd.read_body(rfile, httpd.CHUNKED) == read
        return
    with pytest.raises(httpd.RequestError) as raised:
        httpd.read_body(rfile, httpd.CHUNKED)
    assert raised.value.status == read
