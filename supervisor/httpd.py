"""HTTP/1.1 for the control endpoint: the standard library's `http.server`, with every size and
every wait bounded, connections admitted by `connections.Connections`, and TLS when configured.

What one request may take before it is refused and its connection closed:

* its head: MAX_LINE per line (414 for the request line, 431 for a header), MAX_HEADERS
  header lines and MAX_HEAD in all (431), read by `read_head` before the standard library
  parses it. The library's own bounds, 100 header lines of 64 KiB, let one connection hold
  6.4 MB (0.8 GB at 128 connections); a control client sends a few hundred bytes.
* its body: framed by one `Content-Length` of digits, or by `Transfer-Encoding: chunked` alone
  (both, another coding, or two lengths: 400; RFC 9112 6.3 calls a message with both a
  smuggling attempt), MAX_BODY at most (413), each chunk size 1 to 8 hex digits. All of it is
  checked before a byte of the body is read, and the body is read only when the route asks for
  it (`Request.body`: an authorised write). A request whose body is not read is answered
  with `Connection: close` and not read on: the connection lingers, draining what still
  arrives into a fixed buffer for `Limits.linger` seconds at most, so that the client reads
  the answer rather than a reset (Apache's and nginx's lingering close).
* its time: `Limits.request_timeout` from the end of the previous answer (or the accept) to
  the end of its body, across all its reads (`_Reader`); the TLS handshake counts too.

A connection beyond the caps (when none is idle to make room) is not turned away: it goes to
a small overflow table (`Limits.overflow` places) and gets `Limits.probe_timeout` to send one
request, which is answered when it is a probe (`App.probe`: /healthz, /readyz) and with 503
otherwise. When the overflow is full, its oldest connection is closed for the new one, first
come first out: a probe, which sends its request at once, is answered unless other clients open
`Limits.overflow` connections in the few milliseconds it takes, and a liveness probe gets its
answer whatever the served clients hold.
"""

from __future__ import annotations

import email.message
import io
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Protocol

from healthdns.supervisor.connections import Connection, Connections, client_key

log = logging.getLogger("healthdns.supervisor")

MAX_LINE = 8 * 1024  # the request line, and each header line
MAX_HEAD = 16 * 1024  # the request line and every header line together
MAX_HEADERS = 64
MAX_BODY = 4096  # a write request's JSON is a few hundred bytes
MAX_CHUNK_LINE = 256  # a chunk's size line, extensions included
MAX_LINGER_BYTES = 1024 * 1024  # drained at most from a closing connection
CHUNKED = -1
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,8})[ \t]*(?:;[^\r\n]*)?\r?\n")
_DIGITS = re.compile(r"[0-9]+")
TEXT = "text/plain; charset=utf-8"
_BUSY_TEXT = b"too many control connections\n"
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_TEXT), _BUSY_TEXT))
_PLAIN_TEXT = b"400: this endpoint speaks HTTPS only\n"
PLAIN_TO_TLS = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (len(_PLAIN_TEXT), _PLAIN_TEXT))


@dataclass(frozen=True)
class Limits:
    connections: int = 128  # served at once, one thread each
    per_client: int = 32  # of those, from one IPv4 address or IPv6 /64
    overflow: int = 16  # connections beyond the caps whose request is read for a probe
    request_timeout: float = 10.0  # seconds for each request (see the module's docstring)
    probe_timeout: float = 1.0  # seconds an overflow connection has to send its request
    linger: float = 1.0  # seconds a closing connection is drained at most
    grace: float = 1.0  # seconds a new connection is not closed for another (see connections)


LIMITS = Limits()


Pieces = tuple[bytes | bytearray | memoryview, ...]


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = TEXT
    headers: tuple[tuple[str, str], ...] = ()
    tail: Pieces = ()  # sent after `body` as they are, one after another: a rendering kept
    # for many clients, never copied nor joined


