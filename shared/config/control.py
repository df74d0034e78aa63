"""The supervisor's HTTP control endpoint: where it listens, its tokens, TLS and hosts."""

from __future__ import annotations

import ipaddress
import re
import ssl
import stat

import msgspec

from healthdns.shared import files, tls
from healthdns.shared.config.endpoints import Endpoint, format_endpoint, parse_endpoint
from healthdns.shared.config.names import LABEL
from healthdns.shared.config.values import Frozen, refuse_normalised_fields
from healthdns.shared.errors import ConfigError

DEFAULT_CONTROL = "127.0.0.1:8053"
MAX_TOKEN_FILE = 4096  # a bearer token is a line, not a document
MAX_PEM_FILE = 256 * files.KIB  # a certificate chain of a few certificates, or a private key
MIN_TOKEN = 16  # characters: a short token is guessed by trying
_BEARER = re.compile(r"[A-Za-z0-9._~+/-]+=*")  # RFC 6750 2.1 token68


class ControlSpec(Frozen, frozen=True):
    """The supervisor's HTTP control endpoint (metrics, status, overrides)."""

    listen: str | None = None  # ADDR:PORT; "" turns the endpoint off; None: DEFAULT_CONTROL
    # Whether an address that cannot be bound stops the start. None (normalised away): yes
    # when `listen` is given; no for the default, which a second server on the host may hold.
    required: bool | None = None
    token: str | None = None  # bearer token of write calls; none: write calls are refused
    token_file: str | None = None  # the same read from a file (normalised into `token`)
    read_token: str | None = None  # bearer token reads need (the write token does too)
    read_token_file: str | None = None  # (normalised into `read_token`)
    allowed_hosts: tuple[str, ...] = ()  # Host values accepted besides the listen address
    cert: str | None = None  # PEM certificate chain: the endpoint speaks HTTPS
    key: str | None = None  # PEM private key of `cert`
    # What `cert` and `key` hold, read by the configuration check: the running supervisor
    # may not be allowed to read a root-owned key itself. Never set in a file.
    cert_pem: str | None = None
    key_pem: str | None = None
    state_file: str | None = None  # where overrides are kept across restarts
    # Set by normalisation, never in the file: `listen` parsed; None when the endpoint is off.
    listener: Endpoint | None = parse_endpoint(DEFAULT_CONTROL, 0, "control.listen")

    def endpoint(self) -> Endpoint | None:
        """(host, port) to bind, None when the endpoint is off."""
        return self.listener

    def tls(self) -> ssl.SSLContext | None:
        """The server side of TLS for the endpoint; None: plain HTTP."""
        if self.cert_pem is None or self.key_pem is None:
            return None
        return tls.server_context(self.cert_pem, self.key_pem)


def normalise_control(raw: ControlSpec) -> ControlSpec:
    if raw.state_file == "":
        raise ConfigError("control.state_file", "is empty: leave it out to keep overrides "
                          "in memory only")
    refuse_normalised_fields(raw, ("listener",), "control")
    cert_pem, key_pem = _control_tls(raw)
    listener = _control_listen(DEFAULT_CONTROL if raw.listen is None else raw.listen)
    return msgspec.structs.replace(
        raw, listen="" if listener is None else format_endpoint(*listener), listener=listener,
        required=raw.listen is not None if raw.required is None else raw.required,
        token=_bearer(raw.token, raw.token_file, "control.token"),
        read_token=_bearer(raw.read_token, raw.read_token_file, "control.read_token"),
        allowed_hosts=tuple(_allowed_host(h, f"control.allowed_hosts[{i}]")
                            for i, h in enumerate(raw.allowed_hosts)),
        cert_pem=cert_pem, key_pem=key_pem)


def _control_listen(listen: str) -> Endpoint | None:
    if not listen:
        return None
    endpoint = parse_endpoint(listen, 0, "control.listen")
    if endpoint.port == 0 and ":" not in listen.rsplit("]", 1)[-1]:
        raise ConfigError("control.listen", f"{listen!r} has no port (like "
                          f"{DEFAULT_CONTROL!r})")
    return endpoint


