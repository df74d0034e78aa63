"""Location maps as `explain --client` reads them: where a client is, which entry of the map
gives its site order, and the scope of its answers.

The signer compiles the maps the responders search; roles never import each other, so the
supervisor compiles a map itself with the same code (`shared.geocompile`: the same file and
map give the same blocks, order ids and scopes), once per identity of the database file
(device, inode, size, modification time) and only when explain first asks. At the size of
GeoLite2-Country (400,000 networks) that takes seconds: it runs in a thread of its own, which
neither the supervisor loop nor /healthz waits for; a request waits at most `WAIT` seconds,
then is told to ask again.

The compile reads a private copy of the file (a memfd, dropped when done): a database replaced
in place (`cp` truncates first) while it is read cannot kill the supervisor with SIGBUS, as a
mapped page beyond a file's new end would. Locations are read from the file the map was
compiled from with `pread` (maxminddb's MODE_FILE on an open descriptor), where a file that
shrank is an error, not a signal.
"""

from __future__ import annotations

import ipaddress
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import maxminddb
import msgspec

from healthdns.shared import geocompile, geotable
from healthdns.shared.errors import ConfigError
from healthdns.shared.geochoice import Chooser, Location, distance, location_of
from healthdns.shared.geomap import GeoMap, GeoRule, Site
from healthdns.shared.geotable import GeoIndex

WAIT: Final = 5.0  # seconds a request waits for a compile before it is told to ask again
_CHUNK: Final = 1 << 20
_V4_MASK: Final = (1 << 32) - 1
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Identity = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns


class Located(NamedTuple):
    """Where a client address falls in a compiled map."""

    order: tuple[str, ...]  # its site order, most preferred first
    scope: int  # the prefix length of the merged block holding it
    entry: str  # the map entry that gives the order ("maps.world.rules[2]", ...)
    why: str  # that entry in words
    network: str | None  # the database network holding it (None: none, or no database)
    location: dict[str, Any] | None  # what the database record says (None: nothing)


@dataclass
class _Entry:
    """One compile of one map: running until `done` is set."""

    key: tuple[object, ...]
    done: threading.Event = field(default_factory=threading.Event)
    index: GeoIndex | None = None
    chooser: Chooser | None = None
    reader: maxminddb.Reader | None = None
    failure: ConfigError | None = None
    seconds: float = 0.0


class Pending(Exception):
    """The map is being compiled (it takes seconds at the size of a country database): ask
    again in a few seconds."""


class Maps:
    """The maps explain compiled, one per map name, each replaced when the map or its
    database file changes. Thread-safe: the control endpoint's threads ask."""

    def __init__(self, wait: float = WAIT) -> None:
        self._wait = wait
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._good: dict[str, _Entry] = {}  # the last map that compiled, by name

    def compiled(self, name: str, spec: GeoMap, sites: Mapping[str, Site]) -> Compiled:
        """The map compiled from the database file as it is now; `Pending` while it compiles.
        When the file does not compile, the map compiled before from it (as the signer keeps
        its map), with a warning; `ConfigError` (naming the field) when there is none."""
        identity = _identity(spec.database) if spec.database else None
        key = (spec, tuple(sites.items()), identity)
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None and entry.key != key and not entry.done.is_set():
                pass  # one compile of a map at a time: the next ask compiles the newer file
            elif entry is None or entry.key != key:
                if entry is not None and entry.failure is None:
                    self._good[name] = entry
                entry = self._entries[name] = _Entry(key)
                threading.Thread(target=_compile, args=(entry, name, spec, sites),
                                 name=f"explain map {name}", daemon=True).start()
        if not entry.done.wait(self._wait) or entry.key != key:
            raise Pending(f"maps.{name}: the map is being compiled for explain (it takes a few "
                          "seconds for a large database): ask again")
        warning = ""
        if entry.failure is not None:
            good = self._good.get(name)
            if good is None or good.key[:2] != key[:2]:
                raise entry.failure
            warning = (f"{entry.failure}: explain places clients with the version of the file "
                       "it compiled before, as the signer keeps the map it compiled before")
            entry = good
        assert entry.index is not None and entry.chooser is not None
        return Compiled(name, spec, dict(sites), entry.index, entry.chooser, entry.reader,
                        entry.seconds, warning)


