"""The control endpoint: HTTP on its own address, served by threads of its own.

`ControlServer` binds at once (so a busy port is an error at start, and port 0 is resolved)
and serves from a daemon thread that accepts, one more thread per connection (`httpd`). The
supervisor loop is never touched by a client: reads serve the immutable `readout.Readout` the
supervisor last assigned to `readout`; a write request is queued (`requests`) with a future, the
supervisor's wakeup socket is poked, and the loop applies it and answers through the future.

What a client can hold, and why probes are still answered (see `httpd` and `connections`):
every size in a request is bounded before it is read, and a body is read only for an
authorised write; each request has 10 s. At most 128 connections are served, 32 from one
client (IPv4 address or IPv6 /64). Connections that wait between requests (or have sent
nothing for a second since their accept) are closed, the longest-idle first, when a new one
needs their place, so idle keep-alive clients cannot lock anyone out; and a connection that finds every place busy with a request in progress joins an
overflow of 16 places (its oldest closed for a newer one) with 1 s to send a request, which is
answered when it is `/healthz` or `/readyz` (503 otherwise). A liveness probe, which restarts
the pod when it fails, is thus answered whatever other clients hold, unless they open 16
connections within the few milliseconds the probe takes, or fill the kernel's accept queue.

Rendering costs are paid once, not per client (`Cached`): `/metrics`, `/status` and
`/overrides` are rendered by one request and served from that rendering to every other until
the readout changes, and at scale for a while longer, so that rendering never takes more than a
tenth of a core. `/status` at 20,000 names took 0.26-0.5 s of the supervisor's CPU per
request, and 32 clients polling it stalled the process for seconds (`/healthz` timed out);
now many clients cost what one does.

Who may ask (`_allowed`): the `Host` header must name the address the connection came in on
(with or without the port, `[v6]` in brackets), `localhost` on a loopback address, or one of
`[control] allowed_hosts`, so a web page whose name is rebound to 127.0.0.1 gets 421 (DNS
rebinding); with `read_token`, every read needs it (or the write token) as a bearer token, or
as the password of HTTP Basic authentication, which a browser asks for (the status page);
writes need the write token as a bearer token only (a browser sends cached Basic credentials
along with a request another site makes it send). `/healthz` and `/readyz` need neither:
they say no more than whether the server runs. With `cert` and `key`, the endpoint speaks
HTTPS only.

Not aiohttp: it and asyncio cost the supervisor about 12 MiB for one endpoint
that sees a scrape a second, while `http.server` is loaded anyway (by prometheus_client).

Routes: `/healthz`, `/readyz`, `/metrics`, `/status`, `/explain?name=N&type=T&client=C`, `/` (the
status page), and `GET/POST /overrides`, `DELETE /overrides/{address or name}`, `POST /reload` (writes need
`Authorization: Bearer`). A GET route answers HEAD too; a known path with another method is
405 with `Allow`; an unknown path 404.
"""

from __future__ import annotations

import base64
import binascii
import concurrent.futures
import hmac
import ipaddress
import json
import logging
import queue
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Generic, TypeVar

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from healthdns.shared.config import ControlSpec, format_endpoint
from healthdns.supervisor import explain, explainmaps, httpd, metrics, status
from healthdns.supervisor.catalog import Catalog
from healthdns.supervisor.httpd import Limits, Pieces, Response
from healthdns.supervisor.httpd import Request as HttpRequest
from healthdns.supervisor.readout import Readout

log = logging.getLogger("healthdns.supervisor")

HEARTBEAT_LIMIT = 5.0  # /healthz fails when the supervisor loop has not turned for this long
STATS_LIMIT = 3.0  # /readyz: a responder silent for this long does not count as serving
WRITE_TIMEOUT = 5.0  # seconds a write waits for the supervisor loop
POLL_INTERVAL = 0.2  # how soon `stop` ends the accepting thread
REUSE = 10  # a rendering serves new readouts while younger than this many times its CPU time
PROBES = ("/healthz", "/readyz")
TEXT, JSON = httpd.TEXT, "application/json; charset=utf-8"
HTML = "text/html; charset=utf-8"
READ_CHALLENGE = (("WWW-Authenticate", 'Basic realm="healthdns", charset="UTF-8"'),
                  ("WWW-Authenticate", 'Bearer realm="healthdns"'))
