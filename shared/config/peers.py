"""Several sites: the other healthdns instances this one exchanges health views with, and the
rule that combines the views (`[peers]`, docs/sites.md).

Each instance runs its own checks; with `[peers]` set, a `peers` process sends this instance's
view to every peer and takes theirs (HTTPS, each report signed with HMAC-SHA256 under the
secret this instance shares with that peer), and the health the answers follow is the verdict
of the fresh views combined by `quorum`.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import re
import ssl
from fractions import Fraction
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import msgspec

from healthdns.shared import files, tls
from healthdns.shared.config.endpoints import Endpoint, format_endpoint, parse_endpoint
from healthdns.shared.config.prober import ProberSpec
from healthdns.shared.config.server import ServerSpec
from healthdns.shared.config.transfer import TransferSpec
from healthdns.shared.config.values import Frozen, check_one_of, refuse_normalised_fields, within
from healthdns.shared.errors import ConfigError

if TYPE_CHECKING:
    from healthdns.shared.config.zones import ZoneSpec

MIN_SECRET = 16  # bytes of a peer secret, at least (HMAC-SHA256 wants 32; 16 is the floor)
MAX_SECRET_FILE = 4 * files.KIB
MAX_PEERS = 32
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
CUT_OFF = ("keep", "own")


def needed_up(quorum: str | float, votes: int) -> int:
    """How many of `votes` must say up for a target to be up (docs/sites.md)."""
    if isinstance(quorum, str):  # "majority": half or more
        return math.ceil(votes / 2)
    if isinstance(quorum, int):
        return quorum
    return math.ceil(Fraction(quorum).limit_denominator(1_000_000) * votes)


class PeerSpec(Frozen, frozen=True):
    """One other instance: where its reports are sent, and the secret shared with it."""

    name: str  # its `peers.name`: reports from it carry this name
    url: str  # "https://HOST:PORT" (or "http://127.0.0.x:PORT" with `plain_http`)
    secret: str = ""  # base64; normalised: the secret_file's when that is given
    secret_file: str = ""


class PeersSpec(Frozen, frozen=True):
    """The instances that decide health together, and how their views are combined."""

    name: str = ""  # this instance, as its peers name it; "" : no peers, nothing is exchanged
    listen: str = ""  # ADDR:PORT reports from the peers are received on
    peers: tuple[PeerSpec, ...] = ()
    # Up while at least this share of the fresh vantages sees a target up: "majority" (half
    # or more, a tie keeps it up), a count of vantages (2), or a fraction (0.34).
    quorum: str | int | float = "majority"
    # Fresh views needed for a verdict; 0: a majority of all vantages, and at least a count
    # quorum (normalised: the number).
    min_vantages: int = 0
    interval: float = 1.0  # seconds between two full reports to each peer (the heartbeat)
    # The verdict changes once the votes have said so for `rise` (up) or `fall` (down)
    # evaluations in a row, one every `interval`, and is kept `hold_down` seconds at least.
    rise: int = 1
    fall: int = 1
    hold_down: float = 0.0
    stale_after: float = 0.0  # a view older than this does not count; 0: 3 x interval
    replay_window: float = 10.0  # seconds a report's timestamp may be off this host's clock
    max_report: int = 4 * files.MIB  # bytes of one report, at most
    max_rate: float = 20.0  # reports a second from one peer, at most (a burst of as many)
    # With too few fresh views: keep the last verdict ("keep") or follow this instance's own
    # checks ("own").
    cut_off: Literal["keep", "own"] = "keep"
    cert_file: str = ""  # PEM chain this instance serves its listener with (HTTPS)
    key_file: str = ""
    ca_file: str = ""  # CAs the peers' certificates are verified against ("": the system's)
    plain_http: bool = False  # tests only: plain HTTP, every address on loopback
    # Probes and reports only: no responders, no DNS served (a vantage point elsewhere).
    probe_only: bool = False
    # Set by normalisation, never in the file. `placed`: each target whose check gives
    # `vantages`, and those (the others vote on every target).
    placed: dict[str, tuple[str, ...]] = {}
    endpoint: Endpoint = Endpoint("", 0)
    cert_pem: str = ""
    key_pem: str = ""
    ca_pem: str = ""

    def enabled(self) -> bool:
        return bool(self.name)

    def vantages(self) -> int:
        """Every instance that checks: the peers and this one."""
        return len(self.peers) + 1

    def stale_seconds(self) -> float:
        return self.stale_after or 3 * self.interval


def normalise_peers(raw: PeersSpec, zones: tuple[ZoneSpec, ...] = ()) -> PeersSpec:
    refuse_normalised_fields(raw, ("endpoint", "cert_pem", "key_pem", "ca_pem"), "peers")
    if raw.placed:
        raise ConfigError("peers.placed", "unknown key (healthdns sets it, the file may not)")
    if not raw.name:
        if raw != PeersSpec():
            raise ConfigError("peers.name", "peers are configured but this instance has no "
                              "name (its peers know it by it)")
        _placed(zones, ())
        return raw
    _name(raw.name, "peers.name")
    if not raw.listen:
        raise ConfigError("peers.listen", "an address to receive the peers' reports on is "
                          "needed (ADDR:PORT)")
    endpoint = parse_endpoint(raw.listen, 0, "peers.listen")
    if not endpoint.port:
        raise ConfigError("peers.listen", f"{raw.listen!r} needs a port (its peers send to it)")
    if not raw.peers:
        raise ConfigError("peers.peers", "at least one peer is needed")
    within(len(raw.peers), 1, MAX_PEERS, "peers.peers", " peers")
    peers = tuple(_peer(p, raw.plain_http, f"peers.peers[{i}]") for i, p in enumerate(raw.peers))
    _unique(raw.name, peers)
    _timing(raw)
    vantages = len(peers) + 1
    _quorum(raw.quorum, vantages)
    within(raw.min_vantages, 0, vantages, "peers.min_vantages")
    count = raw.quorum if isinstance(raw.quorum, int) else 0
    if 0 < raw.min_vantages < count:
        raise ConfigError("peers.min_vantages", f"{raw.min_vantages} is below the quorum of "
                          f"{count}: with fewer fresh vantages than that, every target would "
                          "be down")
    least = raw.min_vantages or max(vantages // 2 + 1, count)
    check_one_of(raw.cut_off, CUT_OFF, "peers.cut_off")
    if raw.plain_http:
        _loopback(endpoint.host, "peers.listen")
    cert, key, ca = _tls(raw)
    placed = _placed(zones, (raw.name, *(p.name for p in peers)))
    return msgspec.structs.replace(raw, listen=format_endpoint(*endpoint), endpoint=endpoint,
                                   peers=peers, min_vantages=least, cert_pem=cert, key_pem=key,
                                   ca_pem=ca, placed=placed)


def vantage(prober: ProberSpec, peers: PeersSpec) -> ProberSpec:
    """The prober section with this instance's name, by which it knows the checks it runs
    (`peers` as read: its name is looked at only)."""
    refuse_normalised_fields(prober, ("vantage",), "prober")
    return msgspec.structs.replace(prober, vantage=peers.name)


def _placed(zones: tuple[ZoneSpec, ...], names: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Each target whose check gives `vantages`, and those; checks of one target must agree
    on them, and name instances of `names` (none without peers)."""
    placed: dict[str, tuple[str, ...]] = {}  # every target: () where every instance runs it
    for i, zone in enumerate(zones):
        for owner, record in zone.records.items():
            for group in record.pool.groups if record.pool is not None else ():
                check = group.check
                if check is None:
                    continue
                path = f"zones[{i}].records.{owner}.pool.check.vantages"
                if check.vantages:
                    _vantages(check.vantages, names, path)
                for address in group.addresses:
                    target = check.target(address)
                    if placed.setdefault(target, check.vantages) != check.vantages:
                        raise ConfigError(path, f"{target} is also checked with vantages "
                                          f"{list(placed[target]) or 'every instance'}: the "
                                          "same check runs in the same places")
    return {target: where for target, where in placed.items() if where}


