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
import collections
import errno
import functools
import hashlib
import json
import math
import os
import select
import socket
import ssl
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from healthdns.shared import lazy, regex
from healthdns.shared.config import CheckSpec, format_endpoint

if TYPE_CHECKING:
    import aiohttp
else:  # 10 MiB of imports that only HTTP checks use: a prober without one never loads it
    aiohttp = lazy.module("aiohttp")

Result = tuple[bool, str]
Done = Callable[[bool, str], None]  # called exactly once per started check

BODY_LIMIT = 65536  # bytes of a response body that `body` and `body_regex` look at
USER_AGENT = "healthdns-prober"
# Close with a RST: a prober opening thousands of connections a second must not leave each
# one in TIME_WAIT (HAProxy's checks do the same). The backend sees a reset after the handshake.
_RESET = struct.pack("ii", 1, 0)
_FAILED = select.EPOLLERR | select.EPOLLHUP


class Checker:
    """Starts checks and calls back with their results; `close` cancels what is in flight."""

    def __init__(self, sources: tuple[str, ...] = ()) -> None:
        """`sources`: the addresses checks are sent from, at most one per family (a target of
        another family is checked from the kernel's choice)."""
        self._loop = asyncio.get_running_loop()
        self._sources = {_family(a): a for a in sources}
        self._tcp = _Connects(self._loop, self._sources)
        self._tasks: set[asyncio.Task[Result]] = set()
        self._sessions: dict[int, aiohttp.ClientSession] = {}  # by the target's family
        self._tls: dict[tuple[bool, str | None], ssl.SSLContext | bool] = {}

    def start(self, address: str, spec: CheckSpec, done: Done) -> None:
        """Check `address` as `spec` says; `done` is called once, within `spec.timeout`."""
        if spec.kind == "tcp":
            self._tcp.start(address, spec.port, spec.timeout, done)
            return
        # Ready before the check's clock starts: the first HTTP check imports aiohttp and a
        # CA file is read once; counted in its timeout, a short one failed a healthy backend.
        self._client(address)
        if spec.kind == "https":
            self._context(spec)
        task = self._loop.create_task(self._http(address, spec))
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._http_done, done))

    async def close(self) -> None:
        """Cancel every check in flight (their `done` is not called) and release the client."""
        self._tcp.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        for session in self._sessions.values():
            await session.close()

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
        async with self._client(address).request(
                spec.method, url, headers=headers, allow_redirects=False,
                ssl=self._context(spec) if https else True,
                server_hostname=spec.host if https else None) as response:
            status = response.status
            if not any(a <= status <= b for a, b in spec.ranges):
                return False, f"status {status}"
            if spec.body is None and spec.body_regex is None:
                return True, f"status {status}"
            text = (await _read_start(response.content)).decode("utf-8", "replace")
        if spec.body is not None and spec.body not in text:
            return False, f"body mismatch: no {spec.body!r}"
        # RE2, compiled when the configuration was checked: linear in the body, so a hostile
        # backend cannot stall the loop every other check runs on.
        if spec.body_regex is not None and not regex.compile(spec.body_regex).search(text):
            return False, f"body mismatch: no match for {spec.body_regex!r}"
        return True, f"status {status}, body matches"

    def _client(self, address: str) -> aiohttp.ClientSession:
        """The session for targets of `address`'s family: each binds that family's source."""
        family = _family(address)
        session = self._sessions.get(family)
        if session is None:
            # force_close: every check opens its own connection, as a client would; limit=0:
            # the scheduler bounds how many run at once.
            source = self._sources.get(family)
            connector = aiohttp.TCPConnector(
                limit=0, force_close=True, use_dns_cache=False,
                local_addr=(source, 0) if source is not None else None)
            session = self._sessions[family] = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
                timeout=aiohttp.ClientTimeout(total=None))
        return session

    def _context(self, spec: CheckSpec) -> ssl.SSLContext | bool:
        """The TLS settings of an https check, one context per distinct trust setting."""
        key = (spec.verify, spec.ca_pem)
        found = self._tls.get(key)
        if found is None:
            # False (verify off): encrypt, but verify neither chain nor name. Verified: without
            # cadata against the system's CAs; with it, against those CAs only.
            found = ssl.create_default_context(cadata=spec.ca_pem) if spec.verify else False
            self._tls[key] = found
        return found


