"""The server section: processes, sockets, logging and the account the roles run as."""

from __future__ import annotations

import os
import re

import msgspec

from healthdns.shared.config.endpoints import format_endpoint, parse_endpoint
from healthdns.shared.config.values import (
    Frozen,
    check_one_of,
    check_port,
    refuse_normalised_fields,
    shown_number,
    within,
)
from healthdns.shared.errors import ConfigError
from healthdns.shared.messages import PROBES_PERIOD, STATS_PERIOD

DEFAULT_PORT = 53053
# Children send the supervisor something at least this often (their heartbeat): a watch of
# fewer than three periods would take a child whose report is a little late for a hung one.
REPORT_PERIOD = max(STATS_PERIOD, PROBES_PERIOD)
HUNG_AFTER_MIN = 3 * REPORT_PERIOD
_INSTANCE = re.compile(r"[A-Za-z0-9._-]{1,32}")
_ACCOUNT = re.compile(r"^([a-z_][a-z0-9_.-]{0,31}\$?|[0-9]{1,10})$", re.IGNORECASE)
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")


def _every_interface(port: int) -> tuple[tuple[str, int, bool], ...]:
    """Where the responders listen without `listen`: IPv6 too where the host has it."""
    return (("0.0.0.0", port, True), ("::", port, False))


class ServerSpec(Frozen, frozen=True):
    """Process and socket settings."""

    listen: tuple[str, ...] = ()
    port: int = DEFAULT_PORT
    responders: int = 0
    udp_payload_size: int = 1232
    log_level: str = "info"  # one of LOG_LEVELS
    log_format: str = "text"  # one of LOG_FORMATS
    instance: str = ""  # names this server's processes in `ps` when a host runs several
    tcp_idle_timeout: float = 10.0
    tcp_max_connections: int = 4096  # per responder; beyond it the longest-idle is closed
    tcp_max_per_client: int = 256  # per responder, per IPv4 address or IPv6 /64
    tcp_backlog: int = 1024  # listen() queue of each TCP socket
    udp_batch: int = 32  # datagrams per recvmmsg/sendmmsg call; 0: one recvfrom per query
    packet_cache: int = 10000  # UDP responses kept per responder by query bytes; 0: none
    nsid: str = ""  # RFC 5001 name server identifier, sent to clients that ask for it
    user: str = ""  # started as root: every process runs as this user (name or uid)
    group: str = ""  # ...and this group instead of the user's own
    # Started as root: the signer alone runs as this user (its own primary group), so that
    # only it can read the keys it writes; empty: `user`.
    signer_user: str = ""
    # A responder or the prober that sends nothing (not even its 1 s heartbeat) for this long
    # is hung (stopped, stuck): killed and respawned. 0: never.
    hung_after: float = 5.0
    # A restart serves the health kept in control.state_file when it is younger than this.
    # None: three times the longest check interval; 0: never (wait for the first round).
    warm_start_max_age: float | None = None
    # Set by normalisation, never in the file: `listen` parsed, as (host, port, required).
    listeners: tuple[tuple[str, int, bool], ...] = _every_interface(DEFAULT_PORT)

    def endpoints(self) -> list[tuple[str, int, bool]]:
        """(host, port, required): without `listen`, all interfaces, IPv6 only where it exists."""
        return list(self.listeners)


def _listeners(raw: ServerSpec) -> tuple[tuple[str, int, bool], ...]:
    if not raw.listen:
        return _every_interface(raw.port)
    return tuple((*parse_endpoint(e, raw.port, f"server.listen[{i}]"), True)
                 for i, e in enumerate(raw.listen))


def normalise_server(raw: ServerSpec) -> ServerSpec:
    check_port(raw.port, "server.port")
    check_one_of(raw.log_level, LOG_LEVELS, "server.log_level")
    check_one_of(raw.log_format, LOG_FORMATS, "server.log_format")
    _instance(raw.instance)
    refuse_normalised_fields(raw, ("listeners",), "server")
    listeners = _listeners(raw)
    listen = tuple(format_endpoint(h, p) for h, p, _ in listeners) if raw.listen else ()
    # The CPUs this process may run on (a container's limit), not the host's count.
    responders = raw.responders or min(128, len(os.sched_getaffinity(0)))
    within(responders, 1, 128, "server.responders")
    within(raw.udp_payload_size, 512, 4096, "server.udp_payload_size")
    if raw.tcp_idle_timeout <= 0:
        raise ConfigError("server.tcp_idle_timeout", f"{raw.tcp_idle_timeout:g} is not positive")
    if raw.warm_start_max_age is not None and not 0 <= raw.warm_start_max_age <= 86400:
        raise ConfigError("server.warm_start_max_age",
                          f"{raw.warm_start_max_age:g} is not between 0 and 86400")
    within(raw.hung_after, 0, 3600, "server.hung_after")
    if 0 < raw.hung_after < HUNG_AFTER_MIN:
        raise ConfigError("server.hung_after", (
            f"{shown_number(raw.hung_after)} is less than {HUNG_AFTER_MIN:g} seconds: children "
            f"report every {REPORT_PERIOD:g} s, so a healthy one a little late would be "
            "killed as hung (0 turns the watch off)"))
    within(raw.udp_batch, 0, 1024, "server.udp_batch")
    within(raw.packet_cache, 0, 10_000_000, "server.packet_cache")
    if len(raw.nsid.encode()) > 512:
        raise ConfigError("server.nsid", "is longer than 512 bytes")
    within(raw.tcp_max_connections, 1, 1_000_000, "server.tcp_max_connections")
    if raw.tcp_max_per_client < 1:  # above tcp_max_connections it simply never applies
        raise ConfigError("server.tcp_max_per_client",
                          f"{raw.tcp_max_per_client} is not positive")
    within(raw.tcp_backlog, 1, 65535, "server.tcp_backlog")
    for field, value in (("user", raw.user), ("group", raw.group),
                         ("signer_user", raw.signer_user)):
        if value and not _ACCOUNT.match(value):
            raise ConfigError(f"server.{field}", f"{value!r} is not a user or group name")
    if raw.group and not raw.user:
        raise ConfigError("server.group", "needs server.user (the group of which user?)")
    if raw.signer_user and not raw.user:
        raise ConfigError("server.signer_user",
                          "needs server.user (the other processes' user)")
    return msgspec.structs.replace(raw, listen=listen, listeners=listeners,
                                   responders=responders)


def _instance(value: str) -> None:
    # Shown in `ps` and matched by `pgrep -f` patterns: no spaces, quotes or regex brackets.
    if value and not _INSTANCE.fullmatch(value):
        raise ConfigError("server.instance", f"{value!r} is not 1-32 letters, digits, '.', '_' "
                          "or '-'")
