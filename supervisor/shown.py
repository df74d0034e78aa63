"""The configuration as `--check-config` prints it: what healthdns will use, for a person.

It is the normalised configuration (`shared/config/`) with what a reader needs spelt out and
what means nothing left out:

* secrets replaced (`config.redacted`);
* defaults that follow from other settings filled in (`server.warm_start_max_age`);
* record data in full, as served: names absolute ("10 mail" is "10 mail.example.com."),
  addresses in canonical form; in a zone with aliases, the data that reads otherwise in an
  alias zone (names written relative follow the alias) under `in_aliases`;
* none of the parsed forms normalisation stores beside the text they come from (endpoints,
  status ranges, the PEM text of `[peers]`' files), which say nothing the text does not, and
  no `[peers]` when it is off;
* a TTL that follows health as its range (`ttl = {max, min}`), a fixed one as its number;
* no empty record types, no `pool` on a name without one, none of a pool's short-form fields
  (normalised, its addresses are in `groups`), and none of a check's fields of another kind
  (`path` on a tcp check) or `ca_pem` when `ca_file` is where it came from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from healthdns.shared import config, lazy
from healthdns.shared.config import Config, ZoneSpec
from healthdns.supervisor import warm

if TYPE_CHECKING:
    import dns.name
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype
else:
    for _module in ("name", "rdata", "rdataclass", "rdatatype"):
        lazy.module(f"dns.{_module}")
    dns = lazy.module("dns")

_HTTP = ("method", "path", "host", "headers", "status", "body", "body_regex")
_TLS = ("verify", "ca_file", "ca_pem")


def text(cfg: Config) -> str:
    """The JSON text `--check-config` prints (with a final newline)."""
    shown: dict[str, Any] = msgspec.to_builtins(config.redacted(cfg))
    shown["server"]["warm_start_max_age"] = warm.max_age(cfg)
    _drop_parsed(shown)
    for spec, zone in zip(cfg.zones, shown["zones"], strict=True):
        _zone(spec, zone)
    encoded = msgspec.json.encode(shown)
    return msgspec.json.format(encoded, indent=2).decode() + "\n"


def _drop_parsed(shown: dict[str, Any]) -> None:
    del shown["server"]["listeners"], shown["control"]["listener"]
    del shown["transfer"]["listeners"]
    for secondary in shown["transfer"]["secondaries"]:
        del secondary["endpoint"]
    peers = shown["peers"]
    if not peers["name"]:
        del shown["peers"]  # off: nothing of it applies
        return
    # The listener parsed, and the PEM text read from the files the section names.
    for parsed in ("endpoint", "cert_pem", "key_pem", "ca_pem"):
        del peers[parsed]


def _ranged(shown: dict[str, Any]) -> None:
    """A TTL that follows health as its range; none of the normalised `health_ttl`."""
    ranged = shown.pop("health_ttl")
    if ranged is not None:
        shown["ttl"] = ranged


def _zone(spec: ZoneSpec, zone: dict[str, Any]) -> None:
    origin = dns.name.from_text(spec.origin)
    _ranged(zone)
    for owner, record in zone["records"].items():
        _ranged(record)
        static = spec.records[owner].static()
        for rtype in config.STATIC_TYPES:
            texts = static.get(rtype)
            if texts:
                record[rtype] = _served(rtype, texts, origin)
            else:
                del record[rtype]
        if record["pool"] is None:
            del record["pool"]
        else:
            _pool(record["pool"])
    aliases = {alias: _alias(spec, dns.name.from_text(alias)) for alias in spec.aliases}
    if any(aliases.values()):
        zone["in_aliases"] = {alias: data for alias, data in aliases.items() if data}


def _served(rtype: str, texts: tuple[str, ...], origin: dns.name.Name) -> list[str] | str:
    """Record data as the zone `origin` serves it, every name absolute."""
    kind = dns.rdatatype.from_text(rtype)
    out = [dns.rdata.from_text(dns.rdataclass.IN, kind, t, origin=origin,
                               relativize=False).to_text() for t in texts]
    return out[0] if rtype == "cname" else out


def _alias(spec: ZoneSpec, alias: dns.name.Name) -> dict[str, dict[str, Any]]:
    """The data that reads otherwise in the alias zone `alias` than in the origin's."""
    origin = dns.name.from_text(spec.origin)
    out: dict[str, dict[str, Any]] = {}
    for owner, record in spec.records.items():
        for rtype, texts in record.static().items():
            there = _served(rtype, texts, alias)
            if there != _served(rtype, texts, origin):
                out.setdefault(owner, {})[rtype] = there
    return out


def _pool(pool: dict[str, Any]) -> None:
    # Normalised, each group has its own check, and the pool's TTL is the record's.
    for field in ("addresses", "weights", "check", "ttl"):
        del pool[field]
    if not pool["map"]:  # not a geo pool
        del pool["map"], pool["sites"]
    else:  # a geo pool's groups are its sites' (shown there)
        del pool["groups"]
        for site in pool["sites"].values():
            for field in ("addresses", "weights", "check"):
                del site[field]
    groups = [g for site in pool.get("sites", {}).values() for g in site["groups"]]
    for group in pool.get("groups", groups):
        _check(group["check"])


def _check(check: dict[str, Any]) -> None:
    other = (*_HTTP, *_TLS) if check["kind"] == "tcp" else _TLS if check["kind"] == "http" \
        else ("ca_pem",) if check["ca_file"] is not None else ()
    for field in (*other, "ranges"):
        del check[field]
    if not check["variant"]:
        del check["variant"]  # set only for checks that differ in header values alone
