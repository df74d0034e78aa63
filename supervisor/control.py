"""The control endpoint: HTTP on its own address, in its own thread with its own event loop.

`ControlServer.start` binds (so a busy port is an error at start, and port 0 is resolved) and
runs aiohttp in a daemon thread. The supervisor loop is never touched by a client: reads serve
the immutable `status.View` the supervisor last assigned to `view`; a write request is queued
(`requests`) with a future, the supervisor's wakeup socket is poked, and the loop applies it
and answers through the future. A slow or hostile client holds at most its own connection.

Routes: `/healthz`, `/readyz`, `/metrics`, `/status`, `/` (the status page), and
`GET/POST /overrides`, `DELETE /overrides/{address or name}`, `POST /reload` (writes need
`Authorization: Bearer`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import json
import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from healthdns.shared.config import format_endpoint
from healthdns.supervisor import status
from healthdns.supervisor.status import Catalog, View

log = logging.getLogger("healthdns.supervisor")

HEARTBEAT_LIMIT = 5.0  # /healthz fails when the supervisor loop has not turned for this long
STATS_LIMIT = 3.0  # /readyz: a responder silent for this long does not count as serving
WRITE_TIMEOUT = 5.0  # seconds a write waits for the supervisor loop
MAX_BODY = 4096  # bytes of a write request


@dataclass(frozen=True)
class Request:
    """A write call for the supervisor loop: ("set", fields), ("remove", {"key": K}), K an
    address or a name, or ("reload", {})."""

    op: str
    fields: dict[str, Any]
    done: concurrent.futures.Future[dict[str, Any]]


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
        # changes about once a second) cost no rendering.
        self._scraped: View = self.view
        self._body = b""
        self._registry = CollectorRegistry(auto_describe=False)
        self._collector = status.Metrics(lambda: self._scraped, known.targets)
        self._registry.register(self._collector)
        self._sock = _bind(host, port)
        self.address = format_endpoint(*self._sock.getsockname()[:2])
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._run, name="control", daemon=True)

    def start(self) -> None:
        ready = threading.Event()
        self._thread.start()
        self._loop.call_soon_threadsafe(ready.set)
        ready.wait(10)
        log.info("control: listening on %s", self.address)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(2)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(2)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
        self._loop.run_until_complete(self._runner.setup())
        site = web.SockSite(self._runner, self._sock)
        self._loop.run_until_complete(site.start())
        self._loop.run_forever()

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_get("/", self._page)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/status", self._status)
        app.router.add_get("/overrides", self._overrides)
        app.router.add_post("/overrides", self._set)
        app.router.add_delete("/overrides/{key}", self._remove)
        app.router.add_post("/reload", self._reload)
        return app

    # --- reads ----------------------------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        age = time.monotonic() - self.heartbeat
        if age > HEARTBEAT_LIMIT:
            return web.Response(status=503, text=f"supervisor loop stalled for {age:.1f} s\n")
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        view = self.view
        if not view.current:
            behind = [f"responder {r.slot}: {r.state}, generation {r.generation}"
                      for r in view.responders if r.generation != view.generation
                      or r.state != "running"]
            why = "; ".join(behind) or "no generation published yet"
            return web.Response(status=503, text=f"not ready (generation {view.generation}): "
                                f"{why}\n")
        return web.Response(text=f"ready: generation {view.generation}\n")

    async def _metrics(self, request: web.Request) -> web.Response:
        view = self.view
        if view is not self._scraped or not self._body:
            self._scraped = view
            self._body = generate_latest(self._registry)
        return web.Response(body=self._body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(status.status(self.view, self._known, time.time()))

    async def _overrides(self, request: web.Request) -> web.Response:
        return web.json_response(status.status(self.view, self._known,
                                               time.time())["overrides"])

    async def _page(self, request: web.Request) -> web.Response:
        text = resources.files("healthdns.supervisor").joinpath("status.html").read_text()
        return web.Response(text=text, content_type="text/html")

    # --- writes ---------------------------------------------------------------------------------

    async def _set(self, request: web.Request) -> web.Response:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        try:
            fields = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError) as e:
            return _error(400, f"the body is not JSON: {e}")
        if not isinstance(fields, dict):
            return _error(400, "the body must be a JSON object")
        return await self._ask("set", fields)

    async def _remove(self, request: web.Request) -> web.Response:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        return await self._ask("remove", {"key": request.match_info["key"].lower().rstrip(".")})

    async def _reload(self, request: web.Request) -> web.Response:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        return await self._ask("reload", {})

    def reconfigure(self, token: str | None, known: Catalog) -> None:
        """A reload's token and targets; the listen address needs a restart. Two reference
        assignments, each atomic for the endpoint's thread."""
        self._token = token
        self._known = known
        self._collector.targets = known.targets

    def _refuse(self, request: web.Request) -> web.Response | None:
        if self._token is None:
            return _error(403, "write calls are off: no [control] token is configured")
        given = request.headers.get("Authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                                 self._token.encode()):
            return _error(401, "a valid 'Authorization: Bearer TOKEN' header is required")
        return None

    async def _ask(self, op: str, fields: dict[str, Any]) -> web.Response:
        done: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        self.requests.put(Request(op, fields, done))
        try:
            self._wakeup.send(b"c")
        except BlockingIOError:
            pass  # the buffer is full of wake-ups already: the loop wakes anyway
        try:
            answer = await asyncio.wait_for(asyncio.wrap_future(done), WRITE_TIMEOUT)
        except TimeoutError:
            return _error(503, "the supervisor did not take the request in time")
        code = int(answer.pop("status", 200))
        return web.json_response(answer, status=code)


def _error(code: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=code)


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
