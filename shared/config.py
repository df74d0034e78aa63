"""The configuration model: decoded once by the supervisor, sent to every child encoded.

Two layers, as Knot Resolver's manager does it:

* the *raw* layer is what a TOML file (or the a-healthy-dns flags) says, decoded by msgspec into
  structs that reject unknown keys;
* the *normalised* layer (`Config`) is what every role works from: names lower-cased and checked,
  addresses in canonical form, defaults filled in, conflicts rejected.

Every error is a `ConfigError` whose text starts with the path of the bad field, e.g.
``zones[0].records.www.check.port: 70000 is not a port (1-65535)``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import os
import re
import resource
import ssl
import stat
import tomllib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from healthdns.shared import decodeerrors, filekeys, files, lazy, regex, tls, tsigkeys
from healthdns.shared.errors import ConfigError
from healthdns.shared.messages import PROBES_PERIOD, STATS_PERIOD

if TYPE_CHECKING:
    import dns.exception
    import dns.name
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype
else:  # only validation needs them, and a responder only decodes (see shared/lazy.py)
    for _module in ("exception", "name", "rdata", "rdataclass", "rdatatype"):
        lazy.module(f"dns.{_module}")
    dns = lazy.module("dns")

# A name of its own: `Config.tsig`, a field, hides the module in the class body.
TsigKey = tsigkeys.Key

DEFAULT_PORT = 53053
DEFAULT_CONTROL = "127.0.0.1:8053"
MAX_TOKEN_FILE = 4096  # a bearer token is a line, not a document
MAX_PEM_FILE = 256 * files.KIB  # a certificate chain of a few certificates, or a private key
MIN_TOKEN = 16  # characters: a short token is guessed by trying
_BEARER = re.compile(r"[A-Za-z0-9._~+/-]+=*")  # RFC 6750 2.1 token68
MAX_TTL = 2**31 - 1  # RFC 2181 section 8
STATIC_TYPES = ("a", "aaaa", "cname", "mx", "txt", "srv", "caa", "ptr")
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
POLICIES = ("serve-all", "empty", "backup")
DEFAULT_CHECK_PORTS = {"http": 80, "https": 443}
MAX_WEIGHT = 100
MAX_ANSWERS = 64
# Children send the supervisor something at least this often (their heartbeat): a watch of
# fewer than three periods would take a child whose report is a little late for a hung one.
REPORT_PERIOD = max(STATS_PERIOD, PROBES_PERIOD)
HUNG_AFTER_MIN = 3 * REPORT_PERIOD
_HTTP_FIELDS = ("method", "path", "host", "headers", "status", "body", "body_regex")
_TLS_FIELDS = ("verify", "ca_file", "ca_pem")
_INSTANCE = re.compile(r"[A-Za-z0-9._-]{1,32}")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 5.6.2
MAX_CONFIG_FILE = 64 * files.MIB  # ten thousand pooled names take about 2 MiB
MAX_CA_FILE = files.MIB  # a CA bundle; the system's whole bundle is about 220 KiB
_ACCOUNT = re.compile(r"^([a-z_][a-z0-9_.-]{0,31}\$?|[0-9]{1,10})$", re.IGNORECASE)
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")
RRL_DEFAULT_RATE = 5  # responses per second: BIND's and Knot's documented starting point


class _Frozen(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every config struct: immutable, and unknown keys are errors."""


# ---------------------------------------------------------------------------------------------
# Normalised model: what the roles receive.


class CheckSpec(_Frozen, frozen=True):
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
    # Set by normalisation, never in the file: tells apart checks that differ only in the
    # values of their headers (0 for the first of them in the file, 1 for the next, ...).
    variant: int = 0

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
        digest = hashlib.blake2s(msgspec.msgpack.encode(self.without_secrets()),
                                 digest_size=6).hexdigest()
        return f"{base} {digest}"

    def without_secrets(self) -> CheckSpec:
        """This check with its header values blanked (their names stay)."""
        if not self.headers:
            return self
        return msgspec.structs.replace(self, headers=dict.fromkeys(self.headers, ""))

    def statuses(self) -> tuple[tuple[int, int], ...]:
        """The `status` ranges as (first, last) pairs."""
        return _status_ranges(self.status, "status")


class GroupSpec(_Frozen, frozen=True):
    """One failover group of a pool: addresses, their weights, and how they are checked."""

    addresses: tuple[str, ...]
    weights: tuple[int, ...] = ()  # normalised: one per address (1 when not given)
    check: CheckSpec | None = None  # normalised: always set (the pool's check when not given)


class PoolSpec(_Frozen, frozen=True):
    """A health-checked address pool (A and AAAA): failover groups in order of preference.

    The short form, `addresses` (with `weights`), is one group; normalised, every pool holds its
    addresses in `groups` only.
    """

    addresses: tuple[str, ...] = ()
    weights: tuple[int, ...] = ()
    check: CheckSpec | None = None  # the check of every group that has none of its own
    groups: tuple[GroupSpec, ...] = ()
    min_healthy: int = 1  # a group serves once this many of its addresses are up
    max_answers: int = 0  # addresses per answer, rotated by weight; 0: every chosen address
    policy: str = "serve-all"  # when every address is down: one of POLICIES
    backup: tuple[str, ...] = ()  # policy "backup": served, unchecked, when all are down


class ProberSpec(_Frozen, frozen=True):
    """The prober process."""

    # Checks in flight at once (each holds a socket); 0: sized from the targets (normalised:
    # the number, see `parallel_for`).
    parallel: int = 0
    fence_min_targets: int = 10  # self-fencing from this many targets up; 0: never


class RecordSpec(_Frozen, frozen=True):
    """Everything one owner name holds: a checked pool, static records, or both."""

    ttl: int | None = None  # normalised: the zone's ttl when not given
    pool: PoolSpec | None = None
    a: tuple[str, ...] = ()
    aaaa: tuple[str, ...] = ()
    cname: str | None = None
    mx: tuple[str, ...] = ()
    txt: tuple[str, ...] = ()
    srv: tuple[str, ...] = ()
    caa: tuple[str, ...] = ()
    ptr: tuple[str, ...] = ()

    def static(self) -> dict[str, tuple[str, ...]]:
        """Static rdata by lower-case type name, in zone-file syntax."""
        out = {t: getattr(self, t) for t in STATIC_TYPES if t != "cname" and getattr(self, t)}
        if self.cname is not None:
            out["cname"] = (self.cname,)
        return out


class SoaSpec(_Frozen, frozen=True):
    """SOA fields (RFC 1035 3.3.13); the serial is the signer's business."""

    rname: str | None = None
    ttl: int = 3600
    refresh: int = 7200
    retry: int = 3600
    expire: int = 1209600
    minimum: int = 60


ALGORITHMS = ("ECDSAP256SHA256", "ED25519", "ECDSAP384SHA384", "RSASHA256")


class DnssecSpec(_Frozen, frozen=True):
    """Signing of one zone (and its aliases): only the signer signs with the key files.

    One combined signing key (`csk`), or a `ksk` and a `zsk`. Times are in seconds.
    """

    algorithm: str = "ECDSAP256SHA256"
    csk: str | None = None
    ksk: str | None = None
    zsk: str | None = None
    allow_group_read: bool = False  # key files may be group-readable (mode 640; containers)
    denial: str = "nsec"  # or "nsec3" (RFC 9276: no salt, no extra iterations)
    cds: bool = False  # publish CDS and CDNSKEY at the apex (RFC 7344, 8078)
    dnskey_ttl: int = 3600
    validity: int = 14 * 86400  # signature lifetime
    refresh: int = 7 * 86400  # re-sign when less than this is left
    inception_offset: int = 3600  # inception this far in the past (clock skew)
    # Keys whose DNSKEY is published but that sign nothing: a key rollover's new key before
    # it signs, or its old key after (see docs/operations.md, "Rolling a DNSSEC key").
    publish: tuple[str, ...] = ()

    def key_files(self) -> list[tuple[str, str]]:
        """(role, path) of every key: csk, or ksk then zsk."""
        if self.csk is not None:
            return [("csk", self.csk)]
        assert self.ksk is not None and self.zsk is not None
        return [("ksk", self.ksk), ("zsk", self.zsk)]