def _bearer(inline: str | None, file: str | None, path: str) -> str | None:
    """A bearer token given inline (`path`) or in a file (`path`_file)."""
    if inline is not None and file is not None:
        raise ConfigError(f"{path}_file", f"give {path.split('.')[-1]} or "
                          f"{path.split('.')[-1]}_file, not both")
    token = inline
    if file is not None:
        try:
            token = files.read(file, MAX_TOKEN_FILE).data.decode().strip()
        except files.FileProblem as e:
            why = f"cannot read {file!r}: {e.strerror}" if e.strerror else f"{file!r} {e.reason}"
            raise ConfigError(f"{path}_file", why) from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}_file", f"{file!r} is not text") from None
    field = path if file is None else f"{path}_file"
    if token is not None and (len(token) < MIN_TOKEN or not _BEARER.fullmatch(token)):
        raise ConfigError(field, f"the token must be at least {MIN_TOKEN} characters of "
                          "letters, digits and -._~+/ (like the output of `openssl rand -hex "
                          "32`)")
    return token


def _allowed_host(text: str, path: str) -> str:
    """A Host value the endpoint accepts, normalised: "*", or a name or address with an
    optional port ("status.example.net", "[2001:db8::1]:8053")."""
    host = text.strip().lower()
    if host == "*":
        return host
    port = ""
    if host.startswith("["):
        host, _, port = host[1:].partition("]")
        port = port.removeprefix(":")
    elif host.count(":") == 1:
        host, _, port = host.partition(":")
    if port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError(path, f"{text!r}: {port!r} is not a port (1-65535)")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        labels = host.rstrip(".").split(".")
        if len(host) > 253 or not all(LABEL.match(label) for label in labels):
            raise ConfigError(path, f"{text!r} is neither a host name nor an address (like "
                              "'status.example.net' or 'status.example.net:8053'), nor "
                              "'*'") from None
        name = host.rstrip(".")
    else:
        name = f"[{address}]" if address.version == 6 else str(address)
    return f"{name}:{port}" if port else name


def _control_tls(raw: ControlSpec) -> tuple[str | None, str | None]:
    """The text of the certificate chain and key files, checked: they load together."""
    for field in ("cert_pem", "key_pem"):
        if getattr(raw, field) is not None:
            raise ConfigError(f"control.{field}", "is read from control.cert and control.key; "
                              "give those instead")
    if raw.cert is None and raw.key is None:
        return None, None
    if raw.cert is None or raw.key is None:
        missing = "cert" if raw.cert is None else "key"
        raise ConfigError(f"control.{missing}", "is needed too: give cert and key together "
                          "(PEM files)")
    cert = _pem_file(raw.cert, "control.cert")[0]
    key, mode = _pem_file(raw.key, "control.key")
    if mode & (stat.S_IWGRP | stat.S_IRWXO):
        raise ConfigError("control.key", f"{raw.key!r} has mode {mode:03o}: others must have "
                          "no access to a private key and the group read access at most; "
                          f"chmod 600 {raw.key}")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=cert)
    except (ssl.SSLError, ValueError):
        raise ConfigError("control.cert", f"{raw.cert!r} holds no PEM certificate") from None
    try:
        tls.server_context(cert, key)
    except tls.PassphraseNeeded:
        raise ConfigError("control.key", f"{raw.key!r} is encrypted, and a server that starts "
                          "by itself cannot ask for the passphrase: decrypt it (openssl pkey "
                          "-in KEY -out PLAIN)") from None
    except ssl.SSLError as e:
        why = ("is not the private key of the certificate in " + repr(raw.cert)
               if e.reason == "KEY_VALUES_MISMATCH" else f"holds no usable PEM private key "
               f"({e.reason or e})")
        raise ConfigError("control.key", f"{raw.key!r} {why}") from None
    return cert, key


def _pem_file(file: str, path: str) -> tuple[str, int]:
    """The text of a PEM file, and its mode."""
    try:
        contents = files.read(file, MAX_PEM_FILE)
        return contents.data.decode("ascii"), stat.S_IMODE(contents.status.st_mode)
    except files.FileProblem as e:
        why = f"cannot read {file!r}: {e.strerror}" if e.strerror else f"{file!r} {e.reason}"
        raise ConfigError(path, why) from None
    except UnicodeDecodeError:
        raise ConfigError(path, f"{file!r} is not a PEM file (not ASCII text)") from None
