"""How a backend address is checked (a TCP connect, or an HTTP(S) request), and the
checks of its fields.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import ssl
from typing import Literal

import msgspec

from healthdns.shared import files, regex
from healthdns.shared.config.names import absolute_name
from healthdns.shared.config.values import (
    Frozen,
    canonical_address,
    check_port,
    refuse_normalised_fields,
)
from healthdns.shared.errors import ConfigError

DEFAULT_CHECK_PORTS = {"http": 80, "https": 443}
_HTTP_FIELDS = ("method", "path", "host", "headers", "status", "body", "body_regex")
_TLS_FIELDS = ("verify", "ca_file", "ca_pem")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 5.6.2
MAX_CA_FILE = files.MIB  # a CA bundle; the system's whole bundle is about 220 KiB


class CheckSpec(Frozen, frozen=True):
    """How one backend address is checked: a TCP connect, or an HTTP(S) request."""

    port: int = 0  # 0: the kind's default (http 80, https 443); a tcp check must give one
    kind: Literal["tcp", "http", "https"] = "tcp"
    interval: float = 5.0
    timeout: float = 2.0
    rise: int = 2
    fall: int = 2
    hold_down: float = 0.0  # seconds a new state is kept at least before it may change again
    address: str | None = None  # check this address instead of the one served
    method: str = "GET"  # http and https from here on
    path: str = "/"
    host: str | None = None  # Host header; for https also the SNI name and the name verified
    headers: dict[str, str] = {}
    status: str = "200-399"  # codes that pass: "200", "200-399", "200,204,301-302"
    body: str | None = None  # the start of the body must contain this text...
    body_regex: str | None = None  # ...or match this regular expression (RE2 syntax)
    verify: bool = True  # https only: verify the server's certificate and name
    ca_file: str | None = None  # trust these CAs (PEM) instead of the system's
    ca_pem: str | None = None  # the same inline; the supervisor reads `ca_file` into it
    # With [peers]: the instances that run this check (`peers.name` of this one or of peers);
    # only they vote on it. None given: every instance (docs/sites.md).
    vantages: tuple[str, ...] = ()
    # Set by normalisation, never in the file: tells apart checks that differ only in the
    # values of their headers (0 for the first of them in the file, 1 for the next, ...).
    variant: int = 0
    # Set by normalisation, never in the file: `status` parsed, as (first, last) pairs.
    ranges: tuple[tuple[int, int], ...] = ((200, 399),)

    def checked(self, address: str) -> str:
        """The address a check connects to for the served `address`."""
        return self.address or address

    def target(self, address: str) -> str:
        """The identity of one check: equal for every name and zone that checks the same thing.

        "tcp 192.0.2.1 80 5/2/2/2"; checks with more settings than these (HTTP, hold-down) end
        with a digest of all of them, so two checks share an id only if they are the same.
        Header values are left out of the digest (a guessable `Authorization` value would be
        found from it by trying); `variant` tells apart the checks that differ only in them.
        The id is shown on /status and kept in the state file: it must hold no secret.
        """
        base = (f"{self.kind} {self.checked(address)} {self.port} "
                f"{self.interval:g}/{self.timeout:g}/{self.rise}/{self.fall}")
        if self.kind == "tcp" and not self.hold_down:
            return base
        digest = hashlib.blake2s(self._identity(), digest_size=6).hexdigest()
        return f"{base} {digest}"

    def _identity(self) -> bytes:
        """What the digest of `target` is taken of: every field, header values blanked, except
        `ranges`, which restates `status`: ids stay those that state files already hold; and
        `vantages`, which says where it runs (instances with other placements share ids)."""
        fields = msgspec.structs.asdict(self.without_secrets())
        del fields["ranges"], fields["vantages"]  # where a check runs is not what it checks
        return msgspec.msgpack.encode(fields)

    def without_secrets(self) -> CheckSpec:
        """This check with its header values blanked (their names stay)."""
        if not self.headers:
            return self
        return msgspec.structs.replace(self, headers=dict.fromkeys(self.headers, ""))


def normalise_check(raw: CheckSpec, path: str) -> CheckSpec:
    refuse_normalised_fields(raw, ("variant", "ranges"), path)
    port = raw.port or DEFAULT_CHECK_PORTS.get(raw.kind, 0)
    if not port:
        raise ConfigError(f"{path}.port", "a tcp check needs a port")
    check_port(port, f"{path}.port")
    _check_timing(raw, path)
    address = canonical_address(raw.address, f"{path}.address") if raw.address is not None else None
    default = CheckSpec()
    wrong = _HTTP_FIELDS + _TLS_FIELDS if raw.kind == "tcp" else _TLS_FIELDS
    for field in wrong if raw.kind != "https" else ():
        if getattr(raw, field) != getattr(default, field):
            kinds = "https" if field in _TLS_FIELDS else "http and https"
            raise ConfigError(f"{path}.{field}",
                              f"is for {kinds} checks, and this one is {raw.kind}")
    if raw.kind == "tcp":
        return msgspec.structs.replace(raw, port=port, address=address)
    ranges = _status_ranges(raw.status, f"{path}.status")
    return msgspec.structs.replace(
        raw, port=port, address=address, host=_http(raw, path),
        status=_status_text(ranges), ranges=ranges,
        ca_pem=_ca(raw, path) if raw.kind == "https" else None)


def _check_timing(raw: CheckSpec, path: str) -> None:
    if not 0.05 <= raw.interval <= 86400:
        raise ConfigError(f"{path}.interval", f"{raw.interval:g} is not between 0.05 and 86400 s")
    if not 0 < raw.timeout <= raw.interval:
        raise ConfigError(f"{path}.timeout",
                          f"{raw.timeout:g} must be positive and at most the interval "
                          f"({raw.interval:g} s)")
    for field in ("rise", "fall"):
        value = getattr(raw, field)
        if not 1 <= value <= 100:
            raise ConfigError(f"{path}.{field}", f"{value} is not between 1 and 100")
    if not 0 <= raw.hold_down <= 86400:
        raise ConfigError(f"{path}.hold_down", f"{raw.hold_down:g} is not between 0 and 86400 s")


def _http(raw: CheckSpec, path: str) -> str | None:
    """Check the request and body fields of an http(s) check; returns the normalised host."""
    if not re.fullmatch(r"[A-Z]{1,20}", raw.method):
        raise ConfigError(f"{path}.method", f"{raw.method!r} is not an HTTP method "
                          "(like GET or HEAD)")
    if not raw.path.startswith("/") or re.search(r"[\s\x00-\x1f\x7f]", raw.path):
        raise ConfigError(f"{path}.path",
                          f"{raw.path!r} must start with / and hold no spaces")
    for name, value in raw.headers.items():
        if not _TOKEN.fullmatch(name):
            raise ConfigError(f"{path}.headers", f"{name!r} is not a header name")
        if name.lower() == "host":
            raise ConfigError(f"{path}.headers.{name}", "set the Host header with `host`")
        if re.search(r"[\r\n\x00]", value):  # the value is not shown: it may be a secret
            raise ConfigError(f"{path}.headers.{name}", "the value holds a line break or NUL")
    if raw.body is not None and raw.body_regex is not None:
        raise ConfigError(f"{path}.body_regex", "give body or body_regex, not both")
    if raw.body == "":
        raise ConfigError(f"{path}.body", "is empty: leave it out to accept any body")
    if raw.body_regex is not None:
        try:
            regex.compile(raw.body_regex)
        except regex.PatternError as e:
            raise ConfigError(f"{path}.body_regex", f"{raw.body_regex!r} is not a valid "
                              f"regular expression: {e}") from None
    if raw.method == "HEAD" and (raw.body is not None or raw.body_regex is not None):
        raise ConfigError(f"{path}.method", "a HEAD response has no body to match")
    if raw.host is None:
        return None
    try:
        return str(ipaddress.ip_address(raw.host))
    except ValueError:
        return absolute_name(raw.host, f"{path}.host").to_text(omit_final_dot=True)


def _status_ranges(text: str, path: str) -> tuple[tuple[int, int], ...]:
    ranges: list[tuple[int, int]] = []
    for part in text.split(","):
        found = re.fullmatch(r"\s*([1-5]\d\d)\s*(?:-\s*([1-5]\d\d)\s*)?", part)
        if not found:
            raise ConfigError(path, f"{text!r} is not a list of status codes and ranges "
                              '(like "200-399" or "200,204")')
        first, last = int(found[1]), int(found[2] or found[1])
        if last < first:
            raise ConfigError(path, f"{text!r}: the range {first}-{last} is empty")
        ranges.append((first, last))
    return tuple(ranges)


def _status_text(ranges: tuple[tuple[int, int], ...]) -> str:
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def _ca(raw: CheckSpec, path: str) -> str | None:
    """The PEM text of the CAs an https check trusts (None: the system's)."""
    field = "ca_file" if raw.ca_file is not None else "ca_pem"
    pem = raw.ca_pem
    if not raw.verify and (raw.ca_file is not None or pem is not None):
        raise ConfigError(f"{path}.{field}", "is pointless with verify = false")
    if raw.ca_file is not None:
        try:
            text = files.read(raw.ca_file, MAX_CA_FILE).data.decode("ascii")
        except files.FileProblem as e:
            why = (f"cannot read {raw.ca_file!r}: {e.strerror}" if e.strerror
                   else f"{raw.ca_file!r} {e.reason}")
            raise ConfigError(f"{path}.ca_file", why) from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}.ca_file", f"{raw.ca_file!r} is not a PEM file") from None
        if pem is not None and pem != text:
            raise ConfigError(f"{path}.ca_pem", "give ca_file or ca_pem, not both")
        pem = text
    if pem is not None:
        try:
            ssl.create_default_context(cadata=pem)
        except (ssl.SSLError, ValueError) as e:
            raise ConfigError(f"{path}.{field}",
                              f"holds no usable PEM certificate: {e}") from None
    return pem