class ZoneSpec(_Frozen, frozen=True):
    """One zone and the alias zones that serve the same data under other names."""

    origin: str
    nameservers: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    ttl: int = 300
    ns_ttl: int = 3600
    soa: SoaSpec = SoaSpec()
    records: dict[str, RecordSpec] = {}
    dnssec: DnssecSpec | None = None


class ServerSpec(_Frozen, frozen=True):
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
    # A responder or the prober that sends nothing (not even its 1 s heartbeat) for this long
    # is hung (stopped, stuck): killed and respawned. 0: never.
    hung_after: float = 5.0
    # A restart serves the health kept in control.state_file when it is younger than this.
    # None: three times the longest check interval; 0: never (wait for the first round).
    warm_start_max_age: float | None = None

    def endpoints(self) -> list[tuple[str, int, bool]]:
        """(host, port, required): without `listen`, all interfaces, IPv6 only where it exists."""
        if self.listen:
            return [(*parse_endpoint(e, self.port, "server.listen"), True) for e in self.listen]
        return [("0.0.0.0", self.port, True), ("::", self.port, False)]


class ControlSpec(_Frozen, frozen=True):
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

    def endpoint(self) -> tuple[str, int] | None:
        """(host, port) to bind, None when the endpoint is off."""
        listen = DEFAULT_CONTROL if self.listen is None else self.listen
        return parse_endpoint(listen, 0, "control.listen") if listen else None

    def tls(self) -> ssl.SSLContext | None:
        """The server side of TLS for the endpoint; None: plain HTTP."""
        if self.cert_pem is None or self.key_pem is None:
            return None
        return tls.server_context(self.cert_pem, self.key_pem)


class RrlSpec(_Frozen, frozen=True):
    """Response Rate Limiting of UDP answers per client prefix (docs: `[rrl]`).

    Off unless `enabled = true` or a rate is given; a rate of 0 leaves that class unlimited.
    """

    # Normalised, the four below are set: `enabled` to `active()`, the rates to `rates()`.
    enabled: bool | None = None  # None: on exactly when responses_per_second is given
    responses_per_second: int | None = None  # positive answers per prefix and name
    nxdomains_per_second: int | None = None  # None: as responses_per_second
    errors_per_second: int | None = None  # None: as responses_per_second
    window: int = 15  # seconds of excess a flooding prefix must wait out (BIND's window)
    slip: int = 2  # every Nth limited answer goes out truncated (TC=1); 0: drop every one
    dry_run: bool = False  # count what would be limited, limit nothing
    ipv4_prefix: int = 24
    ipv6_prefix: int = 56
    exempt: tuple[str, ...] = ()  # networks never limited, e.g. "192.0.2.0/24"
    table_size: int = 65536  # accounts in the table shared by the responders

    def active(self) -> bool:
        return self.enabled if self.enabled is not None else self.responses_per_second is not None

    def rates(self) -> tuple[int, int, int]:
        """Responses per second for (positive and large, NXDOMAIN, error) answers."""
        base = RRL_DEFAULT_RATE if self.responses_per_second is None \
            else self.responses_per_second
        nxdomain = base if self.nxdomains_per_second is None else self.nxdomains_per_second
        error = base if self.errors_per_second is None else self.errors_per_second
        return base, nxdomain, error


class CookieSpec(_Frozen, frozen=True):
    """DNS cookies (RFC 7873) with interoperable server cookies (RFC 9018)."""

    enabled: bool = True
    rotation: int = 3600  # seconds each secret is used to mint cookies; the previous one
    # is still accepted for as long again


class TsigKeySpec(_Frozen, frozen=True):
    """A TSIG key (RFC 8945): inline, or read from a tsig-keygen/keymgr file (docs: `[[tsig]]`)."""

    name: str = ""  # normalised: lower case, no final dot; with `file`, may pick one key of it
    algorithm: str = "hmac-sha256"
    secret: str = ""  # base64; normalised: the file's secret when `file` is given
    file: str = ""


class SecondarySpec(_Frozen, frozen=True):
    """A secondary fed by transfers: sent NOTIFY, and allowed to transfer from its address."""

    address: str  # ADDR[:PORT] its NOTIFY goes to (port 53 by default); normalised ADDR:PORT
    key: str = ""  # TSIG key name its transfers and the NOTIFY sent to it are signed with
    notify: bool = True


class TransferRuleSpec(_Frozen, frozen=True):
    """Who else may transfer: clients in `networks` signing with `key` (docs: ACLs)."""

    networks: tuple[str, ...] = ()  # e.g. "192.0.2.0/24", "2001:db8::/32"; normalised
    key: str = ""  # TSIG key name required; "" only with `require_tsig = false`


class TransferSpec(_Frozen, frozen=True):
    """The hidden primary: AXFR/IXFR on its own TCP listener, NOTIFY to the secondaries."""

    listen: tuple[str, ...] = ()  # ADDR:PORT of the transfer server; none: transfers are off
    secondaries: tuple[SecondarySpec, ...] = ()
    allow: tuple[TransferRuleSpec, ...] = ()
    require_tsig: bool = True  # every secondary and rule must name a key
    notify_source: str = ""  # the address NOTIFY is sent from ("": the kernel's choice)
    notify_retries: int = 5  # NOTIFY resends without an answer, the wait doubling each time
    notify_timeout: float = 1.0  # seconds before the first resend
    journal: int = 100  # IXFR diffs kept per zone; older serials get an AXFR (RFC 1995 4)
    max_connections: int = 64
    idle_timeout: float = 10.0

    def enabled(self) -> bool:
        return bool(self.listen)

    def endpoints(self) -> list[tuple[str, int]]:
        return [parse_endpoint(e, 53, "transfer.listen") for e in self.listen]


class Config(_Frozen, frozen=True):
    """The whole normalised configuration."""

    server: ServerSpec = ServerSpec()
    rrl: RrlSpec = RrlSpec()
    cookies: CookieSpec = CookieSpec()
    prober: ProberSpec = ProberSpec()
    control: ControlSpec = ControlSpec()
    transfer: TransferSpec = TransferSpec()
    tsig: tuple[TsigKeySpec, ...] = ()
    zones: tuple[ZoneSpec, ...] = ()

    def tsig_keys(self) -> list[TsigKey]:
        """The TSIG keys, decoded (normalised: each has its secret)."""
        return [tsigkeys.Key(k.name, k.algorithm, tsigkeys.secret(k.secret)) for k in self.tsig]

    def checks(self) -> dict[str, tuple[str, CheckSpec]]:
        """Every distinct check (target id -> checked address, spec) across all zones."""
        return _checks(self.zones)

    def served(self) -> dict[str, tuple[str, ...]]:
        """The names whose answers each check target decides (target id -> names without the
        final dot, in config order; alias zones, which repeat the names, left out)."""
        out: dict[str, dict[str, None]] = {}  # dicts as ordered sets: a name is added once
        for zone in self.zones:
            origin = dns.name.from_text(zone.origin)
            for owner, record in zone.records.items():
                if record.pool is None:
                    continue
                name = dns.name.from_text(owner, origin).to_text(omit_final_dot=True)
                for group in record.pool.groups:
                    check = group.check
                    assert check is not None  # normalised
                    for address in group.addresses:
                        out.setdefault(check.target(address), {})[name] = None
        return {target: tuple(names) for target, names in out.items()}


