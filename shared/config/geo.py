"""Sites and location maps (`[sites.NAME]`, `[maps.NAME]`), and the pools that route by them.

A geo pool names a map (`map`) and holds its addresses per site (`sites.NAME`, each a pool's
short form or its groups); every other key of the pool (check, min_healthy, max_answers,
policy, backup, ttl) keeps its meaning inside each site. Normalised, a geo pool's `groups`
are every site's groups in site order (what the prober checks and the status lists), and each
site holds its own (`pools.SitePoolSpec.groups`).

The map's structs and the rules a client's site order follows are `shared.geomap`'s; here the
configuration checks what it can without reading a database through: the rules, the networks
and the site names (by compiling the map without its database) and that the database opens
as a MaxMind DB file (`geocompile.check_database`). The signer compiles the map in full.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import msgspec

from healthdns.shared.config.values import shown_key
from healthdns.shared.errors import ConfigError
from healthdns.shared.geomap import GeoMap, Site, check_sites

DEFAULT_CHECK_INTERVAL = 60.0  # seconds between two looks at a map's database file
MAX_CHECK_INTERVAL = 86400.0
SITE_NAME = re.compile(r"[A-Za-z0-9_-]{1,63}")


class MapSpec(GeoMap, frozen=True):
    """A location map (`shared.geomap.GeoMap`) and how often its database file is looked at
    for a replacement (seconds; 0: only when the configuration is loaded)."""

    check_interval: float = DEFAULT_CHECK_INTERVAL

    def geo(self) -> GeoMap:
        """The map as `shared.geocompile` compiles it."""
        fields = {f: getattr(self, f) for f in GeoMap.__struct_fields__}
        return GeoMap(**fields)


def normalise_sites(sites: Mapping[str, Site], maps: Mapping[str, MapSpec]) -> None:
    """Site names fit a metric label; coordinates are on the globe."""
    for name in sites:
        if not SITE_NAME.fullmatch(name):
            raise ConfigError(f"sites.{shown_key(name)}", f"{name!r} is not a site name "
                              "(letters, digits, '_' and '-', at most 63)")
    if sites or maps:
        check_sites(sites, "sites")


def normalise_maps(sites: Mapping[str, Site], maps: Mapping[str, MapSpec]) -> None:
    """Each map checked against the sites: rules, networks and site names, and its database
    opened (an unreadable, wrong-format or truncated file is an error naming it)."""
    from healthdns.shared import geocompile  # maxminddb: the supervisor's and the signer's

    for name, spec in maps.items():
        path = f"maps.{shown_key(name)}"
        if not 0 <= spec.check_interval <= MAX_CHECK_INTERVAL:
            raise ConfigError(f"{path}.check_interval", f"{spec.check_interval} is not between "
                              f"0 (only at reload) and {MAX_CHECK_INTERVAL:.0f} seconds")
        geo = spec.geo()
        geocompile.compile_map(msgspec.structs.replace(geo, database=""), sites, path, "sites")
        if spec.database:
            geocompile.check_database(spec.database, f"{path}.database")


def check_pool_names(pool_map: str, pool_sites: Mapping[str, object], sites: Mapping[str, Site],
                     maps: Mapping[str, MapSpec], path: str) -> None:
    """A geo pool's map and sites exist."""
    if pool_map not in maps:
        known = ", ".join(maps) or "none is defined"
        raise ConfigError(f"{path}.map", f"{pool_map!r} is not a map (maps: {known})")
    for site in pool_sites:
        if site not in sites:
            known = ", ".join(sites) or "none is defined"
            raise ConfigError(f"{path}.sites.{shown_key(site)}",
                              f"{site!r} is not a site (sites: {known})")