class RequestError(Exception):
    """A request answered `status` with `text`; its connection is closed after the answer."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # the path and query, as sent
    version: str  # "HTTP/1.1"
    headers: email.message.Message
    local: tuple[str, int]  # the address the connection came in on
    body: Callable[[], bytes]  # reads the body (raises RequestError); b"" without one


class App(Protocol):
    def respond(self, request: Request) -> Response: ...

    def probe(self, request: Request) -> Response | None:
        """The answer to a probe route; None: `request` is not a probe."""


def read_head(rfile: io.BufferedIOBase) -> tuple[bytes, bytes] | None:
    """The request line and the header lines (with the empty line that ends them) of the next
    request, within the bounds; None at the end of the stream before a byte of it."""
    line = rfile.readline(MAX_LINE + 1)
    if not line:
        return None
    if len(line) > MAX_LINE:
        raise RequestError(414, f"the request line is longer than {MAX_LINE} bytes")
    fields: list[bytes] = []
    size = len(line)
    while True:
        field = rfile.readline(MAX_LINE + 1)
        size += len(field)
        if len(field) > MAX_LINE or size > MAX_HEAD or len(fields) > MAX_HEADERS:
            raise RequestError(431, f"the request's head is over {MAX_HEADERS} lines of "
                               f"{MAX_LINE} bytes, or {MAX_HEAD} bytes in all")
        if not field.endswith(b"\n"):
            raise RequestError(400, "the request ends inside its head")
        fields.append(field)
        if field in (b"\r\n", b"\n"):
            return line, b"".join(fields)


def framing(headers: email.message.Message) -> int | None:
    """How the body is framed: None (no body), its length, or CHUNKED."""
    codings = [c.strip().lower() for v in headers.get_all("Transfer-Encoding", [])
               for c in str(v).split(",")]
    lengths = [str(v).strip() for v in headers.get_all("Content-Length", [])]
    if codings:
        if lengths:
            raise RequestError(400, "Transfer-Encoding and Content-Length together")
        if codings != ["chunked"]:
            raise RequestError(400, f"Transfer-Encoding {', '.join(codings)!r}: only "
                               "'chunked' is accepted")
        return CHUNKED
    if not lengths:
        return None
    if len(lengths) > 1 or not _DIGITS.fullmatch(lengths[0]):
        raise RequestError(400, f"Content-Length {', '.join(lengths)!r} is not one number")
    digits = lengths[0].lstrip("0")
    if len(digits) > 9 or int(digits or "0") > MAX_BODY:
        raise RequestError(413, f"the body is over {MAX_BODY} bytes (Content-Length "
                           f"{lengths[0][:20]})")
    return int(digits or "0") or None


def read_body(rfile: io.BufferedIOBase, size: int) -> bytes:
    """A body of `size` bytes, or a chunked one (`size` CHUNKED) of at most MAX_BODY bytes."""
    if size != CHUNKED:
        whole = rfile.read(size)
        if len(whole) < size:
            raise RequestError(400, "the body is shorter than its Content-Length")
        return whole
    body = bytearray()
    while True:
        line = rfile.readline(MAX_CHUNK_LINE + 1)
        found = _CHUNK_SIZE.fullmatch(line)
        if found is None:
            raise RequestError(400, f"{line[:40]!r} is not a chunk size line (1 to 8 hex "
                               "digits)")
        chunk = int(found[1], 16)
        if chunk == 0:
            break
        if len(body) + chunk > MAX_BODY:
            raise RequestError(413, f"the body is over {MAX_BODY} bytes")
        data = rfile.read(chunk)
        if len(data) < chunk or rfile.readline(3) not in (b"\r\n", b"\n"):
            raise RequestError(400, "a chunk is shorter than its size, or not ended by CRLF")
        body += data
    read_trailers(rfile)
    return bytes(body)


def read_trailers(rfile: io.BufferedIOBase) -> None:
    """Skip the trailer fields after the last chunk (none is used), within the head's bounds."""
    size = 0
    for _ in range(MAX_HEADERS + 1):
        line = rfile.readline(MAX_LINE + 1)
        size += len(line)
        if len(line) > MAX_LINE or size > MAX_HEAD or not line.endswith(b"\n"):
            break
        if line in (b"\r\n", b"\n"):
            return
    raise RequestError(400, "the trailer fields are too long, or never end")


class _Reader(io.RawIOBase):
    """A connection's reads, each allowed only what is left of the request's time (a socket
    timeout alone bounds one read, and a client that sends a byte a second never meets it);
    the first byte of a request calls `on_request`, and its False ends the stream."""

    def __init__(self, sock: socket.socket, on_request: Callable[[], bool]) -> None:
        self.sock = sock
        self.deadline = 0.0
        self.waiting = True  # for the first byte of a request
        self.on_request = on_request

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request took too long")
        self.sock.settimeout(left)
        size = self.sock.recv_into(buffer)
        if size and not self.started():
            return 0
        return size

    def started(self) -> bool:
        """A request has begun; False: the connection was closed for another."""
        if not self.waiting:
            return True
        self.waiting = False
        return self.on_request()