def _checks(zones: tuple[ZoneSpec, ...]) -> dict[str, tuple[str, CheckSpec]]:
    out: dict[str, tuple[str, CheckSpec]] = {}
    for zone in zones:
        for record in zone.records.values():
            for group in record.pool.groups if record.pool is not None else ():
                check = group.check
                assert check is not None  # normalised
                for address in group.addresses:
                    out[check.target(address)] = (check.checked(address), check)
    return out


# ---------------------------------------------------------------------------------------------
# The prober's parallel checks: enough for every check to start on time when every target is
# silent, each check then holding its socket for its whole timeout.

PARALLEL_FLOOR = 2048  # the least: a first round of a few thousand targets starts at once
PARALLEL_MAX = 1 << 20  # Linux's default nr_open: no process holds more files
CHECK_SLACK = 0.05  # seconds a slot stays taken past a timeout (timer batching, loop delay)
FILES_KEPT = 64  # descriptors the prober needs besides its checks (pipe, loop, logs, HTTP)


def in_flight(checks: Mapping[str, tuple[str, CheckSpec]]) -> int:
    """Checks in flight at once when no target answers: each target holds one slot for its
    timeout once per interval (never two: a check that overruns delays the next)."""
    load = sum(min(1.0, (spec.timeout + CHECK_SLACK) / spec.interval)
               for _, spec in checks.values())
    return math.ceil(load)


def file_room() -> int:
    """The checks the prober's open files limit holds (it raises its soft limit to the hard)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    files = PARALLEL_MAX if hard == resource.RLIM_INFINITY else min(hard, PARALLEL_MAX)
    return max(1, files - FILES_KEPT)


def parallel_for(checks: Mapping[str, tuple[str, CheckSpec]]) -> int:
    """The default `prober.parallel`: every check on time with every target silent, with a
    tenth to spare, at least PARALLEL_FLOOR, at most what the open files limit holds."""
    return min(max(PARALLEL_FLOOR, math.ceil(in_flight(checks) * 1.1)), file_room())


# ---------------------------------------------------------------------------------------------
# Raw layer: the shape of the TOML file. Records are decoded one by one so errors carry the name.


class _RawZone(_Frozen, frozen=True):
    origin: str
    nameservers: list[str]
    aliases: list[str] = []
    ttl: int = 300
    ns_ttl: int = 3600
    soa: SoaSpec = SoaSpec()
    records: dict[str, dict[str, Any]] = {}
    dnssec: DnssecSpec | None = None


class _RawConfig(_Frozen, frozen=True):
    server: ServerSpec = ServerSpec()
    rrl: RrlSpec = RrlSpec()
    cookies: CookieSpec = CookieSpec()
    prober: ProberSpec = ProberSpec()
    control: ControlSpec = ControlSpec()
    transfer: TransferSpec = TransferSpec()
    tsig: list[TsigKeySpec] = []
    zones: list[_RawZone] = []


def load(path: str | os.PathLike[str]) -> Config:
    """Read, decode and normalise a TOML configuration file."""
    return from_mapping(read(path))


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The TOML document at `path`, as plain data; relative file paths in it are made absolute
    under the file's folder (see shared/filekeys.py)."""
    try:
        document = tomllib.loads(files.read(path, MAX_CONFIG_FILE).data.decode())
        return filekeys.resolve(document, os.path.dirname(os.path.abspath(path)))
    except files.FileProblem as e:
        raise ConfigError(str(path), e.reason) from e
    except UnicodeDecodeError as e:
        raise ConfigError(str(path), f"not valid TOML: not UTF-8 ({e.reason})") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(path), f"not valid TOML: {e}") from e


def from_mapping(document: Mapping[str, Any]) -> Config:
    """Decode and normalise a configuration given as plain data (TOML tables, JSON objects)."""
    raw = _convert(document, _RawConfig, "")
    zones = _variants(tuple(_zone(z, f"zones[{i}]") for i, z in enumerate(raw.zones)))
    if not zones:
        raise ConfigError("zones", "at least one zone is required")
    _check_unique_origins(zones)
    server = _server(raw.server)
    keys = _tsig(raw.tsig)
    return Config(server=server, rrl=_rrl(raw.rrl), cookies=_cookies(raw.cookies),
                  prober=_prober(raw.prober, zones), control=_control(raw.control),
                  transfer=_transfer(raw.transfer, server, keys), tsig=keys, zones=zones)


def warnings(config: Config) -> list[tuple[str, str]]:
    """(path, message) of each setting that works but is most likely a mistake."""
    out: list[tuple[str, str]] = _parallel_warnings(config)
    for i, zone in enumerate(config.zones):
        out += _soa_warnings(zone.soa, f"zones[{i}].soa")
        if zone.dnssec is not None and config.transfer.enabled():
            out += _expire_warnings(zone.soa, zone.dnssec, f"zones[{i}]")
        out += _cname_loops(zone, f"zones[{i}].records")
    return out + _control_warnings(config.control)


def _parallel_warnings(config: Config) -> list[tuple[str, str]]:
    # A check that waits for a slot starts late, and so does every result after it: failover
    # takes longer than interval x fall + timeout, just when many backends stop answering.
    checks = config.checks()
    needed, parallel = in_flight(checks), config.prober.parallel
    if parallel >= needed:
        return []
    why = (f"{parallel} checks in flight cannot keep every check on schedule: when the "
           f"targets stop answering, {needed} checks are in flight at once (each of the "
           f"{len(checks)} targets holds a socket for its timeout once per interval), and "
           "the rest wait, so failover comes late")
    room = file_room()
    if room < needed:
        fix = (f"the open files limit holds only {room}: raise it (LimitNOFILE= in systemd, "
               f"ulimit -Hn) to at least {needed + FILES_KEPT}")
    else:
        fix = f"raise it to at least {needed}, or leave it out to size it from the targets"
    return [("prober.parallel", f"{why}; {fix}")]


def _expire_warnings(soa: SoaSpec, dnssec: DnssecSpec, path: str) -> list[tuple[str, str]]:
    # A signature is renewed once less than `dnssec.refresh` of its validity is left, so the
    # signatures a secondary last transferred may have only that much life left; cut off from
    # the primary it serves them until `expire`, past their expiry (docs/transfers.md, DNSSEC).
    if soa.expire <= dnssec.refresh:
        return []
    return [(f"{path}.soa.expire", (f"{soa.expire} is longer than dnssec.refresh "
             f"({dnssec.refresh} s), the least life the signatures a secondary last transferred "
             "may have left: a secondary cut off from this primary would serve expired "
             "signatures (validating resolvers answer SERVFAIL) instead of dropping the zone; "
             f"set expire to at most {dnssec.refresh}"))]


def _soa_warnings(soa: SoaSpec, path: str) -> list[tuple[str, str]]:
    # A secondary whose refresh fails retries every `retry` seconds and drops the zone at
    # `expire`: below refresh + retry it drops the zone before its first retry (RFC 1912 2.2,
    # Zonemaster ZONE05).
    if soa.expire > soa.refresh + soa.retry:
        return []
    return [(f"{path}.expire", (f"{soa.expire} is not more than refresh + retry "
             f"({soa.refresh} + {soa.retry} s): a secondary would drop the zone before it "
             "retries a failed refresh (RFC 1912 section 2.2 suggests 2-4 weeks)"))]