class _Connects:
    """Every TCP connect in flight, watched through one epoll set of its own.

    The set's descriptor is one reader in the event loop: a check costs a socket, one
    `epoll_ctl` and no asyncio handle, and closing the socket takes it out of the set. Timeouts
    are FIFO queues per timeout value (deadlines in start order), served by one timer armed for
    the earliest connect still in flight, a few milliseconds late so that it fires for many.
    """

    SLACK = 0.005  # seconds a timeout may fire late, to batch them
    EVENTS = 4096  # connects judged per epoll call (Python's default is 1023)

    def __init__(self, loop: asyncio.AbstractEventLoop, sources: dict[int, str]) -> None:
        self._loop = loop
        self._sources = sources  # family -> the address connects are made from
        self._epoll = select.epoll()
        self._flight: dict[int, _Flight] = {}  # by file descriptor
        self._deadlines: dict[float, collections.deque[tuple[float, _Flight]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf  # when it fires
        loop.add_reader(self._epoll.fileno(), self._ready)

    def start(self, address: str, port: int, timeout: float, done: Done) -> None:
        family = _family(address)
        source = self._sources.get(family)
        try:
            sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        except OSError as e:  # e.g. no IPv6 on this host, or out of file descriptors
            done(False, _why(e))
            return
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        if source is not None:
            try:
                sock.bind((source, 0))
            except OSError as e:  # the source address is gone from this host
                sock.close()
                done(False, f"source {source}: {_why(e)}")
                return
        code = sock.connect_ex((address, port))
        if code != errno.EINPROGRESS:
            sock.close()
            done(code == 0, "connected" if code == 0 else _strerror(code))
            return
        flight = _Flight(sock, timeout, done)
        self._flight[sock.fileno()] = flight
        self._epoll.register(sock.fileno(), select.EPOLLOUT | select.EPOLLONESHOT)
        deadline = self._loop.time() + timeout
        queue = self._deadlines.get(timeout)
        if queue is None:
            queue = self._deadlines[timeout] = collections.deque()
        queue.append((deadline, flight))
        # Connects with the same timeout end in start order: only a shorter timeout than any
        # in flight can need the timer sooner.
        if deadline + self.SLACK < self._timer_at:
            self._arm_at(deadline)

    def _ready(self) -> None:
        """Judge every connect that has ended, all of them: those left for a later call would
        meet their deadline first when the loop is late, and count as timeouts."""
        while True:
            ended = self._epoll.poll(0, self.EVENTS)
            for fd, events in ended:
                flight = self._flight.pop(fd, None)
                if flight is None:
                    continue
                # Writable without an error is a completed handshake; only a failure needs
                # asking.
                code = flight.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) \
                    if events & _FAILED else 0
                flight.end()
                flight.done(code == 0, "connected" if code == 0 else _strerror(code))
            if len(ended) < self.EVENTS:
                return

    def _expire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        # A loop held up past the deadlines (a long batch of starts, a stalled process) runs
        # this timer with connects that completed meanwhile still unread: they answered.
        self._ready()
        now = self._loop.time()
        for queue in self._deadlines.values():
            while queue and queue[0][0] <= now:
                _, flight = queue.popleft()
                if self._flight.get(flight.fd) is flight:
                    del self._flight[flight.fd]
                    flight.end()
                    flight.done(False, f"timeout after {flight.timeout:g} s")
        self._arm()

    def _arm(self) -> None:
        earliest = math.inf
        for queue in self._deadlines.values():
            while queue and self._flight.get(queue[0][1].fd) is not queue[0][1]:
                queue.popleft()  # finished already
            if queue:
                earliest = min(earliest, queue[0][0])
        if earliest != math.inf:
            self._arm_at(earliest)

    def _arm_at(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline + self.SLACK
        self._timer = self._loop.call_at(self._timer_at, self._expire)

    def close(self) -> None:
        """Abandon every connect in flight (their `done` is not called)."""
        if self._timer is not None:
            self._timer.cancel()
        for flight in self._flight.values():
            flight.end()
        self._flight.clear()
        self._loop.remove_reader(self._epoll.fileno())
        self._epoll.close()


class _Flight:
    """One connect in flight."""

    __slots__ = ("done", "fd", "sock", "timeout")

    def __init__(self, sock: socket.socket, timeout: float, done: Done) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.timeout = timeout
        self.done = done

    def end(self) -> None:
        self.sock.close()  # also takes it out of the epoll set


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


_IN_LABEL = ("kind", "port", "path", "host")


def labels(targets: Mapping[str, tuple[str, CheckSpec]]) -> dict[str, str]:
    """Every target's log label, built once: `label()`, and where targets share it (the same
    endpoint checked with other settings, e.g. another `ca_file` or `verify`), the settings
    that tell them apart: "https 192.0.2.1:443/ [verify=false]"."""
    shared: dict[str, list[str]] = collections.defaultdict(list)
    for target, (address, spec) in targets.items():
        shared[label(address, spec)].append(target)
    out: dict[str, str] = {}
    for text, ids in shared.items():
        if len(ids) == 1:
            out[ids[0]] = text
            continue
        specs = [targets[t][1] for t in ids]
        differ = [f for f in CheckSpec.__struct_fields__ if f not in _IN_LABEL
                  and len({_setting(s, f) for s in specs}) > 1]
        if "variant" in differ:  # shown as "headers=X-Key #2": only the values differ
            differ.remove("variant")
            if "headers" not in differ:
                differ.append("headers")
        if "ca_file" in differ and "ca_pem" in differ:
            differ.remove("ca_pem")  # read from the file: the file name says it
        named = {t: f"{text} [{', '.join(f'{f}={_setting(s, f)}' for f in differ)}]"
                 for t, s in zip(ids, specs, strict=True)}
        if len(set(named.values())) < len(ids):  # settings that print alike: the ids differ
            named = {t: f"{text} [{t}]" for t in ids}
        out.update(named)
    return out


def _setting(spec: CheckSpec, field: str) -> str:
    """A setting as a label shows it: header values never (they may be secrets), only their
    names and, for checks that differ only in them, their place in the file."""
    value = getattr(spec, field)
    if field == "ca_pem" and value is not None:
        return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:12]
    if field == "headers":
        return (",".join(value) or "none") + (f" #{spec.variant + 1}" if spec.variant else "")
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:g}"
    return json.dumps(value)  # null, true, {"X-A": "1"}


def used_by(names: Sequence[str], most: int = 3) -> str:
    """The end of a target's state lines: the names its health decides."""
    if not names:
        return ""
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return f"; used by {', '.join(names[:most])}{more}"


async def _read_start(content: aiohttp.StreamReader) -> bytes:
    """The first BODY_LIMIT bytes of a body (all of a shorter one)."""
    data = bytearray()
    while len(data) < BODY_LIMIT:
        chunk = await content.read(BODY_LIMIT - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _ssl_reason(error: aiohttp.ClientSSLError) -> str:
    inner = getattr(error, "os_error", None)
    reason = getattr(inner, "reason", None) or getattr(inner, "strerror", None)
    return str(reason or inner or error).lower().replace("_", " ")  # WRONG_VERSION_NUMBER


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _strerror(code: int) -> str:
    return os.strerror(code).lower()


def _why(error: OSError) -> str:
    # asyncio words a failed connect as "Connect call failed (addr)"; the errno says it better.
    if error.errno:
        return _strerror(error.errno)
    return str(error) or type(error).__name__