WRITE_CHALLENGE = (("WWW-Authenticate", 'Bearer realm="healthdns"'),)

T = TypeVar("T")
Route = Callable[[HttpRequest], Response]


@dataclass(frozen=True)
class Request:
    """A write call for the supervisor loop: ("set", fields), ("remove", {"key": K}), K an
    address or a name, or ("reload", {})."""

    op: str
    fields: dict[str, Any]
    done: concurrent.futures.Future[dict[str, Any]]


class Cached(Generic[T]):
    """One rendering, made by the first request that needs it and served to every other: while
    the readout and catalog are the ones it shows, and after a new readout while it is younger than
    REUSE times the CPU it took (the loop may assign a readout every second; a rendering of
    20,000 names costs a few tenths of a second, so rendering never takes more than about a
    tenth of a core, however many poll). A catalog of a reload, or `renew` after a write,
    makes the next request render again: a client sees its own write at once.

    Requests come on threads of their own: the lock keeps a rendering with what it shows, and
    makes the others wait for it instead of rendering too."""

    def __init__(self, render: Callable[[Readout, Catalog], T],
                 clock: Callable[[], float] = time.monotonic,
                 cpu: Callable[[], float] = time.thread_time) -> None:
        self._render = render
        self._clock = clock
        self._cpu = cpu
        self._lock = threading.Lock()
        self._made: tuple[Readout, Catalog, T] | None = None
        self._until = 0.0  # reused for a new readout until then

    def get(self, readout: Readout, known: Catalog) -> T:
        with self._lock:
            made = self._made
            if made is not None and made[1] is known and (
                    made[0] is readout or self._clock() < self._until):
                return made[2]
            started = self._cpu()
            rendered = self._render(readout, known)
            self._until = self._clock() + REUSE * (self._cpu() - started)
            self._made = (readout, known, rendered)
            return rendered

    def renew(self) -> None:
        """The next request renders the readout of its time."""
        with self._lock:
            self._until = 0.0


