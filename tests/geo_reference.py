"""gdnsd's geoip plugin and Knot's geoip module, started on loopback as references for location
maps, and a client that asks them (or anyone) with an EDNS Client Subnet option.

What was verified with Debian's gdnsd 3.8.1 and Knot 3.2.6 (knot-module-geoip):

gdnsd (``gdnsd -c DIR start``, foreground; ``-f`` is obsolete and only warns) reads ``DIR/config``
and ``DIR/zones/ORIGIN``. A geo name is ``www 60 DYNA geoip!RESOURCE`` in the zone. The plugin's
map takes ``geoip2_db`` (an absolute path), ``datacenters`` (the fallback order), a nested
``map`` (continent -> country -> subdivisions -> city, a list or a hash with ``default`` at each
level), ``nets`` (CIDR -> list; nested networks allowed) and optionally ``auto_dc_coords``
(``dc => [lat, lon]``) with ``auto_dc_limit`` (default 3). A resource names the map, its
``service_types`` and a ``dcmap`` (datacenter -> address). Health comes from an ``extmon``
service type running a command per address (``%%ITEM%%``); ``interval`` is at least 2 s and
``direct => true`` applies each result at once (no anti-flap thresholds). The check here is
``bash -c 'exec 3<>/dev/tcp/%%ITEM%%/PORT'``: a TCP connect to each site's loopback address.
When every datacenter of a client's order is down, gdnsd answers with the first one's addresses.
``run_dir`` and ``state_dir`` must be writable (the defaults are system paths).

Scopes seen from gdnsd on a generated database (``dig +subnet=PREFIX``): the length of the
merged block holding the prefix's first address, shorter or longer than the source (e.g.
192.0.0.0/16 -> scope 23 when 192.0.2.0/24 differs); IPv4-like IPv6 prefixes get the IPv4
block's length plus 96 (IPv4-mapped, -compatible, SIIT, the NAT64 prefix, Teredo) or plus 16
(6to4); ``::1/128`` is IPv4 0.0.0.1 (scope 101 when 0.0.0.0/5 is all default); static names,
NXDOMAIN and NODATA get scope 0; a /0 source gets scope 0. healthdns's tables
(`geotable.GeoIndex`) give the same scopes; tests/test_geo_reference.py compares them.

Knot (``knotd -c CONF``) needs ``server.edns-client-subnet: on`` and a ``mod-geoip`` entry on the
zone: ``mode: geodb`` with ``geodb-file`` and ``geodb-key`` (e.g. ``[continent/code,
country/iso_code]``) and a ``config-file`` of ``NAME: [ {geo: "EU;*", A: ADDR}, ... ]``, or
``mode: subnet`` with ``{net: CIDR, A: ADDR}`` entries. It has no health checks. Its scopes
differ from gdnsd's: geodb mode returns the database network's own length (no merging: two
adjacent /25s with one answer give scope 25, gdnsd 24), and a client the database does not
hold gets the zone's own record with scope 0; subnet mode returns the matched entry's length
even when a longer entry inside it answers differently (10.2.0.0/24 -> scope 8 beside a
10.1.0.0/16 entry), the overlap RFC 7871 section 7.2.1 forbids.
"""

from __future__ import annotations

import ipaddress
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.edns
import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
from harness import bench_module

from healthdns.shared import geochoice

# gdnsd's configuration syntax, as the benchmarks write it too
vscf = bench_module("harness/georigs.py", "georigs").vscf

HOST = "127.0.0.1"
ORIGIN = "example.test"
STATIC = "static"  # a plain A record: readiness, and scope 0 for static names


@dataclass
class Reply:
    rcode: str
    addresses: tuple[str, ...]
    scope: int | None  # None: no ECS option in the answer


def ask(port: int, name: str, client: str | None = None, tcp: bool = False,
        timeout: float = 2.0) -> Reply:
    """Query A for `name` with an ECS option for `client` ("192.0.2.0/24"), or none."""
    options = []
    if client is not None:
        address, _, length = client.partition("/")
        options.append(dns.edns.ECSOption(address, int(length)))
    query = dns.message.make_query(name, "A", use_edns=0, options=options)
    send = dns.query.tcp if tcp else dns.query.udp
    response = send(query, HOST, port=port, timeout=timeout)
    scope = next((o.scopelen for o in response.options if isinstance(o, dns.edns.ECSOption)),
                 None)
    addresses = tuple(sorted(r.address for rrset in response.answer
                             if rrset.rdtype == dns.rdatatype.A for r in rrset))
    return Reply(dns.rcode.to_text(response.rcode()), addresses, scope)


