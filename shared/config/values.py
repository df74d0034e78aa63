"""Values every section shares: the frozen base of every struct, and the checks of
numbers, ports, TTLs, addresses and choices, each raising a ConfigError that names the field.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Any

import msgspec

from healthdns.shared.config import decodeerrors
from healthdns.shared.errors import ConfigError

MAX_TTL = 2**31 - 1  # RFC 2181 section 8


class Frozen(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every config struct: immutable, and unknown keys are errors."""


def refuse_normalised_fields(raw: msgspec.Struct, names: tuple[str, ...], path: str) -> None:
    """Refuse a file that gives a field normalisation sets (each has its default in the file)."""
    for field in msgspec.structs.fields(raw):
        if field.name in names and getattr(raw, field.name) != field.default:
            raise ConfigError(f"{path}.{field.name}",
                              "unknown key (healthdns sets it, the file may not)")


def canonical_address(text: str, path: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ConfigError(path, f"{text!r} is not an IPv4 or IPv6 address") from None


def ip_networks(texts: Sequence[str], path: str) -> tuple[str, ...]:
    """Networks in canonical text ("192.0.2.7/24" is "192.0.2.0/24"); `path`[i] names a bad one."""
    out = []
    for i, text in enumerate(texts):
        try:
            out.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError:
            raise ConfigError(f"{path}[{i}]",
                              f"{text!r} is not an IP network (like 192.0.2.0/24)") from None
    return tuple(out)


def within(value: float, low: float, high: float, path: str, unit: str = "") -> None:
    """`low <= value <= high`, or an error that says so (`unit`, e.g. " seconds", after)."""
    if not low <= value <= high:
        raise ConfigError(path, f"{shown_number(value)} is not between {shown_number(low)} and "
                          f"{shown_number(high)}{unit}")


def shown_number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_port(value: int, path: str) -> None:
    if not 1 <= value <= 65535:
        raise ConfigError(path, f"{value} is not a port (1-65535)")


def check_one_of(value: str, choices: tuple[str, ...], path: str) -> None:
    if value not in choices:
        raise ConfigError(path, decodeerrors.not_one_of(value, choices))


def check_ttl(value: int, path: str) -> None:
    if not 0 <= value <= MAX_TTL:
        raise ConfigError(path, f"{value} is not a TTL (0-{MAX_TTL})")


def shown_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_@-]+", key) else f'"{key}"'


def convert(value: Any, kind: type[Any], path: str) -> Any:
    """msgspec.convert with our error format (`path: message`), in the file's words."""
    try:
        return msgspec.convert(value, kind, strict=True)
    except msgspec.ValidationError as e:
        steps, message = decodeerrors.explain(e, kind, value)
        where = "".join(f"[{s}]" if isinstance(s, int) else f".{shown_key(s)}" for s in steps)
        raise ConfigError((path + where).lstrip("."), message.replace("`", "")) from e