class ControlServer:
    """One endpoint; `readout` and `heartbeat` are assigned by the supervisor loop only."""

    def __init__(self, spec: ControlSpec, known: Catalog, wakeup: socket.socket,
                 limits: Limits = httpd.LIMITS) -> None:
        endpoint = spec.endpoint()
        assert endpoint is not None, "the endpoint is off"
        self.readout = Readout()
        self.heartbeat = time.monotonic()
        self.requests: queue.SimpleQueue[Request] = queue.SimpleQueue()
        self._spec = spec
        self._known = known
        self._wakeup = wakeup
        self._scraped = self.readout  # the readout the metrics collector shows while rendering
        self._registry = CollectorRegistry(auto_describe=False)
        self._collector = metrics.Metrics(lambda: self._scraped, known.targets)
        self._registry.register(self._collector)
        self._metrics = Cached(self._render_metrics)
        self._document = status.Document()
        self._maps = explainmaps.Maps()  # compiled when explain first asks for a client
        self._status = Cached(self._render_status)
        self._page_body = resources.files("healthdns.supervisor").joinpath(
            "status.html").read_bytes()
        tls = spec.tls()
        self._http = httpd.Listener(_bind(*endpoint), self, limits, tls)
        self.address = format_endpoint(*self._http.socket.getsockname()[:2])
        self.scheme = "http" if tls is None else "https"
        self._thread = threading.Thread(target=self._http.serve_forever, args=(POLL_INTERVAL,),
                                        name="control", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("control: listening on %s (%s)", self.address, self.scheme)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._http.shutdown()
        self._http.server_close()
        self._thread.join(2)

    def reconfigure(self, spec: ControlSpec, known: Catalog) -> None:
        """A reload's tokens, hosts, certificate and targets; the listen address needs a
        restart. Reference assignments, each atomic for the endpoint's threads; a connection
        keeps the certificate of its accept."""
        if (spec.cert_pem, spec.key_pem) != (self._spec.cert_pem, self._spec.key_pem):
            try:
                self._http.tls = spec.tls()
            except (OSError, ValueError) as e:  # the check loaded it a moment ago
                log.error("control: keeping the certificate in use: the new one does not "
                          "load: %s", e)
        self._spec = spec
        self._known = known
        self._collector.targets = known.targets

    # --- requests -------------------------------------------------------------------------------

    def probe(self, request: HttpRequest) -> Response | None:
        if request.method not in ("GET", "HEAD"):
            return None
        path = _joined(request.target)
        if path == "/healthz":
            return self._healthz()
        if path == "/readyz":
            return self._readyz()
        return None

    def respond(self, request: HttpRequest) -> Response:
        answer = self.probe(request)
        if answer is not None:
            return answer
        refused = self._allowed(request)
        if refused is not None:
            return refused
        route, allowed = self.route(request.method, request.target)
        if route is not None:
            return route(request)
        if allowed:
            return Response(405, b"405: Method Not Allowed", TEXT, (("Allow", allowed),))
        return _text(404, "404: Not Found")

    def route(self, method: str, path: str) -> tuple[Route | None, str]:
        """The handler of `method` on `path` and its key (DELETE's, else ""); or None and the
        methods the path allows ("" for an unknown path), as aiohttp's router answered."""
        segments = _segments(path)
        if len(segments) == 2 and segments[0] == "overrides" and segments[1]:
            key = segments[1]
            return ((lambda r: self._remove(r, key)), key) if method == "DELETE" \
                else (None, "DELETE")
        reads: dict[str, Route] = {
            "/": self._page, "/healthz": lambda r: self._healthz(),
            "/readyz": lambda r: self._readyz(), "/metrics": self._scrape,
            "/status": self._status_json, "/overrides": self._overrides,
            "/explain": self._explain}
        writes: dict[str, Route] = {"/overrides": self._set, "/reload": self._reload}
        joined = "/" + "/".join(segments)
        if method in ("GET", "HEAD") and joined in reads:
            return reads[joined], ""
        if method == "POST" and joined in writes:
            return writes[joined], ""
        allowed = (["GET", "HEAD"] if joined in reads else []) + (
            ["POST"] if joined in writes else [])
        return None, ",".join(sorted(allowed))

    # --- who may ask ----------------------------------------------------------------------------

    def _allowed(self, request: HttpRequest) -> Response | None:
        """None when `request` names this endpoint and, with a read token, carries a token."""
        spec = self._spec
        if not _host_allowed(request, spec.allowed_hosts):
            return _error(421, "the Host header names neither this endpoint's address nor "
                          "one of [control] allowed_hosts")
        if spec.read_token is None:
            return None
        scheme, secret = _credentials(request)
        if scheme in ("bearer", "basic") and _matches(secret, spec.read_token, spec.token):
            return None
        return Response(401, json.dumps({"error": "reads need the read token (or the write "
                                                  "token): 'Authorization: Bearer TOKEN'"})
                        .encode(), JSON, READ_CHALLENGE)

    def _refuse(self, request: HttpRequest) -> Response | None:
        """None when `request` carries the write token as a bearer token."""
        token = self._spec.token
        if token is None:
            return _error(403, "write calls are off: no [control] token is configured")
        scheme, secret = _credentials(request)
        if scheme != "bearer" or not _matches(secret, token):
            return Response(401, json.dumps({"error": "a valid 'Authorization: Bearer TOKEN' "
                                                      "header is required"}).encode(),
                            JSON, WRITE_CHALLENGE)
        return None

    # --- reads ----------------------------------------------------------------------------------

    def _healthz(self) -> Response:
        age = time.monotonic() - self.heartbeat
        if age > HEARTBEAT_LIMIT:
            return _text(503, f"supervisor loop stalled for {age:.1f} s\n")
        return _text(200, "ok\n")

    def _readyz(self) -> Response:
        readout = self.readout
        if readout.health_limit and readout.health_waiting > readout.health_limit:
            return _text(503, f"not ready: a change of health has waited "
                         f"{readout.health_waiting:.1f} s to reach the answers (the signer is "
                         f"stuck or restarting; at most {readout.health_limit:g} s)\n")
        if not readout.current:
            behind = [f"responder {r.slot}: {r.state}, generation {r.generation}"
                      for r in readout.responders if r.generation != readout.generation
                      or r.state != "running"]
            why = "; ".join(behind) or "no generation published yet"
            return _text(503, f"not ready (generation {readout.generation}): {why}\n")
        return _text(200, f"ready: generation {readout.generation}\n")

    def _scrape(self, request: HttpRequest) -> Response:
        return Response(200, self._metrics.get(self.readout, self._known), CONTENT_TYPE_LATEST)

    def _render_metrics(self, readout: Readout, known: Catalog) -> bytes:
        self._scraped = readout  # under the rendering's lock: one scrape renders at a time
        return generate_latest(self._registry)

    def _render_status(self, readout: Readout, known: Catalog) -> tuple[Pieces, bytes]:
        """/status but for its opening brace and "now", in pieces; and /overrides."""
        return (self._document.render(readout, known),
                msgspec.json.encode(status.overrides(readout)))

    def _explain(self, request: HttpRequest) -> Response:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.target).query)
        try:
            return _json(200, explain.explain(self.readout, self._known,
                                              query.get("name", [""])[0],
                                              query.get("type", [None])[0],
                                              query.get("client", [None])[0], self._maps))
        except explain.ExplainError as e:
            return _error(400, str(e))

    def _status_json(self, request: HttpRequest) -> Response:
        rest = self._status.get(self.readout, self._known)[0]
        # The one field that changes between two readouts, put in front of the rendered rest
        # (not copied: 32 clients reading 15 MB at 20,000 names would hold 32 copies).
        return Response(200, b'{"now": ' + json.dumps(time.time()).encode() + b", ",
                        JSON, tail=rest)

    def _overrides(self, request: HttpRequest) -> Response:
        return Response(200, self._status.get(self.readout, self._known)[1], JSON)

    def _page(self, request: HttpRequest) -> Response:
        return Response(200, self._page_body, HTML)

    # --- writes ---------------------------------------------------------------------------------

    def _set(self, request: HttpRequest) -> Response:
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

    def _remove(self, request: HttpRequest, key: str) -> Response:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.target).query)
        fields = {"key": key.lower().rstrip(".")}
        if "action" in query:  # remove only an override of this action (409 otherwise)
            fields["action"] = query["action"][0]
        return self._ask("remove", fields)

    def _reload(self, request: HttpRequest) -> Response:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        return self._ask("reload", {})

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
        self._status.renew()  # the loop assigned the readout with the write before it answered
        self._metrics.renew()
        code = int(answer.pop("status", 200))
        return _json(code, answer)


