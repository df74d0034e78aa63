"""The whole configuration: `Config`, read from a TOML file or plain data, normalised,
encoded for the children and shown redacted.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from healthdns.shared import files, lazy, tsigkeys
from healthdns.shared.config import filekeys
from healthdns.shared.config.checks import CheckSpec
from healthdns.shared.config.control import ControlSpec, normalise_control
from healthdns.shared.config.geo import MapSpec, check_pool_names, normalise_maps, normalise_sites
from healthdns.shared.config.guard import CookieSpec, RrlSpec, normalise_cookies, normalise_rrl
from healthdns.shared.config.peers import PeersSpec, normalise_peers
from healthdns.shared.config.prober import ProberSpec, distinct_checks, normalise_prober
from healthdns.shared.config.server import ServerSpec, normalise_server
from healthdns.shared.config.transfer import (
    TransferSpec,
    TsigKeySpec,
    normalise_transfer,
    normalise_tsig,
)
from healthdns.shared.config.values import Frozen, convert, shown_key
from healthdns.shared.config.zones import (
    RawZone,
    ZoneSpec,
    check_unique_origins,
    map_checks,
    normalise_zone,
    numbered_variants,
)
from healthdns.shared.errors import ConfigError
from healthdns.shared.geomap import Site

if TYPE_CHECKING:
    import dns.name
else:  # only validation needs it, and a responder only decodes (see shared/lazy.py)
    lazy.module("dns.name")
    dns = lazy.module("dns")


# A name of its own: `Config.tsig`, a field, hides the module in the class body.
TsigKey = tsigkeys.Key
MAX_CONFIG_FILE = 64 * files.MIB  # ten thousand pooled names take about 2 MiB


class Config(Frozen, frozen=True):
    """The whole normalised configuration."""

    server: ServerSpec = ServerSpec()
    rrl: RrlSpec = RrlSpec()
    cookies: CookieSpec = CookieSpec()
    prober: ProberSpec = ProberSpec()
    control: ControlSpec = ControlSpec()
    transfer: TransferSpec = TransferSpec()
    peers: PeersSpec = PeersSpec()
    tsig: tuple[TsigKeySpec, ...] = ()
    zones: tuple[ZoneSpec, ...] = ()
    sites: dict[str, Site] = {}  # in declared order: a map's default order
    maps: dict[str, MapSpec] = {}

    def tsig_keys(self) -> list[TsigKey]:
        """The TSIG keys, decoded (normalised: each has its secret)."""
        return [tsigkeys.Key(k.name, k.algorithm, tsigkeys.secret(k.secret)) for k in self.tsig]

    def checks(self) -> dict[str, tuple[str, CheckSpec]]:
        """Every distinct check (target id -> checked address, spec) across all zones."""
        return distinct_checks(self.zones)

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


class _RawConfig(Frozen, frozen=True):
    server: ServerSpec = ServerSpec()
    rrl: RrlSpec = RrlSpec()
    cookies: CookieSpec = CookieSpec()
    prober: ProberSpec = ProberSpec()
    control: ControlSpec = ControlSpec()
    transfer: TransferSpec = TransferSpec()
    peers: PeersSpec = PeersSpec()
    tsig: list[TsigKeySpec] = []
    zones: list[RawZone] = []
    sites: dict[str, Site] = {}
    maps: dict[str, MapSpec] = {}


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
    raw = convert(document, _RawConfig, "")
    zones = numbered_variants(tuple(normalise_zone(z, f"zones[{i}]")
                                    for i, z in enumerate(raw.zones)))
    if not zones:
        raise ConfigError("zones", "at least one zone is required")
    check_unique_origins(zones)
    normalise_sites(raw.sites, raw.maps)
    _check_geo_pools(zones, raw.sites, raw.maps)
    normalise_maps(raw.sites, raw.maps)
    server = normalise_server(raw.server)
    keys = normalise_tsig(raw.tsig)
    return Config(server=server, rrl=normalise_rrl(raw.rrl),
                  cookies=normalise_cookies(raw.cookies),
                  prober=normalise_prober(raw.prober, zones),
                  control=normalise_control(raw.control),
                  transfer=normalise_transfer(raw.transfer, server, keys),
                  peers=normalise_peers(raw.peers), tsig=keys, zones=zones,
                  sites=raw.sites, maps=raw.maps)


def _check_geo_pools(zones: tuple[ZoneSpec, ...], sites: Mapping[str, Site],
                     maps: Mapping[str, MapSpec]) -> None:
    """Every geo pool names a map and sites that exist."""
    for i, zone in enumerate(zones):
        for owner, record in zone.records.items():
            if record.pool is not None and record.pool.map:
                path = f"zones[{i}].records.{shown_key(owner)}.pool"
                check_pool_names(record.pool.map, record.pool.sites, sites, maps, path)


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
    if config.peers.enabled():
        peers = config.peers
        config = msgspec.structs.replace(config, peers=msgspec.structs.replace(
            peers, key_pem="<redacted>", peers=tuple(
                msgspec.structs.replace(p, secret="<redacted>") for p in peers.peers)))
    return msgspec.structs.replace(config, zones=map_checks(config.zones, _redacted_headers))


def _redacted_headers(check: CheckSpec) -> CheckSpec:
    return msgspec.structs.replace(check, headers=dict.fromkeys(check.headers, "<redacted>"))


def encode(config: Config) -> bytes:
    return msgspec.msgpack.encode(config)


def decode(data: bytes) -> Config:
    return msgspec.msgpack.decode(data, type=Config)
