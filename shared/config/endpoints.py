"""Listening endpoints: "ADDR", "ADDR:PORT", "[V6]:PORT", "V6"."""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

from healthdns.shared.config.values import check_port
from healthdns.shared.errors import ConfigError


class Endpoint(NamedTuple):
    """An endpoint parsed: normalisation stores these, so no consumer parses the text again."""

    host: str  # an IPv4 or IPv6 address in canonical form
    port: int  # 0 asks the kernel for a free port (tests; only valid from the flags)


def parse_endpoint(text: str, default_port: int, path: str) -> Endpoint:
    host, port = text, default_port
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(path, f"{text!r} is not ADDR[:PORT]")
        if rest:
            port = _port_text(rest[1:], text, path)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port_text(port_text, text, path)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(path, f"{text!r}: {host!r} is not an IPv4 or IPv6 address") from None
    if port != 0:  # 0 asks the kernel for a free port (tests); only valid from the flags.
        check_port(port, path)
    return Endpoint(str(address), port)


def _port_text(text: str, whole: str, path: str) -> int:
    if not text.isdigit():
        raise ConfigError(path, f"{whole!r}: {text!r} is not a port (1-65535)")
    return int(text)


def format_endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