class Handler(BaseHTTPRequestHandler):
    """One connection: requests read within `Limits`, each answered by the `App`."""

    protocol_version = "HTTP/1.1"
    server_version = "healthdns"
    disable_nagle_algorithm = True  # headers and body go in two writes: no delayed-ACK stall
    error_message_format = "%(code)d: %(message)s"  # the standard library's parse errors
    error_content_type = TEXT

    def __init__(self, conn: Connection, address: Any, listener: Listener,
                 table: Connections) -> None:
        self.conn = conn
        self.listener = listener
        self.table = table  # that admitted `conn`
        self.probe_only = table is listener.overflow  # one request, probes only
        self.linger = False  # unread bytes may follow: drain them before the close
        self.pending: int | None = None  # the body not read yet: its length, or CHUNKED
        self.expect_continue = False
        self.begun = False  # a request was read on this connection
        super().__init__(conn.sock, address, listener)

    def version_string(self) -> str:
        return self.server_version  # not the Python version: no use to a client

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # replaced by reads bounded by the request's deadline
        self.raw = _Reader(self.connection, self._started)
        self.rfile = io.BufferedReader(self.raw)

    def handle(self) -> None:
        limits = self.listener.limits
        # The first request's time includes the handshake; an overflow connection has one.
        self.raw.deadline = time.monotonic() + (limits.probe_timeout if self.probe_only
                                                else limits.request_timeout)
        if isinstance(self.connection, ssl.SSLSocket) and not self._handshake():
            return
        self.handle_one_request()
        while not self.close_connection:
            self.raw.deadline = time.monotonic() + limits.request_timeout
            self.handle_one_request()

    def _handshake(self) -> bool:
        assert isinstance(self.connection, ssl.SSLSocket)
        try:
            self.connection.settimeout(max(0.0, self.raw.deadline - time.monotonic()))
            self.connection.do_handshake()
        except ssl.SSLError as e:
            if e.reason == "HTTP_REQUEST":  # OpenSSL saw plain HTTP: say so, as nginx does
                self.linger = True
                _send_plain(self.connection, PLAIN_TO_TLS)
            log.debug("control: TLS handshake with %s failed: %s", self.client_address[0], e)
            return False
        except (OSError, ValueError) as e:
            log.debug("control: TLS handshake with %s failed: %s", self.client_address[0], e)
            return False
        return True

    def handle_one_request(self) -> None:
        self.close_connection = True  # until a request is answered in full
        self.pending, self.expect_continue = None, False
        self.raw.waiting = True
        # Idle between requests; before the first, as its admission said (after its grace).
        if self.begun and not self.table.idle(self.conn):
            return
        self.begun = True
        try:
            head = read_head(self.rfile)
        except RequestError as e:
            self.requestline, self.command, self.request_version = "", "", "HTTP/1.1"
            self._refuse(e)
            return
        except OSError as e:  # the deadline, or the peer's reset
            log.debug("control: %s: %s", self.client_address[0], e)
            return
        if head is None or not self.raw.started():  # ended, or closed for another
            return
        self.raw_requestline, fields = head
        real, self.rfile = self.rfile, io.BytesIO(fields)
        try:
            parsed = self.parse_request()
        finally:
            self.rfile = real
        if not parsed:
            self.linger = True  # the standard library answered, and the body is unread
            return
        self._answer()

    def _started(self) -> bool:
        return self.table.busy(self.conn)

    def _answer(self) -> None:
        try:
            self.pending = framing(self.headers)
            request = Request(self.command, self.path, self.request_version, self.headers,
                              self.connection.getsockname()[:2], self._body)
            app = self.listener.app
            answer = app.probe(request) if self.probe_only else app.respond(request)
        except RequestError as e:
            self._refuse(e)
            return
        if answer is None:  # an overflow connection asked for more than a probe
            answer = Response(503, _BUSY_TEXT)
        if self.pending is not None or self.probe_only:
            self.close_connection = True
            self.linger = self.pending is not None
        self.send(answer)
        self.wfile.flush()

    def _body(self) -> bytes:
        if self.pending is None:
            return b""
        if self.expect_continue:  # said only now: a refused request's body is never sent
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.flush()
        body = read_body(self.rfile, self.pending)
        self.pending = None
        return body

    def handle_expect_100(self) -> bool:
        self.expect_continue = True
        return True

    def _refuse(self, error: RequestError) -> None:
        self.linger = True
        self.close_connection = True
        self.send(Response(error.status, f"{error.status}: {error.text}\n".encode()))

    def send(self, answer: Response) -> None:
        self.connection.settimeout(self.listener.limits.request_timeout)  # a client that
        self.send_response(answer.status)  # reads nothing is cut too
        self.send_header("Content-Type", answer.content_type)
        size = len(answer.body) + sum(len(piece) for piece in answer.tail)
        self.send_header("Content-Length", str(size))
        for name, value in answer.headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)
            for piece in answer.tail:
                self.wfile.write(piece)

    def finish(self) -> None:
        super().finish()
        if self.linger:
            self.table.idle(self.conn)  # closable for another meanwhile
            _linger(self.connection, self.listener.limits.linger)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log: a scrape or a probe a second would fill the log

    def log_error(self, format: str, *args: Any) -> None:
        log.debug("control: %s: " + format, self.client_address[0], *args)