def _vantages(given: tuple[str, ...], names: tuple[str, ...], path: str) -> None:
    if not names:
        raise ConfigError(path, "needs [peers]: it names the instances that run the check")
    for name in given:
        if name not in names:
            raise ConfigError(path, f"{name!r} is neither peers.name nor a peer's name "
                              f"({', '.join(names)})")
    if len(set(given)) != len(given):
        raise ConfigError(path, "names an instance twice")


def probe_only(server: ServerSpec, transfer: TransferSpec, peers: PeersSpec) -> ServerSpec:
    """The server section as a probe-only instance runs it: no responders. It serves no DNS,
    so an address to serve on, or transfers, are a mistake said so. `transfer` and `peers`
    may be as read: only whether they are set is looked at."""
    if not peers.probe_only:
        return server
    if server.listen:
        raise ConfigError("peers.probe_only", "server.listen is set too: a probe-only instance "
                          "serves no DNS (remove server.listen, or probe_only)")
    if transfer.enabled():
        raise ConfigError("peers.probe_only", "[transfer] is set too: a probe-only instance "
                          "serves no zone transfers")
    return msgspec.structs.replace(server, responders=0, listeners=())


def _name(text: str, path: str) -> None:
    if not _NAME.fullmatch(text):
        raise ConfigError(path, f"{text!r} is not a name (letters, digits, '.', '_', '-', "
                          "at most 63)")


def _unique(own: str, peers: tuple[PeerSpec, ...]) -> None:
    seen = {own: "peers.name"}
    for i, peer in enumerate(peers):
        if peer.name in seen:
            raise ConfigError(f"peers.peers[{i}].name", f"{peer.name!r} is already "
                              f"{seen[peer.name]}")
        seen[peer.name] = f"peers.peers[{i}].name"