def _segments(target: str) -> list[str]:
    return [urllib.parse.unquote(s) for s in target.split("?", 1)[0].split("/")[1:]]


def _joined(target: str) -> str:
    return "/" + "/".join(_segments(target))


def _host_allowed(request: HttpRequest, allowed: tuple[str, ...]) -> bool:
    """Whether the Host header names the address the connection came in on (any port given
    must be its port), `localhost` on loopback, or an entry of `allowed` ("*": any)."""
    if "*" in allowed:
        return True
    hosts = request.headers.get_all("Host", [])
    if not hosts:
        return request.version == "HTTP/1.0"  # HTTP/1.1 requires one (RFC 9112 3.2)
    if len(hosts) > 1:
        return False
    host = str(hosts[0]).strip().lower()
    name, port = _split_host(host)
    bare = f"[{name}]" if ":" in name else name
    if host in allowed or bare in allowed:
        return True
    local, local_port = request.local
    if port and port != str(local_port):
        return False
    if name == "localhost":
        return _address(local) is not None and _address(local).is_loopback  # type: ignore[union-attr]
    return _address(name) is not None and _address(name) == _address(local)


def _split_host(host: str) -> tuple[str, str]:
    """("::1", "8053") from "[::1]:8053"; ("name", "") from "name"."""
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        return name, rest.removeprefix(":")
    name, _, port = host.partition(":") if host.count(":") == 1 else (host, "", "")
    return name, port


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address, an IPv4-mapped IPv6 one as IPv4; None for a name."""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _credentials(request: HttpRequest) -> tuple[str, str]:
    """The scheme of the Authorization header (lower case) and its secret: a bearer token, or
    the password of Basic authentication (any user name)."""
    scheme, _, value = str(request.headers.get("Authorization", "")).partition(" ")
    scheme = scheme.lower()
    if scheme != "basic":
        return scheme, value.strip()
    try:
        pair = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return scheme, ""
    return scheme, pair.partition(":")[2]


def _matches(secret: str, *tokens: str | None) -> bool:
    given = secret.encode()
    # Every token compared, so that the time taken says nothing about which one matched.
    return any([hmac.compare_digest(given, t.encode()) for t in tokens if t is not None])  # noqa: C419


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
