"""What part of the configuration each role is sent: only what it needs, never another's secrets.

The configuration is decoded once, by the supervisor; each child gets a `Config` cut down to its
part, encoded:

* a responder: the `server`, `rrl` and `cookies` sections and the TSIG keys (it checks
  signed queries and signs their answers) only (no zones, no checks);
* the prober: `server`, `prober`, and the checked pools of each zone (no static records, no
  DNSSEC settings): it is the one process that needs check headers and CA certificates;
* the signer: `server`, the sites and maps, and the zones, with every check's header values and inline CA replaced
  by a keyed digest of them; of `transfer`, only `listen` (transfers on or off);
* the transfer process: `server`, `transfer` and the `tsig` keys (no zones: it is sent the
  records the signer made);
* the peers process: `server` and `peers` (the peers' secrets; no zones, no checks: it
  judges the targets of the views it is sent).

The signer still needs the checks: a pool's address is judged by the health of its check target,
whose id (`CheckSpec.target`) ends with a digest of the check (header values left out). Its
masked checks may get other ids than the prober's real ones (an inline CA), so the supervisor
renames each reported id on its way to the signer (`Views.signer_ids`). The masks' key, random
per supervisor, keeps a guessable header value from being found from its mask.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import msgspec

from healthdns.shared import config
from healthdns.shared.config import CheckSpec, Config, PoolSpec, RecordSpec, TransferSpec, ZoneSpec

MASK_PREFIX = "redacted:"


@dataclass(frozen=True)
class Views:
    """The encoded configuration for each role, and the prober's check ids as the signer knows
    them."""

    responder: bytes
    prober: bytes
    signer: bytes
    signer_ids: dict[str, str]
    transfer: bytes = b""
    peers: bytes = b""

    def for_role(self, role: str) -> bytes:
        encoded: bytes = getattr(self, role)
        return encoded


def split(cfg: Config, key: bytes | None = None) -> Views:
    key = secrets.token_bytes(32) if key is None else key
    masked = tuple(_zone_for_signer(z, key) for z in cfg.zones)
    # The signer lists each zone's records only when transfers are on: it needs no more.
    signer = Config(server=cfg.server, zones=masked,
                    transfer=TransferSpec(listen=cfg.transfer.listen,
                                                          ttl=cfg.transfer.ttl),
                    sites=cfg.sites, maps=cfg.maps)  # the signer compiles the maps
    prober = Config(server=cfg.server, prober=cfg.prober,
                    zones=tuple(_zone_for_prober(z) for z in cfg.zones))
    responder = Config(server=cfg.server, rrl=cfg.rrl, cookies=cfg.cookies, tsig=cfg.tsig)
    # The transfer process: its section and the TSIG keys it verifies and signs with.
    transfer = Config(server=cfg.server, transfer=cfg.transfer, tsig=cfg.tsig)
    # The peers process: its section (the peers' secrets) alone; the checks it judges are
    # those of the views it is sent.
    peers = Config(server=cfg.server, peers=cfg.peers)
    return Views(responder=config.encode(responder),
                 prober=config.encode(prober), signer=config.encode(signer),
                 signer_ids=_renames(cfg.zones, masked), transfer=config.encode(transfer),
                 peers=config.encode(peers))


def _zone_for_prober(zone: ZoneSpec) -> ZoneSpec:
    pools = {name: RecordSpec(pool=r.pool) for name, r in zone.records.items() if r.pool}
    return ZoneSpec(origin=zone.origin, nameservers=zone.nameservers, records=pools)


def _zone_for_signer(zone: ZoneSpec, key: bytes) -> ZoneSpec:
    records = {name: msgspec.structs.replace(r, pool=_pool(r.pool, key)) if r.pool else r
               for name, r in zone.records.items()}
    return msgspec.structs.replace(zone, records=records)


def _pool(pool: PoolSpec, key: bytes) -> PoolSpec:
    groups = tuple(msgspec.structs.replace(g, check=_check(g.check, key)) for g in pool.groups)
    sites = {name: msgspec.structs.replace(site, groups=tuple(
        msgspec.structs.replace(g, check=_check(g.check, key)) for g in site.groups))
        for name, site in pool.sites.items()}  # a geo pool's groups, per site
    return msgspec.structs.replace(pool, check=_check(pool.check, key), groups=groups,
                                   sites=sites)


def _check(check: CheckSpec | None, key: bytes) -> CheckSpec | None:
    if check is None:
        return None
    return msgspec.structs.replace(
        check, headers={name: _mask(value, key) for name, value in check.headers.items()},
        ca_pem=None if check.ca_pem is None else _mask(check.ca_pem, key))


def _mask(secret: str, key: bytes) -> str:
    return MASK_PREFIX + hashlib.blake2s(secret.encode(), key=key, digest_size=16).hexdigest()


def _renames(zones: tuple[ZoneSpec, ...], masked: tuple[ZoneSpec, ...]) -> dict[str, str]:
    """Each check target id the prober reports -> the id of the same check at the signer."""
    renames: dict[str, str] = {}
    for zone, other in zip(zones, masked, strict=True):
        for name, record in zone.records.items():
            theirs = other.records[name].pool
            for group, their in zip(record.pool.groups if record.pool else (),
                                    theirs.groups if theirs else (), strict=True):
                assert group.check is not None and their.check is not None  # normalised
                for address in group.addresses:
                    renames[group.check.target(address)] = their.check.target(address)
    return renames
