"""Geo routing rigs: one location map and its sites written for healthdns (`[sites]`, `[maps]`,
pools with `map` and `sites`), for gdnsd's geoip plugin (the same database, the same map, health
from an extmon TCP connect to each site's loopback backend), and an unbound that caches by
EDNS Client Subnet in front of either; and query files that carry ECS for dnsperf (`-B`).

The map's rules name continents and countries only: gdnsd's nested ``map`` expresses those one
to one (a country under its continent wins over the continent, as healthdns's more specific
rule does). Explicit networks are both servers' ``networks``/``nets``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness import HOST
from harness.geoclients import Client, query

ORIGIN = "example.test"
NS = "ns1.example.net"
STATIC = "static"  # a plain name: readiness, and the answer that does not depend on the client


@dataclasses.dataclass(frozen=True)
class Rule:
    sites: tuple[str, ...]
    continent: str = ""
    country: str = ""  # with its continent, for gdnsd's map


@dataclasses.dataclass(frozen=True)
class GeoSetup:
    """Geo names (each a pool over the same sites), the map, and each site's one address."""

    database: Path | None
    sites: tuple[str, ...]
    addresses: Mapping[str, str]  # site -> its loopback backend's address
    check_port: int
    names: tuple[str, ...] = ("www",)
    rules: tuple[Rule, ...] = ()
    networks: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = ()  # (cidrs, order)
    default: tuple[str, ...] = ()
    interval: float = 1.0
    timeout: float = 0.5
    fall: int = 2

    @property
    def failover_bound(self) -> float:
        """interval x fall + timeout, and half a second to publish (docs/configuration.md)."""
        return self.interval * self.fall + self.timeout + 0.5