def redacted(config: Config) -> Config:
    """The configuration to show a person (`--check-config`): secrets replaced (the control
    tokens and TLS key, TSIG secrets and the values of check headers)."""
    secrets = {f: "<redacted>" for f in ("token", "read_token", "key_pem")
               if getattr(config.control, f) is not None}
    if secrets:
        config = msgspec.structs.replace(
            config, control=msgspec.structs.replace(config.control, **secrets))
    if config.tsig:
        config = msgspec.structs.replace(config, tsig=tuple(
            msgspec.structs.replace(k, secret="<redacted>") for k in config.tsig))
    return msgspec.structs.replace(config, zones=_map_checks(config.zones, _redacted_headers))


def _redacted_headers(check: CheckSpec) -> CheckSpec:
    return msgspec.structs.replace(check, headers=dict.fromkeys(check.headers, "<redacted>"))


def encode(config: Config) -> bytes:
    return msgspec.msgpack.encode(config)


def decode(data: bytes) -> Config:
    return msgspec.msgpack.decode(data, type=Config)


def _convert(value: Any, kind: type[Any], path: str) -> Any:
    """msgspec.convert with our error format (`path: message`), in the file's words."""
    try:
        return msgspec.convert(value, kind, strict=True)
    except msgspec.ValidationError as e:
        steps, message = decodeerrors.explain(e, kind, value)
        where = "".join(f"[{s}]" if isinstance(s, int) else f".{_show_key(s)}" for s in steps)
        raise ConfigError((path + where).lstrip("."), message.replace("`", "")) from e


# ---------------------------------------------------------------------------------------------
# Normalisation, one function per struct.


def _server(raw: ServerSpec) -> ServerSpec:
    _port(raw.port, "server.port")
    _one_of(raw.log_level, LOG_LEVELS, "server.log_level")
    _one_of(raw.log_format, LOG_FORMATS, "server.log_format")
    _instance(raw.instance)
    listen = tuple(format_endpoint(*parse_endpoint(e, raw.port, f"server.listen[{i}]"))
                   for i, e in enumerate(raw.listen))
    # The CPUs this process may run on (a container's limit), not the host's count.
    responders = raw.responders or min(128, len(os.sched_getaffinity(0)))
    _within(responders, 1, 128, "server.responders")
    _within(raw.udp_payload_size, 512, 4096, "server.udp_payload_size")
    if raw.tcp_idle_timeout <= 0:
        raise ConfigError("server.tcp_idle_timeout", f"{raw.tcp_idle_timeout:g} is not positive")
    if raw.warm_start_max_age is not None and not 0 <= raw.warm_start_max_age <= 86400:
        raise ConfigError("server.warm_start_max_age",
                          f"{raw.warm_start_max_age:g} is not between 0 and 86400")
    _within(raw.hung_after, 0, 3600, "server.hung_after")
    if 0 < raw.hung_after < HUNG_AFTER_MIN:
        raise ConfigError("server.hung_after", (
            f"{_number(raw.hung_after)} is less than {HUNG_AFTER_MIN:g} seconds: children "
            f"report every {REPORT_PERIOD:g} s, so a healthy one a little late would be "
            "killed as hung (0 turns the watch off)"))
    _within(raw.udp_batch, 0, 1024, "server.udp_batch")
    _within(raw.packet_cache, 0, 10_000_000, "server.packet_cache")
    if len(raw.nsid.encode()) > 512:
        raise ConfigError("server.nsid", "is longer than 512 bytes")
    _within(raw.tcp_max_connections, 1, 1_000_000, "server.tcp_max_connections")
    if raw.tcp_max_per_client < 1:  # above tcp_max_connections it simply never applies
        raise ConfigError("server.tcp_max_per_client",
                          f"{raw.tcp_max_per_client} is not positive")
    _within(raw.tcp_backlog, 1, 65535, "server.tcp_backlog")
    for field, value in (("user", raw.user), ("group", raw.group)):
        if value and not _ACCOUNT.match(value):
            raise ConfigError(f"server.{field}", f"{value!r} is not a user or group name")
    if raw.group and not raw.user:
        raise ConfigError("server.group", "needs server.user (the group of which user?)")
    return msgspec.structs.replace(raw, listen=listen, responders=responders)


def _rrl(raw: RrlSpec) -> RrlSpec:
    for name in ("responses_per_second", "nxdomains_per_second", "errors_per_second"):
        rate = getattr(raw, name)
        if rate is not None and not 0 <= rate <= 1_000_000:
            raise ConfigError(f"rrl.{name}", f"{rate} is not between 0 and 1000000")
    _within(raw.window, 1, 3600, "rrl.window", " seconds")
    _within(raw.slip, 0, 10, "rrl.slip")
    _within(raw.ipv4_prefix, 8, 32, "rrl.ipv4_prefix")
    _within(raw.ipv6_prefix, 16, 128, "rrl.ipv6_prefix")
    _within(raw.table_size, 1024, 16_777_216, "rrl.table_size")
    exempt = []
    for i, text in enumerate(raw.exempt):
        try:
            exempt.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError:
            raise ConfigError(f"rrl.exempt[{i}]",
                              f"{text!r} is not an IP network (like 192.0.2.0/24)") from None
    base, nxdomain, error = raw.rates()
    return msgspec.structs.replace(raw, enabled=raw.active(), responses_per_second=base,
                                   nxdomains_per_second=nxdomain, errors_per_second=error,
                                   exempt=tuple(exempt))


def _cookies(raw: CookieSpec) -> CookieSpec:
    # RFC 9018 4.3: a cookie is good for an hour; a shorter rotation ends it sooner.
    _within(raw.rotation, 60, 86400, "cookies.rotation", " seconds")
    return raw


def _tsig(raw: list[TsigKeySpec]) -> tuple[TsigKeySpec, ...]:
    """Each key with its name checked and its secret in hand (read from its file if given)."""
    keys: list[TsigKeySpec] = []
    for i, key in enumerate(raw):
        path = f"tsig[{i}]"
        keys.append(_tsig_file(key, path) if key.file else _tsig_inline(key, path))
    seen: dict[str, str] = {}
    for i, key in enumerate(keys):
        if key.name in seen:
            raise ConfigError(f"tsig[{i}].name", f"{key.name!r} is already defined by "
                              f"{seen[key.name]}")
        seen[key.name] = f"tsig[{i}]"
    return tuple(keys)


def _tsig_inline(key: TsigKeySpec, path: str) -> TsigKeySpec:
    if not key.name:
        raise ConfigError(f"{path}.name", "a key needs a name")
    if not key.secret:
        raise ConfigError(path, "a key needs a secret (base64) or a file")
    return _tsig_checked(key.name, key.algorithm, key.secret, path)


def _tsig_file(key: TsigKeySpec, path: str) -> TsigKeySpec:
    if key.secret:
        raise ConfigError(f"{path}.secret", "give the secret or a file, not both")
    try:
        text = files.read(key.file, tsigkeys.MAX_KEY_FILE).data.decode()
        found = tsigkeys.parse_file(text)
    except files.FileProblem as e:
        raise ConfigError(f"{path}.file", e.reason) from e
    except (UnicodeDecodeError, tsigkeys.KeyTextError) as e:
        raise ConfigError(f"{path}.file", f"{key.file}: {e}") from e
    wanted = [k for k in found if not key.name or _key_name(k[0], path) ==
              _key_name(key.name, f"{path}.name")]
    if not wanted:
        raise ConfigError(f"{path}.name", f"{key.file} holds no key {key.name!r} (it holds "
                          f"{', '.join(repr(k[0]) for k in found)})")
    if len(wanted) > 1:
        raise ConfigError(f"{path}.name", f"{key.file} holds several keys: name the one to use")
    name, algorithm, secret = wanted[0]
    return msgspec.structs.replace(_tsig_checked(name, algorithm, secret, path), file=key.file)


