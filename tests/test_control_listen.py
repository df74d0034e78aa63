"""Where the control endpoint listens: the default address is a convenience, a configured one
a requirement. A second server on one host (the default 127.0.0.1:8053 taken) serves DNS
without an endpoint and says so; an address given in the file or by flag that cannot be bound
stops the start."""

from __future__ import annotations

import errno
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Server, run_cli

from healthdns.shared.config import DEFAULT_CONTROL

ZONE = """
    [server]
    listen = ["127.0.0.1:0"]

    [[zones]]
    origin = "example.test"
    nameservers = ["ns1.example.net"]

    [zones.records.www]
    a = ["192.0.2.1"]
"""


@pytest.fixture
def default_taken() -> Iterator[None]:
    """The default control address, held (by us, or already by another server here)."""
    host, port = DEFAULT_CONTROL.rsplit(":", 1)
    with socket.socket() as sock:
        try:
            sock.bind((host, int(port)))
            sock.listen()
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
        yield


def busy_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_a_second_server_serves_without_the_default_control_address(
        tmp_path: Path, default_taken: None) -> None:
    """Before: `control: cannot listen on 127.0.0.1:8053: Address already in use`, exit 1."""
    server = Server([], tmp_path, ZONE, control_as_configured=True).start()
    try:
        assert server.control == ""
        output = server.output()
        assert f"control: cannot listen on {DEFAULT_CONTROL}, the default address" in output
        assert "serving without a control endpoint" in output
        assert "--control-listen" in output  # how to give it another address
        assert server.addresses("www.example.test") == {"192.0.2.1"}
    finally:
        assert server.stop() == 0


def test_a_configured_control_address_that_is_taken_stops_the_start(tmp_path: Path) -> None:
    with busy_port() as busy:
        port = busy.getsockname()[1]
        path = tmp_path / "c.toml"
        path.write_text(f'[control]\nlisten = "127.0.0.1:{port}"\n' + ZONE)
        result = run_cli(["--config", str(path)])
    assert result.returncode == 1
    assert f"control: cannot listen on 127.0.0.1:{port}" in result.stderr + result.stdout
    assert "the default address" not in result.stderr + result.stdout


@pytest.mark.parametrize(("control", "flags", "listen", "required"), [
    ("", [], DEFAULT_CONTROL, False),
    (f'listen = "{DEFAULT_CONTROL}"', [], DEFAULT_CONTROL, True),
    ('listen = "127.0.0.1:9053"', [], "127.0.0.1:9053", True),
    ("", ["--control-listen", "[::1]:9053"], "[::1]:9053", True),
    ("required = true", [], DEFAULT_CONTROL, True),
    ('listen = "127.0.0.1:9053"\nrequired = false', [], "127.0.0.1:9053", False),
])
def test_the_normalised_config_says_whether_the_address_is_required(
        tmp_path: Path, control: str, flags: list[str], listen: str, required: bool) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[control]\n{control}\n" + ZONE)
    result = run_cli(["--config", str(path), *flags, "--check-config"])
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)["control"]
    assert (shown["listen"], shown["required"]) == (listen, required)