def _toml(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def healthdns_toml(setup: GeoSetup, port: int, responders: int, geo: bool = True,
                   packet_cache: int | None = None, control: int | None = None) -> str:
    """healthdns's configuration; `geo` False: the same names as plain pools of the first
    site's address (the same checks, no map)."""
    lines = ["[server]", f'listen = ["{HOST}:{port}"]', f"responders = {responders}",
             *([f"packet_cache = {packet_cache}"] if packet_cache is not None else []), ""]
    if control is not None:
        lines += ["[control]", f'listen = "{HOST}:{control}"', ""]
    check = {"port": setup.check_port, "interval": setup.interval, "timeout": setup.timeout,
             "rise": 1, "fall": setup.fall}
    if geo:
        lines += _sites_and_map(setup)
    lines += ["[[zones]]", f'origin = "{ORIGIN}"', f'nameservers = ["{NS}"]', "ttl = 60", "",
              "[zones.records]", f'{STATIC} = {{ a = ["192.0.2.50"] }}', ""]
    first = setup.addresses[(setup.default or setup.sites)[0]]
    for name in setup.names:
        if not geo:
            lines += [f"[zones.records.{name}.pool]", f'addresses = ["{first}"]',
                      f"check = {_toml(check)}", ""]
            continue
        lines += [f"[zones.records.{name}.pool]", 'map = "world"', f"check = {_toml(check)}",
                  'policy = "serve-all"', ""]
        for site in setup.sites:
            lines += [f"[zones.records.{name}.pool.sites.{site}]",
                      f'addresses = ["{setup.addresses[site]}"]', ""]
    return "\n".join(lines) + "\n"


def _sites_and_map(setup: GeoSetup) -> list[str]:
    lines = [line for site in setup.sites for line in (f"[sites.{site}]", "")]
    lines += ["[maps.world]"]
    if setup.database is not None:
        lines.append(f"database = {json.dumps(str(setup.database))}")
    if setup.default:
        lines.append(f"default = {_toml(setup.default)}")
    lines.append("")
    for rule in setup.rules:
        where = f'country = "{rule.country}"' if rule.country \
            else f'continent = "{rule.continent}"'
        lines += ["[[maps.world.rules]]", where, f"sites = {_toml(rule.sites)}", ""]
    for cidrs, order in setup.networks:
        lines += ["[[maps.world.networks]]", f"cidrs = {_toml(cidrs)}",
                  f"sites = {_toml(order)}", ""]
    return lines


def vscf(value: Any, indent: str = "") -> str:
    """A value in gdnsd's configuration syntax, every string quoted."""
    if isinstance(value, Mapping):
        inner = indent + "  "
        body = "".join(f"{inner}{vscf(str(k))} => {vscf(v, inner)}\n" for k, v in value.items())
        return "{\n" + body + indent + "}"
    if isinstance(value, list | tuple):
        return "[ " + ", ".join(vscf(v, indent) for v in value) + " ]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')  # vscf's only escapes
    return f'"{text}"'


def gdnsd_map(setup: GeoSetup) -> dict[str, Any]:
    """gdnsd's geoip map: datacenters, database, the continent/country tree, nets."""
    tree: dict[str, Any] = {}
    for rule in setup.rules:
        if rule.country:
            node = tree.setdefault(rule.continent, {})
            if not isinstance(node, dict):
                node = tree[rule.continent] = {"default": node}
            node[rule.country] = list(rule.sites)
        elif isinstance(tree.get(rule.continent), dict):
            tree[rule.continent]["default"] = list(rule.sites)
        else:
            tree[rule.continent] = list(rule.sites)
    default = list(setup.default or setup.sites)
    out: dict[str, Any] = {"datacenters": list(setup.sites)}
    if setup.database is not None:
        out["geoip2_db"] = str(setup.database)
        out["map"] = {"default": default, **tree}
    nets = {cidr: list(order) for cidrs, order in setup.networks for cidr in cidrs}
    if setup.database is None:
        nets = {"0.0.0.0/0": default, "::/0": default, **nets}
    if nets:
        out["nets"] = nets
    return out


def gdnsd_dir(setup: GeoSetup, directory: Path, port: int) -> Path:
    """A gdnsd configuration directory: every geo name a ``DYNA geoip!`` of one resource."""
    for sub in ("zones", "run", "state"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    config = {
        "options": {"listen": [f"{HOST}:{port}"], "run_dir": str(directory / "run"),
                    "state_dir": str(directory / "state")},
        "service_types": {"backend": {
            "plugin": "extmon", "interval": max(2, round(setup.interval)),
            "timeout": max(1, round(setup.timeout)), "direct": True,
            "cmd": ["/bin/bash", "-c", f"exec 3<>/dev/tcp/%%ITEM%%/{setup.check_port}"]}},
        "plugins": {"geoip": {
            "maps": {"world": gdnsd_map(setup)},
            "resources": {"geo": {"map": "world", "service_types": ["backend"],
                                  "dcmap": dict(setup.addresses)}}}},
    }
    (directory / "config").write_text("".join(f"{k} => {vscf(v)}\n" for k, v in config.items()))
    records = [f"{name} 60 DYNA geoip!geo" for name in setup.names]
    (directory / "zones" / ORIGIN).write_text("\n".join([
        "$TTL 60", f"@ 3600 SOA {NS}. hostmaster.{ORIGIN}. 1 7200 3600 1209600 60",
        f"@ 3600 NS {NS}.", f"{STATIC} 60 A 192.0.2.50", *records]) + "\n")
    return directory


def unbound_conf(directory: Path, port: int, upstream: int) -> Path:
    """An unbound that caches by ECS (its subnetcache module) and asks the server at
    `upstream` for the zone, sending it the clients' subnets (at most /24 and /56)."""
    path = directory / "unbound.conf"
    path.write_text("\n".join([
        "server:", f"  interface: {HOST}", f"  port: {port}", "  num-threads: 1",
        f"  directory: \"{directory}\"", "  chroot: \"\"", "  username: \"\"",
        f"  pidfile: \"{directory / 'unbound.pid'}\"", "  use-syslog: no",
        "  logfile: \"\"", "  verbosity: 0", "  do-not-query-localhost: no",
        "  access-control: 127.0.0.0/8 allow", "  qname-minimisation: no",
        "  module-config: \"subnetcache iterator\"", f"  send-client-subnet: {HOST}",
        "  max-client-subnet-ipv4: 24", "  max-client-subnet-ipv6: 56",
        # Room for every client's answer: unbound keeps 100 subnets per name by default, and
        # what is measured is which answers a scope lets clients share, not evictions.
        "  max-ecs-tree-size-ipv4: 1000000", "  max-ecs-tree-size-ipv6: 1000000",
        "  msg-cache-size: 64m", "  rrset-cache-size: 64m", "  prefetch: no",
        "  local-zone: \"test.\" nodefault", "",
        "stub-zone:", f"  name: \"{ORIGIN}\"", f"  stub-addr: {HOST}@{upstream}", ""]))
    return path


def binary_queries(path: Path, names: Sequence[str], clients: Iterable[Client],
                   recursion: bool = False) -> Path:
    """dnsperf's binary input (``-B``): each query as on a TCP stream, a 2-byte length and the
    message; query i asks ``names[i % len(names)]`` for client i."""
    out = bytearray()
    for i, client in enumerate(clients):
        wire = query(i, f"{names[i % len(names)]}.{ORIGIN}", client=client,
                     recursion=recursion)
        out += len(wire).to_bytes(2, "big") + wire
    path.write_bytes(bytes(out))
    return path