def _tsig_checked(name: str, algorithm: str, secret: str, path: str) -> TsigKeySpec:
    try:
        algorithm = tsigkeys.algorithm(algorithm)
    except tsigkeys.KeyTextError as e:
        raise ConfigError(f"{path}.algorithm", str(e)) from None
    try:
        tsigkeys.secret(secret)
    except tsigkeys.KeyTextError as e:
        raise ConfigError(f"{path}.secret", str(e)) from None
    return TsigKeySpec(name=_key_name(name, f"{path}.name"), algorithm=algorithm, secret=secret)


def _key_name(text: str, path: str) -> str:
    return absolute_name(text, path).to_text(omit_final_dot=True).lower()


def _transfer(raw: TransferSpec, server: ServerSpec,
              keys: tuple[TsigKeySpec, ...]) -> TransferSpec:
    known = {k.name for k in keys}
    listen = tuple(format_endpoint(*parse_endpoint(e, 53, f"transfer.listen[{i}]"))
                   for i, e in enumerate(raw.listen))
    served = {(h, p) for h, p, _ in server.endpoints()}
    for i, text in enumerate(listen):
        host, port = parse_endpoint(text, 53, f"transfer.listen[{i}]")
        if port and any(p == port and (h == host or h in ("0.0.0.0", "::") or
                              host in ("0.0.0.0", "::")) for h, p in served):
            raise ConfigError(f"transfer.listen[{i}]", f"{text} is also where the responders "
                              "listen: transfers need an address or port of their own")
    secondaries = tuple(_secondary(s, raw.require_tsig, known, f"transfer.secondaries[{i}]")
                        for i, s in enumerate(raw.secondaries))
    allow = tuple(_transfer_rule(r, raw.require_tsig, known, f"transfer.allow[{i}]")
                  for i, r in enumerate(raw.allow))
    if raw.notify_source:
        _address(raw.notify_source, "transfer.notify_source")
    _within(raw.notify_retries, 0, 20, "transfer.notify_retries")
    _within(raw.notify_timeout, 0.01, 60, "transfer.notify_timeout", " seconds")
    _within(raw.journal, 0, 100_000, "transfer.journal")
    _within(raw.max_connections, 1, 65536, "transfer.max_connections")
    _within(raw.idle_timeout, 0.1, 3600, "transfer.idle_timeout", " seconds")
    if (secondaries or allow) and not listen:
        raise ConfigError("transfer.listen", "secondaries or allow rules are given, but no "
                          "address to serve transfers on")
    return msgspec.structs.replace(raw, listen=listen, secondaries=secondaries, allow=allow)


def _secondary(raw: SecondarySpec, require_tsig: bool, known: set[str],
               path: str) -> SecondarySpec:
    host, port = parse_endpoint(raw.address, 53, f"{path}.address")
    return msgspec.structs.replace(raw, address=format_endpoint(host, port),
                                   key=_transfer_key(raw.key, require_tsig, known, path))


def _transfer_rule(raw: TransferRuleSpec, require_tsig: bool, known: set[str],
                   path: str) -> TransferRuleSpec:
    if not raw.networks:
        raise ConfigError(f"{path}.networks", "a rule needs at least one network "
                          '(e.g. "192.0.2.0/24"; "0.0.0.0/0" and "::/0" for any)')
    networks = []
    for i, text in enumerate(raw.networks):
        try:
            networks.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError:
            raise ConfigError(f"{path}.networks[{i}]",
                              f"{text!r} is not an IP network (like 192.0.2.0/24)") from None
    return TransferRuleSpec(networks=tuple(networks),
                            key=_transfer_key(raw.key, require_tsig, known, path))


def _transfer_key(name: str, require_tsig: bool, known: set[str], path: str) -> str:
    if not name:
        if require_tsig:
            raise ConfigError(f"{path}.key", "a TSIG key is required (transfer.require_tsig); "
                              "name a [[tsig]] key")
        return ""
    normal = _key_name(name, f"{path}.key")
    if normal not in known:
        raise ConfigError(f"{path}.key", f"{name!r} is not a [[tsig]] key"
                          + (f" (known: {', '.join(sorted(known))})" if known else ""))
    return normal


def _zone(raw: _RawZone, path: str) -> ZoneSpec:
    origin = absolute_name(raw.origin, f"{path}.origin")
    if origin == dns.name.root:
        raise ConfigError(f"{path}.origin", "the root zone is not supported")
    aliases = tuple(absolute_name(a, f"{path}.aliases[{i}]") for i, a in enumerate(raw.aliases))
    if not raw.nameservers:
        raise ConfigError(f"{path}.nameservers", "at least one nameserver is required")
    nameservers = tuple(_nameserver(n, f"{path}.nameservers[{i}]")
                        for i, n in enumerate(raw.nameservers))
    _ttl(raw.ttl, f"{path}.ttl")
    _ttl(raw.ns_ttl, f"{path}.ns_ttl")
    soa = _soa(raw.soa, origin, f"{path}.soa")
    records: dict[str, RecordSpec] = {}
    for key, value in raw.records.items():
        rpath = f"{path}.records.{_show_key(key)}"
        owner = _owner(key, origin, rpath)
        nested = [k for k, v in value.items() if isinstance(v, dict) and k != "pool"] \
            if isinstance(value, dict) else []
        meant = decodeerrors.unknown_key(nested[0], list(RecordSpec.__struct_fields__)) \
            if nested else ""
        if "did you mean" in meant:  # a misspelt field ("pol"), not a name with a dot
            raise ConfigError(f"{rpath}.{nested[0]}", meant)
        if nested:
            raise ConfigError(rpath, f"{nested[0]!r} is not a record field; a name with dots "
                              f"must be quoted in TOML: [zones.records.\"{key}.{nested[0]}\"]")
        if isinstance(value, dict) and "ns" in value:
            raise ConfigError(f"{rpath}.ns", "delegating a subdomain (NS below the apex) is not "
                              "supported; the apex NS records come from `nameservers`")
        if owner in records:
            raise ConfigError(rpath, f"the name {owner!r} is given twice")
        records[owner] = _record(_convert(value, RecordSpec, rpath), owner, origin, raw.ttl,
                                 rpath)
        _check_not_self(records[owner].cname, owner, (origin, *aliases), f"{rpath}.cname")
    dnssec = _dnssec(raw.dnssec, f"{path}.dnssec") if raw.dnssec is not None else None
    return ZoneSpec(origin=origin.to_text(), nameservers=nameservers,
                    aliases=tuple(a.to_text() for a in aliases), ttl=raw.ttl,
                    ns_ttl=raw.ns_ttl, soa=soa, records=records, dnssec=dnssec)


