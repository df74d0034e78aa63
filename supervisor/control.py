"""The control endpoint: HTTP on its own address, served by threads of its own.

`ControlServer.start` binds (so a busy port is an error at start, and port 0 is resolved) and
runs the standard library's `http.server` in a daemon thread, one more thread per connection
(at most `MAX_CONNECTIONS`). The supervisor loop is never touched by a client: reads serve
the immutable `status.View` the supervisor last assigned to `view`; a write request is queued
(`requests`) with a future, the supervisor's wakeup socket is poked, and the loop applies it
and answers through the future. A slow or hostile client holds at most its own connection,
and that for `REQUEST_TIMEOUT` seconds per request.

Not aiohttp (issue #12): it and asyncio cost the supervisor about 12 MiB for one endpoint
that sees a scrape a second, while `http.server` is loaded anyway (by prometheus_client).

Routes: `/healthz`, `/readyz`, `/metrics`, `/status`, `/explain?name=N&type=T`, `/` (the
status page), and `GET/POST /overrides`, `DELETE /overrides/{address or name}`, `POST /reload` (writes need
`Authorization: Bearer`). A GET route answers HEAD too; a known path with another method is
405 with `Allow`; an unknown path 404.
"""

from __future__ import annotations

import concurrent.futures
import hmac
import io
import json
import logging
import queue
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from healthdns.shared.config import format_endpoint
from healthdns.supervisor import explain, status
from healthdns.supervisor.status import Catalog, View

log = logging.getLogger("healthdns.supervisor")

HEARTBEAT_LIMIT = 5.0  # /healthz fails when the supervisor loop has not turned for this long
STATS_LIMIT = 3.0  # /readyz: a responder silent for this long does not count as serving
WRITE_TIMEOUT = 5.0  # seconds a write waits for the supervisor loop
MAX_BODY = 4096  # bytes of a write request
# Seconds a connection has for each request, from the end of the previous answer to the end
# of the request's body (idle keep-alive time included), and to take in each answer: a
# client that trickles its bytes is cut then, not kept for as long as it trickles.
REQUEST_TIMEOUT = 10.0
MAX_CONNECTIONS = 128  # one thread each; the next is answered 503 and closed
POLL_INTERVAL = 0.2  # how soon `stop` ends the accepting thread
TEXT, JSON = "text/plain; charset=utf-8", "application/json; charset=utf-8"
HTML = "text/html; charset=utf-8"
_BUSY_TEXT = b"too many control connections\n"
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_TEXT), _BUSY_TEXT))


@dataclass(frozen=True)
class Request:
    """A write call for the supervisor loop: ("set", fields), ("remove", {"key": K}), K an
    address or a name, or ("reload", {})."""

    op: str
    fields: dict[str, Any]
    done: concurrent.futures.Future[dict[str, Any]]


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = TEXT
    headers: tuple[tuple[str, str], ...] = ()


class BodyTooLarge(Exception):
    """A request body over MAX_BODY: `size` is what was seen of it."""

    def __init__(self, size: int) -> None:
        super().__init__(f"Maximum request body size {MAX_BODY} exceeded, actual body size "
                         f"{size}")