class Listener(HTTPServer):
    """Accepts on the socket it is given; one thread per admitted connection (see
    `connections`), and up to `Limits.overflow` more that may answer a probe."""

    def __init__(self, sock: socket.socket, app: App, limits: Limits,
                 tls: ssl.SSLContext | None) -> None:
        # `_serve` makes each Handler itself: socketserver's handler class is never used.
        super().__init__(sock.getsockname()[:2], BaseHTTPRequestHandler, bind_and_activate=False)
        self.socket.close()  # the one socketserver made; ours is bound already
        self.socket = sock
        self.app = app
        self.limits = limits
        self.tls = tls  # assigned anew by a reload; each connection takes the one of its accept
        self.connections = Connections(limits.connections, limits.per_client, limits.grace)
        self.overflow = Connections(limits.overflow, limits.overflow, oldest=True)

    def process_request(self, request: Any, client_address: Any) -> None:
        sock: socket.socket = request
        tls = self.tls
        if tls is not None:  # no I/O yet: the handshake is the connection's thread's
            sock = tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        conn = Connection(sock, client_key(client_address[0]))
        table = self.connections
        admitted, closed = table.admit(conn)
        if not admitted:  # the overflow's oldest makes room for this one
            table = self.overflow
            admitted, more = table.admit(conn)
            closed += more
        for other in closed:
            _close_for_another(other.sock)
        if not admitted:
            _turn_away(sock)
            sock.close()
            return
        thread = threading.Thread(target=self._serve, args=(conn, client_address, table),
                                  name="control-connection", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: as if over the caps
            self._done(conn, table)

    def _serve(self, conn: Connection, address: Any, table: Connections) -> None:
        try:
            Handler(conn, address, self, table)
        except Exception:  # noqa: BLE001 - one connection's failure, logged; the others go on
            self.handle_error(conn.sock, address)
        finally:
            self._done(conn, table)

    def _done(self, conn: Connection, table: Connections) -> None:
        table.remove(conn)
        conn.sock.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("control: the connection from %s failed", client_address,
                  exc_info=True)  # noqa: LOG014 - called in an except


def _close_for_another(sock: socket.socket) -> None:
    """End an idle connection from the accepting thread: its own thread, blocked in a read,
    sees the end of the stream and closes it (closing it here could reuse its descriptor)."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # TCP's, also under TLS
    except OSError:
        pass  # closed by its peer meanwhile


def _send_plain(sock: socket.socket, data: bytes) -> None:
    """Send on the TCP connection under a TLS socket whose handshake failed."""
    try:
        socket.socket.sendall(sock, data)
    except OSError:
        pass  # gone already


def _turn_away(sock: socket.socket) -> None:
    """Tell a connection over every cap why it is closed; never wait for it to read."""
    if isinstance(sock, ssl.SSLSocket):
        return  # no handshake yet: nothing can be said
    sock.setblocking(False)
    try:
        sock.send(BUSY)
    except OSError:
        pass  # it is closed anyway


def _linger(sock: socket.socket, seconds: float) -> None:
    """Half-close, then drain what the client still sends (for `seconds` and MAX_LINGER_BYTES
    at most, into one small buffer), so that the close does not reset the answer away."""
    deadline = time.monotonic() + seconds
    buffer = bytearray(16 * 1024)
    drained = 0
    try:
        socket.socket.shutdown(sock, socket.SHUT_WR)
        while drained < MAX_LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            size = socket.socket.recv_into(sock, buffer)
            if not size:
                return
            drained += size
    except OSError:
        pass  # the deadline, or the peer's reset: close now