def _dnssec(raw: DnssecSpec, path: str) -> DnssecSpec:
    _one_of(raw.algorithm, ALGORITHMS, f"{path}.algorithm")
    _one_of(raw.denial, ("nsec", "nsec3"), f"{path}.denial")
    if raw.csk is not None and (raw.ksk is not None or raw.zsk is not None):
        raise ConfigError(path, "give either csk, or ksk and zsk, not both")
    if raw.csk is None and (raw.ksk is None or raw.zsk is None):
        raise ConfigError(path, "give a key: csk, or both ksk and zsk")
    for role, file in raw.key_files():
        if not file:
            raise ConfigError(f"{path}.{role}", "is empty: give the path of a PEM key file")
    signing = {file for _, file in raw.key_files()}
    for i, file in enumerate(raw.publish):
        if not file:
            raise ConfigError(f"{path}.publish[{i}]", "is empty: give the path of a PEM key file")
        if file in signing or file in raw.publish[:i]:
            raise ConfigError(f"{path}.publish[{i}]", f"{file} is named twice: a key either "
                              "signs or is only published, once")
    _ttl(raw.dnskey_ttl, f"{path}.dnskey_ttl")
    if not 3600 <= raw.validity <= 366 * 86400:
        raise ConfigError(f"{path}.validity", f"{raw.validity} is not between 3600 and "
                          f"{366 * 86400} s")
    if not 0 < raw.refresh < raw.validity:
        raise ConfigError(f"{path}.refresh", f"{raw.refresh} must be positive and less than "
                          f"the validity ({raw.validity} s)")
    if not 0 <= raw.inception_offset <= 86400:
        raise ConfigError(f"{path}.inception_offset",
                          f"{raw.inception_offset} is not between 0 and 86400 s")
    return raw


def _check_not_self(cname: str | None, owner: str, apexes: tuple[dns.name.Name, ...],
                    path: str) -> None:
    if cname is not None and _in_zone(cname, apexes) == owner:
        raise ConfigError(path, f"{cname!r} is the name itself: a CNAME cannot point to its "
                          "own owner (resolvers would fail on the loop)")


def _in_zone(target: str, apexes: tuple[dns.name.Name, ...]) -> str | None:
    """A CNAME target as an owner of the zone (relative text), if it is inside the zone or one
    of its aliases, which serve the same owners; `apexes` starts with the origin."""
    # The text is zone-file rdata, checked already: ". " is the root, as its rdata says.
    name = dns.name.from_text(target.strip(), origin=apexes[0]).canonicalize()
    for apex in apexes:
        if name.is_subdomain(apex):
            relative = name.relativize(apex)
            return relative.to_text() if relative != dns.name.empty else "@"
    return None


def _cname_loops(zone: ZoneSpec, path: str) -> list[tuple[str, str]]:
    """One warning per CNAME loop among the zone's own names (longer than one name: a name
    that points to itself is an error)."""
    apexes = tuple(dns.name.from_text(n) for n in (zone.origin, *zone.aliases))
    step = {owner: target for owner, record in zone.records.items()
            if record.cname is not None
            and (target := _in_zone(record.cname, apexes)) in zone.records}
    out: list[tuple[str, str]] = []
    done: set[str] = set()
    for start in sorted(step):
        chain: list[str] = []
        node: str | None = start
        while node is not None and node not in done and node not in chain:
            chain.append(node)
            node = step.get(node)
        done.update(chain)
        if node is not None and node in chain:  # this walk closed a loop
            loop = chain[chain.index(node):]
            out.append((f"{path}.{_show_key(loop[0])}.cname",
                        (f"{zone.records[loop[0]].cname!r} is part of a CNAME loop "
                        f"({' -> '.join([*loop, loop[0]])}): resolvers fail on these names")))
    return out


def _soa(raw: SoaSpec, origin: dns.name.Name, path: str) -> SoaSpec:
    for field in ("ttl", "refresh", "retry", "expire", "minimum"):
        _ttl(getattr(raw, field), f"{path}.{field}")
    rname = raw.rname if raw.rname is not None else "hostmaster"
    name = _name(rname, f"{path}.rname", origin)
    return msgspec.structs.replace(raw, rname=name.to_text())


def _record(raw: RecordSpec, owner: str, origin: dns.name.Name, zone_ttl: int,
            path: str) -> RecordSpec:
    if raw.ttl is not None:
        _ttl(raw.ttl, f"{path}.ttl")
    pool = _pool(raw.pool, f"{path}.pool") if raw.pool is not None else None
    static = raw.static()
    if pool is None and not static:
        raise ConfigError(path, "has no data: give a pool or static records (a, aaaa, cname, …)")
    if raw.cname is not None:
        others = sorted(set(static) - {"cname"}) + (["pool"] if pool else [])
        if owner == "@":
            raise ConfigError(f"{path}.cname", "a CNAME cannot be at the zone apex (RFC 1912)")
        if others:
            raise ConfigError(f"{path}.cname",
                              f"a CNAME cannot coexist with other data ({', '.join(others)})")
    if pool is not None and (raw.a or raw.aaaa):
        raise ConfigError(path, "a name with a pool cannot also have static a or aaaa records")
    fields: dict[str, Any] = {}
    for rtype, texts in static.items():
        fields[rtype] = _rdatas(rtype, texts, origin, f"{path}.{rtype}")
    if raw.cname is not None:
        fields["cname"] = fields["cname"][0]
    ttl = zone_ttl if raw.ttl is None else raw.ttl
    return msgspec.structs.replace(raw, ttl=ttl, pool=pool, **fields)


def _pool(raw: PoolSpec, path: str) -> PoolSpec:
    check = _check(raw.check, f"{path}.check") if raw.check is not None else None
    if raw.groups:
        for field in ("addresses", "weights"):
            if getattr(raw, field):
                raise ConfigError(f"{path}.{field}",
                                  "give either addresses (one group) or groups, not both")
        listed = [(g, f"{path}.groups[{i}]") for i, g in enumerate(raw.groups)]
    else:  # the short form: one group, whose errors are reported at the pool's own fields
        listed = [(GroupSpec(addresses=raw.addresses, weights=raw.weights), path)]
    seen: list[str] = []
    groups = tuple(_group(g, check, seen, where) for g, where in listed)
    largest = max(len(g.addresses) for g in groups)
    if not 1 <= raw.min_healthy <= largest:
        raise ConfigError(f"{path}.min_healthy", f"{raw.min_healthy} is not between 1 and the "
                          f"size of the largest group ({largest})")
    if not 0 <= raw.max_answers <= MAX_ANSWERS:
        raise ConfigError(f"{path}.max_answers",
                          f"{raw.max_answers} is not between 0 (all) and {MAX_ANSWERS}")
    _one_of(raw.policy, POLICIES, f"{path}.policy")
    backup = _addresses(raw.backup, f"{path}.backup", seen)
    if raw.policy == "backup" and not backup:
        raise ConfigError(f"{path}.backup", 'policy "backup" needs at least one backup address')
    if backup and raw.policy != "backup":
        raise ConfigError(f"{path}.backup",
                          f'is served only with policy = "backup", not {raw.policy!r}')
    return PoolSpec(check=check, groups=groups, min_healthy=raw.min_healthy,
                    max_answers=raw.max_answers, policy=raw.policy, backup=backup)


def _group(raw: GroupSpec, default: CheckSpec | None, seen: list[str], path: str) -> GroupSpec:
    if not raw.addresses:
        raise ConfigError(f"{path}.addresses", "at least one address is required")
    addresses = _addresses(raw.addresses, f"{path}.addresses", seen)
    weights = raw.weights or (1,) * len(addresses)
    if len(weights) != len(addresses):
        raise ConfigError(f"{path}.weights", f"{len(weights)} given for {len(addresses)} "
                          "address(es): one weight per address")
    for i, weight in enumerate(weights):
        if not 1 <= weight <= MAX_WEIGHT:
            raise ConfigError(f"{path}.weights[{i}]",
                              f"{weight} is not between 1 and {MAX_WEIGHT}")
    check = _check(raw.check, f"{path}.check") if raw.check is not None else default
    if check is None:
        raise ConfigError(f"{path}.check", "is required, for the group or the whole pool")
    return GroupSpec(addresses=addresses, weights=weights, check=check)