def _timing(raw: PeersSpec) -> None:
    within(raw.interval, 0.05, 60, "peers.interval", " seconds")
    if raw.stale_after:
        within(raw.stale_after, raw.interval * 2, 3600, "peers.stale_after", " seconds")
    within(raw.replay_window, 1, 300, "peers.replay_window", " seconds")
    within(raw.max_report, 1024, 64 * files.MIB, "peers.max_report", " bytes")
    within(raw.max_rate, 1 / raw.interval, 10_000, "peers.max_rate", " reports a second")
    within(raw.rise, 1, 100, "peers.rise", " evaluations")
    within(raw.fall, 1, 100, "peers.fall", " evaluations")
    within(raw.hold_down, 0, 86400, "peers.hold_down", " seconds")


def _quorum(quorum: str | float, vantages: int) -> None:
    if isinstance(quorum, str):
        if quorum != "majority":
            raise ConfigError("peers.quorum", f"{quorum!r} is neither \"majority\", a count "
                              "of vantages nor a fraction")
    elif isinstance(quorum, int):
        within(quorum, 1, vantages, "peers.quorum", " vantages (the peers and this one)")
    else:
        if not 0 < quorum <= 1:
            raise ConfigError("peers.quorum", f"{quorum:g} is not a fraction above 0, at "
                              "most 1")


def _peer(raw: PeerSpec, plain: bool, path: str) -> PeerSpec:
    _name(raw.name, f"{path}.name")
    parts = urlsplit(raw.url)
    scheme = "http" if plain else "https"
    if parts.scheme != scheme or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username:
        raise ConfigError(f"{path}.url", f"{raw.url!r} is not {scheme}://HOST:PORT"
                          + ("" if plain else " (plain http only with peers.plain_http, "
                             "for tests on loopback)"))
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{path}.url", f"{raw.url!r} has no valid port") from None
    if port is None:
        raise ConfigError(f"{path}.url", f"{raw.url!r} needs a port")
    if plain:
        _loopback(parts.hostname, f"{path}.url")
    url = f"{scheme}://{format_endpoint(parts.hostname, port)}"
    return PeerSpec(name=raw.name, url=url, secret=_secret(raw, path))


def _loopback(host: str, path: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(path, f"{host} is not a loopback address: peers.plain_http (no "
                          "TLS) is for tests on loopback only")


def _secret(raw: PeerSpec, path: str) -> str:
    if raw.secret and raw.secret_file:
        raise ConfigError(f"{path}.secret", "give the secret or a secret_file, not both")
    text = raw.secret
    if raw.secret_file:
        try:
            text = files.read(raw.secret_file, MAX_SECRET_FILE).data.decode().strip()
        except files.FileProblem as e:
            raise ConfigError(f"{path}.secret_file", e.reason) from e
        except UnicodeDecodeError:
            raise ConfigError(f"{path}.secret_file", "is not base64 text") from None
    where = f"{path}.secret_file" if raw.secret_file else f"{path}.secret"
    if not text:
        raise ConfigError(f"{path}.secret", "a peer needs a secret (base64, e.g. from "
                          "`openssl rand -base64 32`) or a secret_file")
    try:
        secret = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(where, "is not base64") from None
    if len(secret) < MIN_SECRET:
        raise ConfigError(where, f"{len(secret)} bytes is too short: {MIN_SECRET} at least "
                          "(32 from `openssl rand -base64 32`)")
    return text


def _tls(raw: PeersSpec) -> tuple[str, str, str]:
    """The PEM text of the listener's certificate and key, and of the CAs peers are verified
    against; plain HTTP has none."""
    if raw.plain_http:
        for field in ("cert_file", "key_file", "ca_file"):
            if getattr(raw, field):
                raise ConfigError(f"peers.{field}", "is for HTTPS, and peers.plain_http is set")
        return "", "", ""
    if not raw.cert_file or not raw.key_file:
        missing = "cert_file" if not raw.cert_file else "key_file"
        raise ConfigError(f"peers.{missing}", "is needed: peers send their reports over HTTPS "
                          "(give cert_file and key_file)")
    cert, key = (_pem(getattr(raw, f), f"peers.{f}") for f in ("cert_file", "key_file"))
    ca = _pem(raw.ca_file, "peers.ca_file") if raw.ca_file else ""
    try:
        tls.server_context(cert, key)
    except (ssl.SSLError, tls.PassphraseNeeded) as e:
        raise ConfigError("peers.key_file", f"does not load with peers.cert_file: {e}") from None
    try:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if ca:
            context.load_verify_locations(cadata=ca)
    except ssl.SSLError:
        raise ConfigError("peers.ca_file", f"{raw.ca_file!r} holds no PEM certificate") from None
    return cert, key, ca


def _pem(file: str, path: str) -> str:
    try:
        return files.read(file, 256 * files.KIB).data.decode("ascii")
    except files.FileProblem as e:
        raise ConfigError(path, e.reason) from e
    except UnicodeDecodeError:
        raise ConfigError(path, f"{file!r} is not PEM text") from None
