"""Starting the real `healthdns-supervisor` on loopback, and talking to it."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import dns.message
import dns.query
import dns.rdatatype

BENCH = Path(__file__).resolve().parent.parent / "bench"


def bench_module(path: str, name: str) -> ModuleType:
    """The module at bench/`path`, loaded as `name`, with bench/ on the path while it loads.

    Two things are named `harness`: this module and the benchmarks' library (bench/harness/).
    A bench module imports the library, so the library is `harness` in sys.modules while the
    bench module loads, and this module is `harness` again afterwards: the bench module keeps
    what it imported, and tests keep importing from here."""
    ours = _pop_harness()
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
        _pop_harness()
        sys.modules.update(ours)
    return module


def _pop_harness() -> dict[str, ModuleType]:
    names = [name for name in sys.modules if name == "harness" or name.startswith("harness.")]
    return {name: sys.modules.pop(name) for name in names}


# The checked TCP backend is the benchmarks' too (bench/reload.py): it lives in bench/harness/.
Backend = bench_module("harness/backend.py", "bench_harness_backend").Backend
READY = re.compile(r"ready: serving \d+ zone\(s\) on (\S+?):(\d+)[, ]")
CONTROL = re.compile(r"control: listening on ([^\s\"]+)")  # a text or a JSON line
START_TIMEOUT = 20.0


def supervisor_command() -> list[str]:
    script = Path(sys.executable).parent / "healthdns-supervisor"
    if script.exists():
        return [str(script)]
    found = shutil.which("healthdns-supervisor")
    assert found, "healthdns-supervisor is not installed (pip install -e '.[test]')"
    return [found]


class Server:
    """One supervisor process; `start()` returns once it says it is ready."""

    def __init__(self, args: list[str], tmp: Path | None = None, toml: str | None = None,
                 control_as_configured: bool = False) -> None:
        if toml is not None:
            assert tmp is not None
            path = tmp / "healthdns.toml"
            path.write_text(textwrap.dedent(toml))
            args = ["--config", str(path), *args]
        self.args = args
        self.control_as_configured = control_as_configured  # no --control-listen added
        self.lines: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.process: subprocess.Popen[str] | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.control = ""  # http://ADDR:PORT of the control endpoint, when it is on

    def start(self, timeout: float = START_TIMEOUT, ready: re.Pattern[str] = READY) -> Server:
        """`ready`: the readiness line, its groups the address and port it names."""
        # A control endpoint on a port of the kernel's choice unless the test picks one: the
        # default port would collide between tests (and servers) running at once.
        control = [] if "--control-listen" in self.args or self.control_as_configured else [
            "--control-listen", "127.0.0.1:0"]
        self.process = subprocess.Popen(
            [*supervisor_command(), "--log-level", "info", *control, *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        try:
            match = self.wait_for(ready, timeout)
        except AssertionError:
            self.process.kill()  # its children follow: their pipes reach EOF
            self.process.wait()
            raise
        self.host, self.port = match.group(1).strip("[]"), int(match.group(2))
        found = CONTROL.search(self.output())
        self.control = f"http://{found.group(1)}" if found else ""
        return self

    def _pump(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, pattern: re.Pattern[str] | str, timeout: float) -> re.Match[str]:
        """The first output line from now on that matches `pattern`."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {regex.pattern!r} within {timeout} s; "
                                     f"output:\n{self.output()}")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"server exited before {regex.pattern!r}; "
                                     f"output:\n{self.output()}")
            found = regex.search(line)
            if found:
                return found

    def output(self) -> str:
        return "".join(self.lines)

    def query(self, name: str, rdtype: str = "A", tcp: bool = False, timeout: float = 2.0,
              **kwargs: object) -> dns.message.Message:
        q = dns.message.make_query(name, dns.rdatatype.from_text(rdtype), **kwargs)  # type: ignore[arg-type]
        q.flags &= ~0x0100  # no RD: we are an authoritative server
        if tcp:
            return dns.query.tcp(q, self.host, port=self.port, timeout=timeout)
        return dns.query.udp(q, self.host, port=self.port, timeout=timeout)

    def addresses(self, name: str, rdtype: str = "A") -> set[str]:
        response = self.query(name, rdtype)
        return {rd.to_text() for rrset in response.answer for rd in rrset
                if rrset.rdtype == dns.rdatatype.from_text(rdtype)}

    def wait_until(self, predicate: object, timeout: float, what: str) -> float:
        """Poll `predicate()` (queries) until it is true; returns the seconds it took."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            try:
                if predicate():  # type: ignore[operator]
                    return time.monotonic() - start
            except dns.exception.Timeout:
                pass
            time.sleep(0.05)  # polling period, not a readiness guess
        raise AssertionError(f"{what} did not happen within {timeout} s")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def children(self) -> dict[int, str]:
        """pid -> process name of the supervisor's processes: its children, the fork server's
        (every role's process) and theirs."""
        return descendants_of(self.pid)

    def stop(self, timeout: float = 8.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"supervisor did not stop within {timeout} s") from None


ZONE = "example.test"
NAMESERVER = "ns1.example.net"


def config_toml(records: Mapping[str, Any] | None = None, *,
                zone: Mapping[str, Any] | None = None,
                zones: Sequence[Mapping[str, Any]] | None = None,
                **sections: Mapping[str, Any]) -> str:
    """A configuration file's text: `[server]` listening on 127.0.0.1:0 with one responder,
    and one zone `example.test` (NS ns1.example.net) with `records`.

    `zone` adds to (or replaces keys of) that zone's table; `zones` replaces the zone list;
    each other keyword is a top-level table (`server` adds to the defaults; `prober`,
    `control`, `rrl`... are as given). Values are Python values: dicts become tables, lists
    of dicts arrays of tables, and a key whose value is None is left out (so None drops a
    default)."""
    server = {"listen": ["127.0.0.1:0"], "responders": 1, **sections.pop("server", {})}
    if zones is None:
        one: dict[str, Any] = {"origin": ZONE, "nameservers": [NAMESERVER]}
        if records is not None:
            one["records"] = records
        zones = [{**one, **(zone or {})}]
    return render_toml({"server": server, **sections, "zones": list(zones)})


def render_toml(document: Mapping[str, Any]) -> str:
    """TOML for a document of tables, arrays of tables, strings, numbers, booleans and lists
    (tomllib reads it back equal: tests/test_harness_config.py); keys set to None are left
    out, as TOML has no null."""
    lines: list[str] = []
    _table_body(lines, [], document)
    return "\n".join(lines) + "\n"


def _table_body(lines: list[str], path: list[str], table: Mapping[str, Any]) -> None:
    table = {k: v for k, v in table.items() if v is not None}
    nested = {k: v for k, v in table.items() if _is_table(v) or _is_tables(v)}
    lines.extend(f"{_key(k)} = {_value(v)}" for k, v in table.items() if k not in nested)
    for key, value in nested.items():
        header = ".".join(_key(k) for k in [*path, key])
        if _is_tables(value):
            for item in value:
                lines.extend(["", f"[[{header}]]"])
                _table_body(lines, [*path, key], item)
            continue
        if not value or not all(_is_table(v) or _is_tables(v) for v in value.values()):
            lines.extend(["", f"[{header}]"])  # a table of tables only needs no header
        _table_body(lines, [*path, key], value)


def _is_table(value: object) -> bool:
    return isinstance(value, Mapping)


def _is_tables(value: object) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(item, Mapping) for item in value))


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _string(key)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return _string(value) if isinstance(value, str) else repr(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()
                                if v is not None) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def _string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, and TOML escapes DEL too."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def children_of(parent: int) -> dict[int, str]:
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == parent and fields[0] != "Z":
            found[int(entry)] = cmdline.replace(b"\0", b" ").decode(errors="replace")
    return found


def descendants_of(parent: int) -> dict[int, str]:
    found = children_of(parent)
    for pid in list(found):
        found.update(descendants_of(pid))
    return found


def run_cli(args: list[str], timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Run the supervisor expecting it to exit by itself (bad input, --check-config)."""
    return subprocess.run([*supervisor_command(), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def exchange(server: Server, wire: bytes, tcp: bool = False, timeout: float = 1.0) -> bytes | None:
    """Send raw bytes, return the raw response, or None when none comes within `timeout`."""
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    if tcp:
        with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
            sock.sendall(len(wire).to_bytes(2, "big") + wire)
            return read_tcp_message(sock)
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(wire, (server.host, server.port))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def read_tcp_message(sock: socket.socket) -> bytes | None:
    header = _recv_exactly(sock, 2)
    if header is None:
        return None
    return _recv_exactly(sock, int.from_bytes(header, "big"))


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def has_ipv6() -> bool:
    """Whether this host has an IPv6 loopback to test on."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


class HttpBackend(Backend):
    """A `Backend` that answers each HTTP request with `200 ok`, then closes the connection.

    Down works as for `Backend`: the port stays bound but refuses connections.
    """

    def _accept(self, sock: socket.socket) -> None:
        while self.listening:
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                self.answer(conn)

    def answer(self, conn: socket.socket) -> None:
        """Answer one accepted connection: a plain HTTP 200 (subclasses answer otherwise)."""
        _answer_http(conn)


def read_request(conn: socket.socket) -> bytes | None:
    """The head of one HTTP request (through the blank line), or None when the client closes or
    goes quiet first (the prober gave up: its timeout). A check that never sends its request
    must not stall the others, so each read waits at most half a second."""
    conn.settimeout(0.5)
    request = b""
    try:
        while b"\r\n\r\n" not in request:
            chunk = conn.recv(4096)
            if not chunk:
                return None
            request += chunk
    except OSError:
        return None
    return request


def reply(conn: socket.socket, response: bytes) -> None:
    """Send `response`, unless the client has gone (nothing to answer then)."""
    with contextlib.suppress(OSError):
        conn.sendall(response)


def _answer_http(conn: socket.socket) -> None:
    if read_request(conn) is not None:
        reply(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