def _addresses(texts: tuple[str, ...], path: str, seen: list[str]) -> tuple[str, ...]:
    """Addresses in canonical form; `seen` holds those of the whole pool, which never repeat."""
    out: list[str] = []
    for i, text in enumerate(texts):
        address = _address(text, f"{path}[{i}]")
        if address in seen:
            raise ConfigError(f"{path}[{i}]", f"{text} is given twice")
        seen.append(address)
        out.append(address)
    return tuple(out)


def _check(raw: CheckSpec, path: str) -> CheckSpec:
    if raw.variant:
        raise ConfigError(f"{path}.variant", "unknown key (healthdns sets it, the file may not)")
    port = raw.port or DEFAULT_CHECK_PORTS.get(raw.kind, 0)
    if not port:
        raise ConfigError(f"{path}.port", "a tcp check needs a port")
    _port(port, f"{path}.port")
    _check_timing(raw, path)
    address = _address(raw.address, f"{path}.address") if raw.address is not None else None
    default = CheckSpec()
    wrong = _HTTP_FIELDS + _TLS_FIELDS if raw.kind == "tcp" else _TLS_FIELDS
    for field in wrong if raw.kind != "https" else ():
        if getattr(raw, field) != getattr(default, field):
            kinds = "https" if field in _TLS_FIELDS else "http and https"
            raise ConfigError(f"{path}.{field}",
                              f"is for {kinds} checks, and this one is {raw.kind}")
    if raw.kind == "tcp":
        return msgspec.structs.replace(raw, port=port, address=address)
    return msgspec.structs.replace(
        raw, port=port, address=address, host=_http(raw, path),
        status=_status_text(_status_ranges(raw.status, f"{path}.status")),
        ca_pem=_ca(raw, path) if raw.kind == "https" else None)


def _variants(zones: tuple[ZoneSpec, ...]) -> tuple[ZoneSpec, ...]:
    """The zones with each check's `variant` set: checks that differ only in header values
    are numbered in file order, so that their ids (which leave header values out) differ."""
    seen: dict[bytes, list[CheckSpec]] = {}

    def numbered(check: CheckSpec) -> CheckSpec:
        same = seen.setdefault(msgspec.msgpack.encode(check.without_secrets()), [])
        if check not in same:
            same.append(check)
        return msgspec.structs.replace(check, variant=same.index(check))

    return _map_checks(zones, numbered)


def _map_checks(zones: tuple[ZoneSpec, ...],
                change: Callable[[CheckSpec], CheckSpec]) -> tuple[ZoneSpec, ...]:
    """The zones with `change` applied to every check that sends headers, in file order."""
    def check(spec: CheckSpec | None) -> CheckSpec | None:
        return change(spec) if spec is not None and spec.headers else spec

    def pool(spec: PoolSpec) -> PoolSpec:
        if not any(c is not None and c.headers for c in (spec.check, *(g.check for g in
                                                                         spec.groups))):
            return spec
        groups = tuple(msgspec.structs.replace(g, check=check(g.check)) for g in spec.groups)
        return msgspec.structs.replace(spec, check=check(spec.check), groups=groups)

    return tuple(msgspec.structs.replace(zone, records={
        name: msgspec.structs.replace(record, pool=pool(record.pool))
        if record.pool is not None else record
        for name, record in zone.records.items()}) for zone in zones)


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


def _control(raw: ControlSpec) -> ControlSpec:
    if raw.state_file == "":
        raise ConfigError("control.state_file", "is empty: leave it out to keep overrides "
                          "in memory only")
    cert_pem, key_pem = _control_tls(raw)
    return msgspec.structs.replace(
        raw, listen=DEFAULT_CONTROL if raw.listen is None else _control_listen(raw.listen),
        required=raw.listen is not None if raw.required is None else raw.required,
        token=_bearer(raw.token, raw.token_file, "control.token"),
        read_token=_bearer(raw.read_token, raw.read_token_file, "control.read_token"),
        allowed_hosts=tuple(_allowed_host(h, f"control.allowed_hosts[{i}]")
                            for i, h in enumerate(raw.allowed_hosts)),
        cert_pem=cert_pem, key_pem=key_pem)


def _control_listen(listen: str) -> str:
    if not listen:
        return ""
    host, port = parse_endpoint(listen, 0, "control.listen")
    if port == 0 and ":" not in listen.rsplit("]", 1)[-1]:
        raise ConfigError("control.listen", f"{listen!r} has no port (like "
                          f"{DEFAULT_CONTROL!r})")
    return format_endpoint(host, port)


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
        if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
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


def _control_warnings(control: ControlSpec) -> list[tuple[str, str]]:
    # Off loopback, whoever reaches the port reads every backend, check and override, and
    # without TLS a token crosses the network in clear.
    endpoint = control.endpoint()
    if endpoint is None or ipaddress.ip_address(endpoint[0]).is_loopback:
        return []
    if control.cert_pem is not None or control.read_token is not None:
        return []
    return [("control.listen", (f"{control.listen} is not a loopback address, and the "
             "endpoint has neither TLS (cert and key) nor a read_token: whoever reaches it "
             "reads every backend, check and override, and a write token crosses the network "
             "in clear; set read_token_file, cert and key, or listen on 127.0.0.1"))]


def _prober(raw: ProberSpec, zones: tuple[ZoneSpec, ...]) -> ProberSpec:
    _within(raw.parallel, 0, PARALLEL_MAX, "prober.parallel")
    if raw.fence_min_targets < 0 or raw.fence_min_targets == 1:
        raise ConfigError("prober.fence_min_targets",
                          f"{raw.fence_min_targets} is neither 0 (never) nor 2 or more")
    if raw.parallel:
        return raw
    return msgspec.structs.replace(raw, parallel=parallel_for(_checks(zones)))


# What each static type's data looks like, for the error message.
_SYNTAX = {
    "a": "an IPv4 address",
    "aaaa": "an IPv6 address",
    "cname": "a host name",
    "mx": 'PREFERENCE HOST, like "10 mail"',
    "txt": "one or more quoted strings, like '\"v=spf1 -all\"'",
    "srv": 'PRIORITY WEIGHT PORT TARGET, like "10 60 5060 sip"',
    "caa": "FLAGS TAG \"VALUE\", like '0 issue \"letsencrypt.org\"'",
    "ptr": "a host name",
}
# The types whose data ends with a host name, and what the message calls it.
_HOST_FIELDS = {"cname": "a CNAME target", "mx": "an MX host", "srv": "an SRV target",
                "ptr": "a PTR target"}


def _rdatas(rtype: str, texts: tuple[str, ...], origin: dns.name.Name,
            path: str) -> tuple[str, ...]:
    """Check rdata in zone-file syntax; keep the text so alias zones re-root relative names."""
    seen: list[dns.rdata.Rdata] = []
    for i, text in enumerate(texts):
        where = f"{path}[{i}]" if rtype != "cname" else path
        rdata = _rdata(rtype, text, origin, where)
        if rdata in seen:
            raise ConfigError(where, f"{text!r} is given twice")
        seen.append(rdata)
    return tuple(texts)


def _rdata(rtype: str, text: str, origin: dns.name.Name, path: str) -> dns.rdata.Rdata:
    def bad(reason: str) -> ConfigError:
        return ConfigError(path, f"{text!r} is not valid {rtype.upper()} data: {reason}; "
                           f"expected {_SYNTAX[rtype]}")

    if rtype in ("a", "aaaa"):
        try:
            kind = ipaddress.IPv4Address if rtype == "a" else ipaddress.IPv6Address
            kind(text)
        except ValueError:
            raise bad(f"not an {'IPv4' if rtype == 'a' else 'IPv6'} address") from None
    if rtype in _HOST_FIELDS:
        _check_host(rtype, text, origin, path)
    try:
        return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rtype), text,
                                   origin=origin)
    except (dns.exception.DNSException, ValueError) as e:
        raise bad(_dns_reason(e)) from e