@dataclass(frozen=True)
class Compiled:
    """A map compiled for explain, and the reader of the database it was compiled from."""

    name: str
    spec: GeoMap
    sites: dict[str, Site]
    index: GeoIndex
    chooser: Chooser
    reader: maxminddb.Reader | None
    seconds: float  # how long compiling it took
    warning: str = ""  # the database file does not compile now: this is an earlier version

    @property
    def table(self) -> geotable.GeoTable:
        return self.index.table

    def locate(self, address: Address) -> Located:
        """The site order and scope of a client at `address`, and why."""
        order_id, scope = self.index.find(address.version, int(address))
        order = self.table.orders[order_id]
        v4 = _as_v4(address)
        network, record = self._record(v4 or address)
        explicit = self._explicit(v4 or address)
        if explicit is not None:
            entry, why = explicit
        else:
            entry, why = self._database_entry(location_of(record))
        return Located(order, scope, entry, why, network, _shown(record))

    def _record(self, address: Address) -> tuple[str | None, object]:
        if self.reader is None:
            return None, None
        if address.version == 6 and self.reader.metadata().ip_version == 4:
            return None, None
        try:
            record, length = self.reader.get_with_prefix_len(address)
        except (maxminddb.InvalidDatabaseError, OSError, ValueError) as e:
            return f"unreadable: {e}", None
        if record is None:
            return None, None
        return str(ipaddress.ip_network(f"{address}/{length}", strict=False)), record

    def _explicit(self, address: Address) -> tuple[str, str] | None:
        """The explicit network holding `address` (they never overlap), if any."""
        for i, group in enumerate(self.spec.networks):
            for j, text in enumerate(group.cidrs):
                network = ipaddress.ip_network(text.strip())
                if network.version == 6 and network.subnet_of(_V4_COMPATIBLE):
                    network = ipaddress.IPv4Network(
                        (int(network.network_address), network.prefixlen - 96))
                if address.version == network.version and address in network:
                    return (f"maps.{self.name}.networks[{i}].cidrs[{j}]",
                            f"the explicit network {text.strip()}: it wins over the database")
        return None

    def _database_entry(self, location: Location | None) -> tuple[str, str]:
        if self.reader is None:
            return f"maps.{self.name}.default", ("the map has no database and no explicit "
                                                 "network holds the client: the default order")
        reason = self.chooser.choose(location).reason
        where = f"maps.{self.name}"
        if reason.startswith("rules["):
            number = int(reason[6:reason.index("]")])
            rule = self.spec.rules[number]
            text = f"the rule for {_rule_text(rule)}"
            if rule.auto:
                text += ", nearest first: " + self._distances(location)
            return f"{where}.rules[{number}]", text
        if reason == "nearest":
            return f"{where}.auto", "no rule matches: nearest first (auto), " + \
                self._distances(location)
        if "no coordinates" in reason:
            return f"{where}.default", ("no rule matches, and the location has no coordinates "
                                        "to order the sites nearest first (auto): the default "
                                        "order")
        return f"{where}.default", reason.replace("default: ", "") + ": the default order"

    def _distances(self, location: Location | None) -> str:
        if location is None or location.latitude is None or location.longitude is None:
            return "the location has no coordinates: the default order"
        order = self.chooser.nearest(location.latitude, location.longitude)
        here = (location.latitude, location.longitude)
        return ", ".join(f"{n} {_km(here, self.sites[n])}" for n in order)


_V4_COMPATIBLE: Final = ipaddress.IPv6Network("::/96")


def _as_v4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address of an IPv4-like space carries (the map looks those up
    in its IPv4 table, see `shared.geotable`); None for any other."""
    if address.version == 4:
        return None
    value = int(address)
    for space in geotable.V4_SPACES:
        shift = 128 - space.length
        if value >> shift == space.start >> shift:
            v4 = value >> space.shift & _V4_MASK
            return ipaddress.IPv4Address(v4 ^ _V4_MASK if space.inverted else v4)
    return None


def _km(here: tuple[float, float], site: Site) -> str:
    assert site.latitude is not None and site.longitude is not None  # nearest sites have them
    return f"{distance(*here, site.latitude, site.longitude):,.0f} km"


def _rule_text(rule: GeoRule) -> str:
    fields = [f"{f} {getattr(rule, f)}" for f in ("continent", "country", "subdivision", "city",
                                                   "asn") if getattr(rule, f)]
    return ", ".join(fields)


def _shown(record: object) -> dict[str, Any] | None:
    """What a record says of the client's place, as the operator reads it."""
    location = location_of(record)
    if location is None or not isinstance(record, dict):
        return None
    city = record.get("city")
    names = city.get("names") if isinstance(city, dict) else None
    organisation = record.get("autonomous_system_organization")
    return {"continent": location.continent or None, "country": location.country or None,
            "subdivisions": list(location.subdivisions),
            "city": names.get("en") if isinstance(names, dict) else None,
            "asn": location.asn or None,
            "as_organization": organisation if isinstance(organisation, str) else None,
            "latitude": location.latitude, "longitude": location.longitude}


# --- compiling --------------------------------------------------------------------------


def _identity(path: str) -> Identity | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


def _compile(entry: _Entry, name: str, spec: GeoMap, sites: Mapping[str, Site]) -> None:
    started = time.monotonic()
    try:
        entry.chooser = Chooser(spec, sites, f"maps.{name}")
        if spec.database:
            entry.index, entry.reader = _from_copy(spec, sites, name)
        else:
            entry.index = GeoIndex(geocompile.compile_map(spec, sites, f"maps.{name}"))
    except ConfigError as e:
        entry.failure = e
    except (OSError, ValueError, MemoryError) as e:
        entry.failure = ConfigError(f"maps.{name}.database", f"{spec.database}: {e}")
    finally:
        entry.seconds = time.monotonic() - started
        entry.done.set()


def _from_copy(spec: GeoMap, sites: Mapping[str, Site], name: str
               ) -> tuple[GeoIndex, maxminddb.Reader]:
    """The map compiled from a private copy of its database, and a reader of the file."""
    source = os.open(spec.database, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        copy = os.memfd_create("healthdns-explain-map", os.MFD_CLOEXEC)
        try:
            _copy(source, copy)
            private = msgspec.structs.replace(spec, database=f"/proc/self/fd/{copy}")
            try:
                table = geocompile.compile_map(private, sites, f"maps.{name}")
            except ConfigError as e:
                raise ConfigError(e.path, e.message.replace(private.database,
                                                            spec.database)) from None
        finally:
            os.close(copy)
        reader = maxminddb.open_database(os.dup(source), maxminddb.MODE_FILE)
    finally:
        os.close(source)
    return GeoIndex(msgspec.structs.replace(table, database=spec.database)), reader


def _copy(source: int, target: int) -> None:
    total = 0
    while chunk := os.read(source, _CHUNK):
        total += len(chunk)
        if total > geocompile.MAX_DATABASE:
            break  # the compile names the size
        os.write(target, chunk)
