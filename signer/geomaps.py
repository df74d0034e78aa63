"""The location maps the signer answers by, compiled (`shared.geocompile`) when the
configuration is loaded and again when a map's database file is replaced.

A replacement is seen by the file's identity and size and modification time, looked at on
every reload and every `check_interval` seconds. A database that does not compile (damaged,
truncated, of the wrong format) changes nothing: the previous tables stay in service and the
error, naming the file, is logged and shown (`MapState.error`). At start there are no previous
tables: the map is compiled without its database (its networks and its default order) until
the file compiles.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from healthdns.shared import geocompile
from healthdns.shared.config import Config
from healthdns.shared.config.geo import MapSpec
from healthdns.shared.errors import ConfigError
from healthdns.shared.geomap import Site
from healthdns.shared.geotable import GeoTable
from healthdns.shared.messages import MapState

log = logging.getLogger("healthdns.signer")

Stamp = tuple[int, int, int, int]  # device, inode, size, modification time (ns)


@dataclass
class _Map:
    spec: MapSpec
    sites: dict[str, Site]
    table: GeoTable
    stamp: Stamp | None
    compiled: float
    error: str = ""
    due: float = 0.0  # when the database file is next looked at (0: never)


class GeoMaps:
    """Every map of the configuration, compiled."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self.now = now
        self.maps: dict[str, _Map] = {}
        # Whether a look at the files changed what `states` says (a new compile, an error
        # come or gone) since the signer last told it (`Signer.choices`).
        self.restated = False

    def configure(self, cfg: Config) -> set[str]:
        """Take the maps of a configuration; the names of those compiled anew."""
        changed: set[str] = set()
        kept: dict[str, _Map] = {}
        for name, spec in cfg.maps.items():
            old = self.maps.get(name)
            if old is not None and old.spec == spec and old.sites == cfg.sites \
                    and old.stamp == _stamp(spec.database):
                kept[name] = old
                self._schedule(old)
                continue
            kept[name] = self._compiled(name, spec, cfg.sites, old)
            changed.add(name)
        self.maps = kept
        return changed

    def refresh(self) -> set[str]:
        """Look at the database files due for a look; the names of the maps compiled anew."""
        now, changed = self.now(), set()
        for name, held in self.maps.items():
            if not held.due or held.due > now:
                continue
            self._schedule(held)
            if _stamp(held.spec.database) == held.stamp:
                continue
            made = self._compiled(name, held.spec, held.sites, held)
            self.maps[name] = made
            if made.table is not held.table:
                changed.add(name)
            if made.table is not held.table or made.error != held.error:
                self.restated = True
        return changed

    def due(self) -> float | None:
        """When a database file is next looked at."""
        return min((m.due for m in self.maps.values() if m.due), default=None)

    def tables(self) -> dict[str, GeoTable]:
        return {name: held.table for name, held in self.maps.items()}

    def orders(self) -> dict[str, tuple[tuple[str, ...], ...]]:
        return {name: held.table.orders for name, held in self.maps.items()}

    def states(self) -> list[MapState]:
        out = []
        for name, held in self.maps.items():
            table = held.table
            blocks = (len(table.v4_blocks) + len(table.v6_blocks)) // 4
            out.append(MapState(name, [list(o) for o in table.orders], table.database,
                                table.database_type, table.database_epoch,
                                table.database_networks, blocks, held.compiled, held.error))
        return out

    def _compiled(self, name: str, spec: MapSpec, sites: dict[str, Site],
                  old: _Map | None) -> _Map:
        """The map compiled; on an error the old tables (or, without old ones, the map
        without its database) and the error."""
        path = f"maps.{name}"
        stamp = _stamp(spec.database)
        began = time.perf_counter()
        try:
            table = geocompile.compile_map(spec.geo(), sites, path, "sites")
        except ConfigError as e:
            log.error("map %s: %s; %s", name, e, "the previous tables stay in service"
                      if old is not None else "serving its networks and default order only")
            if old is not None and old.spec == spec and old.sites == sites:
                held = _Map(spec, sites, old.table, stamp, old.compiled, str(e))
            else:
                bare = msgspec.structs.replace(spec.geo(), database="")
                held = _Map(spec, sites, geocompile.compile_map(bare, sites, path, "sites"),
                            stamp, self.now(), str(e))
            self._schedule(held)
            return held
        log.info("map %s compiled: %d networks of %s, %d site orders, %.2f s", name,
                 table.database_networks, spec.database or "no database",
                 len(table.orders), time.perf_counter() - began)
        held = _Map(spec, sites, table, stamp, self.now())
        self._schedule(held)
        return held

    def _schedule(self, held: _Map) -> None:
        interval = held.spec.check_interval
        held.due = self.now() + interval if interval and held.spec.database else 0.0


def _stamp(file: str) -> Stamp | None:
    if not file:
        return None
    try:
        status = os.stat(file)
    except OSError:
        return None
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns
