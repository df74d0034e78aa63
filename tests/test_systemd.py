"""systemd: sd_notify readiness of the real supervisor, and the unit file in deploy/."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Server, supervisor_command

from healthdns.supervisor import notify

UNIT = Path(__file__).parent.parent / "deploy" / "healthdns.service"

TOML = """
    [server]
    listen = ["127.0.0.1:0"]
    responders = 1

    [[zones]]
    origin = "example.test"
    nameservers = ["ns1.example.net"]

    [zones.records.www]
    a = ["192.0.2.1"]
"""


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket in the abstract namespace (no path length limit), as $NOTIFY_SOCKET."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(f"\0healthdns-test-{os.getpid()}-{id(sock)}")
    sock.settimeout(10)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + sock.getsockname()[1:].decode())
    yield sock
    sock.close()


def messages(sock: socket.socket) -> list[dict[str, str]]:
    """Every datagram waiting, as KEY=VALUE fields."""
    out = []
    sock.setblocking(False)
    try:
        while True:
            data = sock.recv(4096).decode()
            out.append(dict(line.split("=", 1) for line in data.splitlines()))
    except BlockingIOError:
        return out
    finally:
        sock.setblocking(True)


def test_ready_and_stopping_reach_notify_socket(tmp_path: Path,
                                                notify_socket: socket.socket) -> None:
    server = Server([], tmp_path, TOML).start()
    # Sent right after the ready line, which start() waited for: it is in the socket now
    # or arrives within the timeout.
    first = notify_socket.recv(4096).decode().splitlines()
    assert first[0] == "READY=1"
    assert first[1] == f"STATUS=serving on {server.host}:{server.port}"
    assert server.stop() == 0
    assert messages(notify_socket) == [{"STOPPING": "1"}]


def test_notify_to_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert notify.notify("READY=1", "STATUS=x")
        assert sock.recv(100) == b"READY=1\nSTATUS=x"


def test_without_systemd_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not notify.notify("READY=1")


def test_a_dead_notify_socket_does_not_stop_the_server(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    server = Server([], tmp_path, TOML).start()
    assert server.addresses("www.example.test") == {"192.0.2.1"}
    assert server.stop() == 0
    assert "cannot notify systemd" in server.output()


def test_unit_file_verifies(tmp_path: Path) -> None:
    """`systemd-analyze verify` on the unit, with ExecStart pointed at the installed command
    (verify insists that the program exists)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is not installed: .ci/run must install systemd")
        pytest.skip("systemd-analyze is not installed")
    installed = supervisor_command()[0]
    text = UNIT.read_text().replace("/opt/healthdns/bin/healthdns-supervisor", installed)
    assert text != UNIT.read_text()
    unit = tmp_path / "healthdns.service"
    unit.write_text(text)
    done = subprocess.run([analyze, "verify", str(unit)], check=False, capture_output=True,
                          text=True, timeout=60)
    problems = [line for line in done.stderr.splitlines() if str(unit) in line
                or "healthdns.service" in line]
    assert done.returncode == 0 and not problems, done.stderr


def test_unit_file_keeps_its_promises() -> None:
    """The settings the operations page promises: notify, reload by SIGHUP, hardening."""
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    expected = {
        "Type": ["notify"],
        "ExecReload": ["/bin/kill -HUP $MAINPID"],
        "NoNewPrivileges": ["yes"],
        "ProtectSystem": ["strict"],
        "CapabilityBoundingSet": ["CAP_NET_BIND_SERVICE"],
        "AmbientCapabilities": ["CAP_NET_BIND_SERVICE"],
        "User": ["healthdns"],
        "KillMode": ["mixed"],
    }
    assert {key: settings.get(key) for key in expected} == expected