def _check_host(rtype: str, text: str, origin: dns.name.Name, path: str) -> None:
    """The host name that ends CNAME, MX, SRV and PTR data: a name, never an address."""
    words = text.split()
    host = words[-1] if words else ""
    if host in ("", "."):  # "." is RFC 7505's null MX, and SRV's "no such service"
        return
    try:
        ipaddress.ip_address(host.rstrip("."))
    except ValueError:
        problem = _name_problem(host)
        if problem:
            raise ConfigError(path, f"{text!r}: {_HOST_FIELDS[rtype]} must be a valid host "
                              f"name: {problem}") from None
        return
    served = host if host.endswith(".") else f"{host}.{origin.to_text()}"
    raise ConfigError(path, f"{text!r}: {_HOST_FIELDS[rtype]} must be a host name, not an "
                      f"address ({host} would be served as the name {served}); give the name "
                      "of a host that has the address")


def _dns_reason(error: Exception) -> str:
    """A dnspython parse error in words: its messages speak of tokens and identifiers."""
    if isinstance(error, dns.exception.UnexpectedEnd):
        return "it ends too early (a field is missing, or a quote is not closed)"
    if isinstance(error, dns.name.EmptyLabel):
        return "a name has an empty label (two dots in a row)"
    if isinstance(error, dns.name.LabelTooLong):
        return "a name has a label longer than 63 characters"
    if isinstance(error, dns.name.NameTooLong):
        return "a name is longer than 255 octets"
    text = str(error).rstrip(".")
    extra = re.fullmatch(r'expected EOL or EOF, got \d+ "(.*)"', text)
    if extra:
        return f"unexpected {extra[1]!r} after the last field"
    if text in ("expecting an identifier", "expecting an integer", "expecting a string"):
        return "a field is missing or has the wrong kind of value"
    if text == "string too long":
        return "a string is longer than 255 characters (split it into several quoted strings)"
    if not text or text == "Text input is malformed":
        return "malformed"
    return text[0].lower() + text[1:]


def _owner(key: str, origin: dns.name.Name, path: str) -> str:
    """A record key ("www", "@", or an absolute name inside the zone) as a relative name."""
    if key == "@":
        return "@"
    name = _name(key, path, origin)
    if not name.is_subdomain(origin):
        raise ConfigError(path, f"{key!r} is not inside the zone {origin.to_text()}")
    relative = name.relativize(origin)
    return relative.to_text() if relative != dns.name.empty else "@"


def _nameserver(text: str, path: str) -> str:
    try:
        ipaddress.ip_address(text.rstrip(".") if isinstance(text, str) else "")
    except ValueError:
        pass
    else:
        raise ConfigError(path, f"{text!r} is an address: a nameserver is given by its host "
                          "name (like ns1.example.net)")
    name = absolute_name(text, path)
    if len(name.labels) < 3:
        raise ConfigError(path, f"{text!r} is not a fully qualified host name (like ns1.example.net)")
    return name.to_text()


def absolute_name(text: str, path: str) -> dns.name.Name:
    """A name given as absolute, with or without the trailing dot."""
    absolute = text if text.endswith(".") else text + "."
    return _name(text, path, None, absolute)


def _name(text: str, path: str, origin: dns.name.Name | None,
          parse: str | None = None) -> dns.name.Name:
    if not isinstance(text, str) or not text or text.strip() != text:
        raise ConfigError(path, f"{text!r} is not a valid DNS name")
    if any(label == "*" for label in text.split(".")):
        raise ConfigError(path, f"{text!r}: wildcard names are not supported")
    problem = _name_problem(parse or text)
    if problem:
        raise ConfigError(path, f"{text!r} is not a valid DNS name: {problem}")
    try:
        name = dns.name.from_text(parse or text, origin=origin)
    except dns.name.NameTooLong:
        whole = text if origin is None else f"{text}.{origin.to_text()}"
        raise ConfigError(path, f"{text!r} is not a valid DNS name: {whole} is longer than "
                          "255 octets") from None
    except dns.exception.DNSException as e:
        raise ConfigError(path, f"{text!r} is not a valid DNS name: {_dns_reason(e)}") from e
    return name.canonicalize()


def _name_problem(text: str) -> str:
    """What is wrong with a host or zone name, in words ("" if nothing); dnspython's own
    messages name labels as bytes or not at all, so every rule is checked here first."""
    if text == ".":
        return ""  # the root: a name, refused where it is not wanted (a zone's origin)
    labels = text[:-1].split(".") if text.endswith(".") else text.split(".")
    for label in labels:
        if not label:
            return "it has an empty label (two dots in a row, or a leading dot)"
        if len(label) > 63:
            return f"label {label!r} is {len(label)} characters long, more than 63"
        if not _LABEL.match(label.lower()):
            return (f"label {label!r} may only hold letters, digits, '-' and '_', and may "
                    "not start or end with '-'")
    if sum(len(label) + 1 for label in labels) + 1 > 255:
        return "it is longer than 255 octets"
    return ""


def _address(text: str, path: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ConfigError(path, f"{text!r} is not an IPv4 or IPv6 address") from None


def _within(value: float, low: float, high: float, path: str, unit: str = "") -> None:
    """`low <= value <= high`, or an error that says so (`unit`, e.g. " seconds", after)."""
    if not low <= value <= high:
        raise ConfigError(path, f"{_number(value)} is not between {_number(low)} and "
                          f"{_number(high)}{unit}")


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _port(value: int, path: str) -> None:
    if not 1 <= value <= 65535:
        raise ConfigError(path, f"{value} is not a port (1-65535)")


def _one_of(value: str, choices: tuple[str, ...], path: str) -> None:
    if value not in choices:
        raise ConfigError(path, decodeerrors.not_one_of(value, choices))


def _instance(value: str) -> None:
    # Shown in `ps` and matched by `pgrep -f` patterns: no spaces, quotes or regex brackets.
    if value and not _INSTANCE.fullmatch(value):
        raise ConfigError("server.instance", f"{value!r} is not 1-32 letters, digits, '.', '_' "
                          "or '-'")


def _ttl(value: int, path: str) -> None:
    if not 0 <= value <= MAX_TTL:
        raise ConfigError(path, f"{value} is not a TTL (0-{MAX_TTL})")


def _show_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_@-]+", key) else f'"{key}"'


def _check_unique_origins(zones: tuple[ZoneSpec, ...]) -> None:
    seen: dict[str, str] = {}
    for i, zone in enumerate(zones):
        names = [("origin", zone.origin)] + [(f"aliases[{j}]", a) for j, a in enumerate(zone.aliases)]
        for field, name in names:
            path = f"zones[{i}].{field}"
            if name in seen:
                raise ConfigError(path, f"{name} is already served by {seen[name]}")
            seen[name] = path


# ---------------------------------------------------------------------------------------------
# Listening endpoints: "ADDR", "ADDR:PORT", "[V6]:PORT", "V6".


def parse_endpoint(text: str, default_port: int, path: str) -> tuple[str, int]:
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
        _port(port, path)
    return str(address), port


def _port_text(text: str, whole: str, path: str) -> int:
    if not text.isdigit():
        raise ConfigError(path, f"{whole!r}: {text!r} is not a port (1-65535)")
    return int(text)


def format_endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