def free_port(rng: random.Random) -> int:
    """A port free on HOST for both UDP and TCP right now; the server binds it, and a start
    that fails to bind is retried on another (`Reference.start`)."""
    for _ in range(200):
        port = rng.randint(20000, 60000)
        try:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                with socket.socket(socket.AF_INET, kind) as probe:
                    probe.bind((HOST, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


@dataclass
class Reference:
    """A reference server process in `directory`, answering on HOST:`port` once started."""

    directory: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def command(self) -> list[str]:
        raise NotImplementedError

    def write(self) -> None:
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> Reference:
        rng = random.Random()
        for _ in range(5):
            self.port = free_port(rng)
            self.write()
            log = (self.directory / "server.log").open("wb")
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            cwd=self.directory)
            if self._ready(timeout):
                return self
            self.stop()
        raise RuntimeError(f"{self.command()[0]} did not start: {self.log()[-2000:]}")

    def _ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False  # exited: most likely the port was taken meanwhile
            try:
                if ask(self.port, f"{STATIC}.{ORIGIN}", timeout=0.5).addresses:
                    return True
            except (OSError, dns.exception.Timeout):
                pass
            time.sleep(0.05)
        return False

    def log(self) -> str:
        path = self.directory / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def zone_text(extra: Iterable[str] = ()) -> str:
    soa = f"@ 3600 SOA ns1.example.net. hostmaster.{ORIGIN}. 1 7200 3600 1209600 60"
    return "\n".join(["$TTL 60", soa, "@ 3600 NS ns1.example.net.",
                      f"{STATIC} 60 A 192.0.2.50", *extra]) + "\n"


@dataclass
class Gdnsd(Reference):
    """gdnsd with one geoip map and one resource ``www`` over it.

    `addresses` gives each datacenter (site) one loopback address; every address is checked
    by a TCP connect to `check_port` (run a `harness.Backend` on each address and that port).
    """

    database: Path | None = None
    datacenters: Sequence[str] = ()
    addresses: Mapping[str, str] = field(default_factory=dict)
    geo_map: Mapping[str, Any] = field(default_factory=dict)
    nets: Mapping[str, Sequence[str]] = field(default_factory=dict)
    check_port: int = 0
    auto_dc_coords: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    auto_dc_limit: int | None = None

    def command(self) -> list[str]:
        return [shutil.which("gdnsd", path="/usr/sbin:/usr/bin") or "gdnsd", "-c",
                str(self.directory), "start"]

    def write(self) -> None:
        for sub in ("zones", "run", "state"):
            (self.directory / sub).mkdir(exist_ok=True)
        the_map: dict[str, Any] = {"datacenters": list(self.datacenters)}
        if self.database is not None:
            the_map["geoip2_db"] = str(self.database)
        if self.geo_map:
            the_map["map"] = dict(self.geo_map)
        if self.nets:
            the_map["nets"] = {k: list(v) for k, v in self.nets.items()}
        if self.auto_dc_coords:
            the_map["auto_dc_coords"] = {k: list(v) for k, v in self.auto_dc_coords.items()}
        if self.auto_dc_limit is not None:
            the_map["auto_dc_limit"] = self.auto_dc_limit
        config = {
            "options": {"listen": [f"{HOST}:{self.port}"], "run_dir": str(self.directory / "run"),
                        "state_dir": str(self.directory / "state")},
            "service_types": {"backend": {
                "plugin": "extmon", "interval": 2, "timeout": 1, "direct": True,
                "cmd": ["/bin/bash", "-c", f"exec 3<>/dev/tcp/%%ITEM%%/{self.check_port}"]}},
            "plugins": {"geoip": {
                "maps": {"m": the_map},
                "resources": {"www": {"map": "m", "service_types": ["backend"],
                                      "dcmap": dict(self.addresses)}}}},
        }
        (self.directory / "config").write_text(
            "".join(f"{k} => {vscf(v)}\n" for k, v in config.items()))
        (self.directory / "zones" / ORIGIN).write_text(zone_text(["www 60 DYNA geoip!www"]))


@dataclass
class Knot(Reference):
    """Knot with mod-geoip on the zone: `mode` "geodb" (with `database` and `keys`) or
    "subnet"; `entries` are ``(selector, address)`` pairs for the name ``www`` in order, a
    selector being ``"EU;*"`` (geodb, one value per key) or a CIDR (subnet)."""

    mode: str = "subnet"
    database: Path | None = None
    keys: Sequence[str] = ("continent/code", "country/iso_code")
    entries: Sequence[tuple[str, str]] = ()

    def command(self) -> list[str]:
        return [shutil.which("knotd", path="/usr/sbin:/usr/bin") or "knotd", "-c",
                str(self.directory / "knot.conf")]

    def write(self) -> None:
        d = self.directory
        selector = "geo" if self.mode == "geodb" else "net"
        (d / "geo.conf").write_text(f"www.{ORIGIN}:\n" + "".join(
            f'  - {selector}: "{which}"\n    A: {address}\n' for which, address in self.entries))
        (d / "zone").write_text(f"$ORIGIN {ORIGIN}.\n" + zone_text(["www 60 A 127.0.0.99"]))
        module = [f"    mode: {self.mode}", f"    config-file: {d / 'geo.conf'}"]
        if self.mode == "geodb":
            module += [f"    geodb-file: {self.database}",
                       f"    geodb-key: [ {', '.join(self.keys)} ]"]
        (d / "knot.conf").write_text("\n".join([
            "server:", f"  listen: {HOST}@{self.port}", f"  rundir: {d}",
            "  edns-client-subnet: on", "database:", f"  storage: {d}",
            "mod-geoip:", "  - id: geo", *module, "zone:", f"  - domain: {ORIGIN}",
            f"    file: {d / 'zone'}", "    module: mod-geoip/geo"]) + "\n")


def gdnsd_map(chooser: geochoice.Chooser, records: Iterable[Any]) -> dict[str, Any]:
    """gdnsd's nested ``map`` giving every record of the database the order `chooser` gives
    it: one entry per location path (continent, country, subdivisions, city).

    The map is built per location rather than from the rules because the two servers read
    rules differently: in healthdns a city rule beats a subdivision rule and the deepest
    subdivision wins; in gdnsd the first level of the path that has an entry wins, so a city
    must be written under its subdivision. Records without a continent cannot be placed
    (gdnsd's map starts at the continent) and raise ValueError, as do two records on one path
    with different orders (nearest-first by their coordinates, or an ASN rule)."""
    trie: dict[str, Any] = {}
    for record in records:
        location = geochoice.location_of(record)
        if location is None:
            continue
        if not location.continent:
            raise ValueError(f"gdnsd cannot place a record without a continent: {record}")
        city = record.get("city", {}).get("names", {}).get("en", "")
        path = [location.continent, location.country, *location.subdivisions, city]
        path = path[:path.index("")] if "" in path else path
        order = list(chooser.choose(location).order)
        node = trie
        for key in path:
            node = node.setdefault(key, {})
        if node.get("default", order) != order:
            raise ValueError(f"two orders for the location {path}: gdnsd cannot express it")
        node["default"] = order
    return {"default": list(chooser.default), **_lists(trie)}


def _lists(node: dict[str, Any]) -> dict[str, Any]:
    """A trie as gdnsd's map: a leaf is its list, an inner node a hash with its default."""
    out: dict[str, Any] = {}
    for key, child in node.items():
        if key == "default":
            continue
        inner = _lists(child)
        out[key] = {**({"default": child["default"]} if "default" in child else {}), **inner} \
            if inner else child["default"]
    return out


def loopback_addresses(sites: Sequence[str]) -> dict[str, str]:
    """One loopback address per site: 127.0.0.11, 127.0.0.12, …"""
    return {site: str(ipaddress.IPv4Address("127.0.0.11") + i) for i, site in enumerate(sites)}