class ControlServer:
    """One endpoint; `view` and `heartbeat` are assigned by the supervisor loop only."""

    def __init__(self, host: str, port: int, token: str | None, known: Catalog,
                 wakeup: socket.socket) -> None:
        self.view = View()
        self.heartbeat = time.monotonic()
        self.requests: queue.SimpleQueue[Request] = queue.SimpleQueue()
        self._token = token
        self._known = known
        self._wakeup = wakeup
        # The last /metrics body and the view it shows: scrapes between two views (a view
        # changes about once a second) cost no rendering. Scrapes come on threads of their
        # own: the lock keeps a body and its view together.
        self._scraped: View = self.view
        self._body = b""
        self._scrape_lock = threading.Lock()
        self._registry = CollectorRegistry(auto_describe=False)
        self._collector = status.Metrics(lambda: self._scraped, known.targets)
        self._registry.register(self._collector)
        self._http = _Listener(_bind(host, port), self)
        self.address = format_endpoint(*self._http.socket.getsockname()[:2])
        self._thread = threading.Thread(target=self._http.serve_forever, args=(POLL_INTERVAL,),
                                        name="control", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("control: listening on %s", self.address)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._http.shutdown()
        self._http.server_close()
        self._thread.join(2)

    def route(self, method: str, path: str) -> tuple[Callable[[_Handler], Response] | None,
                                                     str]:
        """The handler of `method` on `path` and its key (DELETE's, else ""); or None and the
        methods the path allows ("" for an unknown path), as aiohttp's router answered."""
        segments = [urllib.parse.unquote(s) for s in path.split("?", 1)[0].split("/")[1:]]
        if len(segments) == 2 and segments[0] == "overrides" and segments[1]:
            return (self._remove, segments[1]) if method == "DELETE" else (None, "DELETE")
        reads: dict[str, Callable[[_Handler], Response]] = {
            "/": self._page, "/healthz": self._healthz, "/readyz": self._readyz,
            "/metrics": self._metrics, "/status": self._status, "/overrides": self._overrides,
            "/explain": self._explain}
        writes: dict[str, Callable[[_Handler], Response]] = {"/overrides": self._set,
                                                        "/reload": self._reload}
        joined = "/" + "/".join(segments)
        if method in ("GET", "HEAD") and joined in reads:
            return reads[joined], ""
        if method == "POST" and joined in writes:
            return writes[joined], ""
        allowed = (["GET", "HEAD"] if joined in reads else []) + (
            ["POST"] if joined in writes else [])
        return None, ",".join(sorted(allowed))

    # --- reads ----------------------------------------------------------------------------------

    def _healthz(self, request: _Handler) -> Response:
        age = time.monotonic() - self.heartbeat
        if age > HEARTBEAT_LIMIT:
            return _text(503, f"supervisor loop stalled for {age:.1f} s\n")
        return _text(200, "ok\n")

    def _readyz(self, request: _Handler) -> Response:
        view = self.view
        if view.health_limit and view.health_waiting > view.health_limit:
            return _text(503, f"not ready: a change of health has waited "
                         f"{view.health_waiting:.1f} s to reach the answers (the signer is "
                         f"stuck or restarting; at most {view.health_limit:g} s)\n")
        if not view.current:
            behind = [f"responder {r.slot}: {r.state}, generation {r.generation}"
                      for r in view.responders if r.generation != view.generation
                      or r.state != "running"]
            why = "; ".join(behind) or "no generation published yet"
            return _text(503, f"not ready (generation {view.generation}): {why}\n")
        return _text(200, f"ready: generation {view.generation}\n")

    def _metrics(self, request: _Handler) -> Response:
        with self._scrape_lock:
            view = self.view
            if view is not self._scraped or not self._body:
                self._scraped = view
                self._body = generate_latest(self._registry)
            return Response(200, self._body, CONTENT_TYPE_LATEST)

    def _status(self, request: _Handler) -> Response:
        return _json(200, status.status(self.view, self._known, time.time()))

    def _explain(self, request: _Handler) -> Response:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query)
        try:
            return _json(200, explain.explain(self.view, self._known,
                                              query.get("name", [""])[0],
                                              query.get("type", [None])[0]))
        except explain.ExplainError as e:
            return _error(400, str(e))

    def _overrides(self, request: _Handler) -> Response:
        return _json(200, status.status(self.view, self._known, time.time())["overrides"])

    def _page(self, request: _Handler) -> Response:
        text = resources.files("healthdns.supervisor").joinpath("status.html").read_text()
        return Response(200, text.encode(), HTML)

    # --- writes ---------------------------------------------------------------------------------

    def _set(self, request: _Handler) -> Response:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        try:
            fields = json.loads(request.body())
        except (ValueError, UnicodeDecodeError) as e:
            return _error(400, f"the body is not JSON: {e}")
        if not isinstance(fields, dict):
            return _error(400, "the body must be a JSON object")
        return self._ask("set", fields)

    def _remove(self, request: _Handler) -> Response:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query)
        fields = {"key": request.key.lower().rstrip(".")}
        if "action" in query:  # remove only an override of this action (409 otherwise)
            fields["action"] = query["action"][0]
        return self._ask("remove", fields)

    def _reload(self, request: _Handler) -> Response:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        return self._ask("reload", {})

    def reconfigure(self, token: str | None, known: Catalog) -> None:
        """A reload's token and targets; the listen address needs a restart. Two reference
        assignments, each atomic for the endpoint's threads."""
        self._token = token
        self._known = known
        self._collector.targets = known.targets

    def _refuse(self, request: _Handler) -> Response | None:
        if self._token is None:
            return _error(403, "write calls are off: no [control] token is configured")
        given = request.headers.get("Authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                                 self._token.encode()):
            return _error(401, "a valid 'Authorization: Bearer TOKEN' header is required")
        return None

    def _ask(self, op: str, fields: dict[str, Any]) -> Response:
        done: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        self.requests.put(Request(op, fields, done))
        try:
            self._wakeup.send(b"c")
        except BlockingIOError:
            pass  # the buffer is full of wake-ups already: the loop wakes anyway
        try:
            answer = done.result(WRITE_TIMEOUT)
        except TimeoutError:
            return _error(503, "the supervisor did not take the request in time")
        code = int(answer.pop("status", 200))
        return _json(code, answer)


def _text(code: int, text: str) -> Response:
    return Response(code, text.encode())


def _json(code: int, doc: Any) -> Response:
    # NaN and Infinity are not JSON: a document holding one is a bug, answered 500 and logged,
    # never a body that clients cannot parse.
    try:
        return Response(code, json.dumps(doc, allow_nan=False).encode(), JSON)
    except ValueError as e:
        log.error("control: a document that is not JSON: %s", e)
        return _error(500, f"internal error: {e}")


def _error(code: int, text: str) -> Response:
    return _json(code, {"error": text})


class _Deadline(io.RawIOBase):
    """A connection's reads, each allowed only what is left of the request's time: a socket
    timeout alone bounds one read, and a client that sends a byte a second never meets it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline = time.monotonic() + REQUEST_TIMEOUT

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the request took longer than {REQUEST_TIMEOUT} s")
        self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


class _Handler(BaseHTTPRequestHandler):
    """One connection: HTTP/1.1 with keep-alive, each request routed by `ControlServer.route`."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: no delayed-ACK stall
    error_message_format = "%(code)d: %(message)s"  # parse errors, in aiohttp's words
    error_content_type = TEXT

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # replaced by reads bounded by the request's deadline
        self.raw = _Deadline(self.connection)
        self.rfile = io.BufferedReader(self.raw)
        self.key = ""
        self.unread = False  # a body this request left unread: the connection closes after it

    def handle_one_request(self) -> None:
        self.raw.deadline = time.monotonic() + REQUEST_TIMEOUT
        super().handle_one_request()

    def dispatch(self) -> None:
        control: ControlServer = self.server.control  # type: ignore[attr-defined]
        self.unread = bool(self.headers.get("Content-Length", "0") not in ("", "0")
                           or self.headers.get("Transfer-Encoding"))
        handler, self.key = control.route(self.command, self.path)
        if handler is None and self.key:
            answer = Response(405, b"405: Method Not Allowed", TEXT, (("Allow", self.key),))
        elif handler is None:
            answer = _text(404, "404: Not Found")
        else:
            try:
                answer = handler(self)
            except BodyTooLarge as e:
                answer = _text(413, str(e))
        if self.unread:  # a body the route did not need (a refused write): read past it
            try:
                self.body()
            except (BodyTooLarge, ValueError):
                pass  # too large or malformed: the connection closes after this answer
        self.send(answer)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = dispatch

    def body(self) -> bytes:
        """The request's body, at most MAX_BODY bytes."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._chunked()
        length = self.headers.get("Content-Length", "0") or "0"
        if not length.isdigit():
            raise ValueError(f"Content-Length {length!r} is not a number")
        if int(length) > MAX_BODY:
            raise BodyTooLarge(int(length))
        self.unread = False
        return self.rfile.read(int(length))

    def _chunked(self) -> bytes:
        body = b""
        while size := int(self.rfile.readline(80).split(b";")[0], 16):
            if len(body) + size > MAX_BODY:
                raise BodyTooLarge(len(body) + size)
            body += self.rfile.read(size)
            self.rfile.readline(3)  # the CRLF after each chunk
        while self.rfile.readline(MAX_BODY) not in (b"\r\n", b"\n", b""):
            pass  # trailer fields: none is used
        self.unread = False
        return body

    def send(self, answer: Response) -> None:
        self.connection.settimeout(REQUEST_TIMEOUT)  # a client that reads nothing is cut too
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers:
            self.send_header(name, value)
        if self.unread:  # the rest of the body would be read as the next request
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log, as before

    def log_error(self, format: str, *args: Any) -> None:
        log.debug("control: %s: " + format, self.client_address[0], *args)


class _Listener(ThreadingHTTPServer):
    """Accepts on the socket `_bind` made; one thread per connection, `MAX_CONNECTIONS` at
    most, so that a flood of connections costs threads up to a bound and no more."""

    daemon_threads = True
    block_on_close = False  # keep no list of the threads: stop does not wait for clients

    def __init__(self, sock: socket.socket, control: ControlServer) -> None:
        super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()  # the one socketserver made; ours is bound already
        self.socket = sock
        self.control = control
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            _turn_away(request)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("control: the connection from %s failed", client_address,
                  exc_info=True)  # noqa: LOG014 - socketserver calls this in its except


def _turn_away(sock: socket.socket) -> None:
    """Tell a connection over the cap why it is closed; never wait for it to read."""
    sock.setblocking(False)
    try:
        sock.send(BUSY)
    except OSError:
        pass  # it is closed anyway


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock
