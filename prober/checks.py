"""Health checks: one attempt against one target, reported once as ``(ok, reason)``.

A check never raises for a network failure: the reason is what the operator reads in the log
("connection refused", "timeout after 2 s", "status 503", "certificate error: ..."). Anything
else it raises is a bug.

TCP checks are the bulk (ten thousand a second on one core is the goal), so they run without a
task or coroutine each: a non-blocking connect, a writer callback and a timer. HTTP and HTTPS
checks go through aiohttp, a mature asyncio HTTP client that verifies certificates, sends SNI
for a name other than the address it connects to (`server_hostname`), and cancels cleanly.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import re
import socket
import ssl
import struct
from collections.abc import Callable

import aiohttp

from healthdns.shared.config import CheckSpec, format_endpoint

Result = tuple[bool, str]
Done = Callable[[bool, str], None]  # called exactly once per started check

BODY_LIMIT = 65536  # bytes of a response body that `body` and `body_regex` look at
USER_AGENT = "healthdns-prober"
# Close with a RST: a prober opening thousands of connections a second must not leave each
# one in TIME_WAIT (HAProxy's checks do the same). The backend sees a reset after the handshake.
_RESET = struct.pack("ii", 1, 0)


class Checker:
    """Starts checks and calls back with their results; `close` cancels what is in flight."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tcp: set[_Connect] = set()
        self._tasks: set[asyncio.Task[Result]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._tls: dict[tuple[bool, str | None], ssl.SSLContext | bool] = {}

    def start(self, address: str, spec: CheckSpec, done: Done) -> None:
        """Check `address` as `spec` says; `done` is called once, within `spec.timeout`."""
        if spec.kind == "tcp":
            _Connect.start(self, address, spec.port, spec.timeout, done)
            return
        task = self._loop.create_task(self._http(address, spec))
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._http_done, done))

    async def close(self) -> None:
        """Cancel every check in flight (their `done` is not called) and release the client."""
        for attempt in list(self._tcp):
            attempt.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        if self._session is not None:
            await self._session.close()

    def _http_done(self, done: Done, task: asyncio.Task[Result]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            done(*task.result())  # an exception here is a bug: it surfaces in the loop

    async def _http(self, address: str, spec: CheckSpec) -> Result:
        try:
            async with asyncio.timeout(spec.timeout):
                return await self._request(address, spec)
        except TimeoutError:
            return False, f"timeout after {spec.timeout:g} s"
        except aiohttp.ClientConnectorCertificateError as e:
            verify = e.certificate_error
            text = getattr(verify, "verify_message", None) or str(verify)
            return False, f"certificate error: {text}"
        except aiohttp.ClientSSLError as e:
            return False, f"TLS error: {_ssl_reason(e)}"
        except aiohttp.ClientConnectorError as e:
            return False, _why(e.os_error)
        except aiohttp.ServerDisconnectedError:
            return False, "server disconnected"
        except aiohttp.ClientError as e:
            return False, f"HTTP error: {e or type(e).__name__}"
        except OSError as e:
            return False, _why(e)

    async def _request(self, address: str, spec: CheckSpec) -> Result:
        url = f"{spec.kind}://{format_endpoint(address, spec.port)}{spec.path}"
        headers = {"User-Agent": USER_AGENT, **spec.headers}
        if spec.host is not None:
            headers["Host"] = spec.host
        https = spec.kind == "https"
        async with self._client().request(
                spec.method, url, headers=headers, allow_redirects=False,
                ssl=self._context(spec) if https else True,
                server_hostname=spec.host if https else None) as response:
            status = response.status
            if not any(a <= status <= b for a, b in _ranges(spec.status)):
                return False, f"status {status}"
            if spec.body is None and spec.body_regex is None:
                return True, f"status {status}"
            text = (await _read_start(response.content)).decode("utf-8", "replace")
        if spec.body is not None and spec.body not in text:
            return False, f"body mismatch: no {spec.body!r}"
        if spec.body_regex is not None and not re.search(spec.body_regex, text):
            return False, f"body mismatch: no match for {spec.body_regex!r}"
        return True, f"status {status}, body matches"

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # force_close: every check opens its own connection, as a client would; limit=0:
            # the scheduler bounds how many run at once.
            connector = aiohttp.TCPConnector(limit=0, force_close=True, use_dns_cache=False)
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
                auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None))
        return self._session

    def _context(self, spec: CheckSpec) -> ssl.SSLContext | bool:
        """The TLS settings of an https check, one context per distinct trust setting."""
        key = (spec.verify, spec.ca_pem)
        found = self._tls.get(key)
        if found is None:
            if not spec.verify:
                found = False  # aiohttp: encrypt, but verify neither chain nor name
            else:
                # Without cadata, the system's CAs; with it, those CAs only.
                found = ssl.create_default_context(cadata=spec.ca_pem)
            self._tls[key] = found
        return found


class _Connect:
    """One TCP connect in flight: a socket, a writer callback and a timeout timer."""

    __slots__ = ("checker", "done", "sock", "timeout", "timer")

    def __init__(self, checker: Checker, sock: socket.socket, timeout: float,
                 done: Done) -> None:
        self.checker = checker
        self.sock = sock
        self.timeout = timeout
        self.done = done
        loop = checker._loop
        loop.add_writer(sock.fileno(), self._writable)
        self.timer = loop.call_later(timeout, self._expired)
        checker._tcp.add(self)

    @classmethod
    def start(cls, checker: Checker, address: str, port: int, timeout: float,
              done: Done) -> None:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        except OSError as e:  # e.g. no IPv6 on this host, or out of file descriptors
            done(False, _why(e))
            return
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        code = sock.connect_ex((address, port))
        if code == errno.EINPROGRESS:
            cls(checker, sock, timeout, done)
            return
        sock.close()
        done(code == 0, "connected" if code == 0 else _strerror(code))

    def _writable(self) -> None:
        code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self._end()
        self.done(code == 0, "connected" if code == 0 else _strerror(code))

    def _expired(self) -> None:
        self._end()
        self.done(False, f"timeout after {self.timeout:g} s")

    def cancel(self) -> None:
        self._end()

    def _end(self) -> None:
        self.checker._loop.remove_writer(self.sock.fileno())
        self.timer.cancel()
        self.sock.close()
        self.checker._tcp.discard(self)


async def probe(address: str, spec: CheckSpec) -> Result:
    """One check, awaited: for tests and one-off use (the scheduler uses `Checker`)."""
    checker = Checker()
    result: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
    try:
        checker.start(address, spec, lambda ok, reason: result.set_result((ok, reason)))
        return await result
    finally:
        await checker.close()


async def tcp_connect(address: str, port: int, timeout: float) -> Result:
    """Pass if a TCP handshake with (address, port) completes within `timeout` seconds."""
    return await probe(address, CheckSpec(port=port, timeout=timeout, interval=timeout))


def label(address: str, spec: CheckSpec) -> str:
    """How the log names a target: "tcp 192.0.2.1:80", "https [2001:db8::1]:443/health"."""
    where = f"{spec.kind} {format_endpoint(address, spec.port)}"
    if spec.kind == "tcp":
        return where
    host = f" (Host {spec.host})" if spec.host is not None else ""
    return f"{where}{spec.path}{host}"


async def _read_start(content: aiohttp.StreamReader) -> bytes:
    """The first BODY_LIMIT bytes of a body (all of a shorter one)."""
    data = bytearray()
    while len(data) < BODY_LIMIT:
        chunk = await content.read(BODY_LIMIT - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


@functools.lru_cache(maxsize=256)
def _ranges(status: str) -> tuple[tuple[int, int], ...]:
    return CheckSpec(status=status).statuses()


def _ssl_reason(error: aiohttp.ClientSSLError) -> str:
    inner = getattr(error, "os_error", None)
    reason = getattr(inner, "reason", None) or getattr(inner, "strerror", None)
    return str(reason or inner or error).lower().replace("_", " ")  # WRONG_VERSION_NUMBER


def _strerror(code: int) -> str:
    return os.strerror(code).lower()


def _why(error: OSError) -> str:
    # asyncio words a failed connect as "Connect call failed (addr)"; the errno says it better.
    if error.errno:
        return _strerror(error.errno)
    return str(error) or type(error).__name__
