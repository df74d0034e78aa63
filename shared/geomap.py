"""Location maps: which sites, in which order, a client is sent to, compiled into a `GeoTable`.

A map says where clients go, in three layers; the first that applies wins:

1. ``networks``: explicit CIDR lists, each with a site order (a company's own networks, a
   cloud's ranges). They may not overlap one another.
2. The database (``database``, a MaxMind DB file: GeoIP2/GeoLite2 Country or City, DB-IP Lite,
   an ASN database): each of its networks has a location, and ``rules`` map locations to site
   orders. When several rules match, the most specific wins: one naming an ASN, then one naming
   a city, then the one whose subdivision is deepest in the location's list, then one naming a
   country, then one naming only a continent. A rule with ``auto`` orders its clients
   nearest-first instead of by a list.
3. Clients no rule matches (and addresses the database does not hold) get the map's ``auto``
   order, nearest-first by great-circle distance from the database's coordinates to the sites'
   (the nearest ``auto_limit`` sites with coordinates, ties in the sites' declared order), as
   gdnsd's ``auto_dc_coords`` does; without ``auto``, or without coordinates, they get
   ``default`` (all sites in their declared order when it is empty).

A location is the record's ``continent.code``, ``country.iso_code``, every
``subdivisions[].iso_code`` (most general first), ``city.names.en`` (compared case-blind),
``autonomous_system_number`` and ``location.latitude``/``longitude``: the GeoIP2 model. A rule
naming a subdivision or a city names its country too (city names repeat across countries).

IPv6 networks inside the IPv4-like spaces (see `geotable.V4_SPACES`) follow the IPv4 data;
an explicit network in ``::/96`` is the IPv4 network it spells (``::1/128`` is 0.0.0.1/32), as
in gdnsd, and one inside another IPv4-like space is an error.

The site order a location gets is chosen in `shared.geochoice`; `shared.geocompile` compiles a
map into a `GeoTable`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from healthdns.shared.errors import ConfigError

CONTINENTS: Final = ("AF", "AN", "AS", "EU", "NA", "OC", "SA")  # MaxMind's continent codes
DEFAULT_AUTO_LIMIT: Final = 3  # gdnsd's: a first choice and two fallbacks
MAX_ASN: Final = 2**32 - 1
_RULE_FIELDS: Final = ("continent", "country", "subdivision", "city", "asn")


class _Spec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of the map description: immutable, unknown keys are errors."""


class Site(_Spec, frozen=True):
    """A place addresses are served from; coordinates (decimal degrees) enable nearest-first."""

    latitude: float | None = None
    longitude: float | None = None


class GeoRule(_Spec, frozen=True):
    """Clients whose location matches every field given here get `sites` (or, with `auto`,
    the sites nearest to them)."""

    continent: str = ""  # AF AN AS EU NA OC SA
    country: str = ""  # ISO 3166-1 alpha-2
    subdivision: str = ""  # ISO 3166-2 code without the country (any level); needs country
    city: str = ""  # English name; needs country
    asn: int = 0  # autonomous system number
    sites: tuple[str, ...] = ()
    auto: bool = False


class GeoNetworks(_Spec, frozen=True):
    """Explicit networks and the site order their clients get, whatever the database says."""

    cidrs: tuple[str, ...]
    sites: tuple[str, ...]


class GeoMap(_Spec, frozen=True):
    """Client location -> ordered sites."""

    database: str = ""  # path of a .mmdb file; "" maps by `networks` alone
    rules: tuple[GeoRule, ...] = ()
    networks: tuple[GeoNetworks, ...] = ()
    default: tuple[str, ...] = ()  # () is every site in declared order
    auto: bool = False
    auto_limit: int = DEFAULT_AUTO_LIMIT  # 0: every site with coordinates


def check_sites(sites: Mapping[str, Site], path: str) -> None:
    """Every site's coordinates are both given or both absent, and on the globe."""
    if not sites:
        raise ConfigError(path, "no sites are defined")
    for name, site in sites.items():
        where = f"{path}.{name}"
        if (site.latitude is None) != (site.longitude is None):
            missing = "longitude" if site.longitude is None else "latitude"
            raise ConfigError(f"{where}.{missing}", "is missing: coordinates need both")
        if site.latitude is None or site.longitude is None:
            continue
        if not -90.0 <= site.latitude <= 90.0:
            raise ConfigError(f"{where}.latitude", f"{site.latitude} is not in -90..90")
        if not -180.0 <= site.longitude <= 180.0:
            raise ConfigError(f"{where}.longitude", f"{site.longitude} is not in -180..180")


def rule_key(rule: GeoRule, where: str) -> tuple[tuple[str, ...], tuple[str | int, ...]]:
    """The fields `rule` names and their values, normalised (the key rules are indexed by); a
    `ConfigError` naming the field when one is not valid."""
    if rule.continent and rule.continent.upper() not in CONTINENTS:
        raise ConfigError(f"{where}.continent", f"{rule.continent!r} is not one of "
                          f"{', '.join(CONTINENTS)}")
    if rule.country and not (len(rule.country) == 2 and rule.country.isascii()
                             and rule.country.isalpha()):
        raise ConfigError(f"{where}.country", f"{rule.country!r} is not an ISO 3166-1 "
                          "two-letter code")
    if rule.subdivision and not (1 <= len(rule.subdivision) <= 3 and rule.subdivision.isascii()
                                 and rule.subdivision.isalnum()):
        raise ConfigError(f"{where}.subdivision", f"{rule.subdivision!r} is not an ISO 3166-2 "
                          "subdivision code (1-3 letters or digits, without the country)")
    if (rule.subdivision or rule.city) and not rule.country:
        field = "subdivision" if rule.subdivision else "city"
        raise ConfigError(f"{where}.{field}", "names a place without its country")
    if rule.city and not rule.city.strip():
        raise ConfigError(f"{where}.city", "is blank")
    if not 0 <= rule.asn <= MAX_ASN:
        raise ConfigError(f"{where}.asn", f"{rule.asn} is not an AS number (1-{MAX_ASN})")
    values: dict[str, str | int] = {
        "continent": rule.continent.upper(), "country": rule.country.upper(),
        "subdivision": rule.subdivision.upper(), "city": rule.city.strip().casefold(),
        "asn": rule.asn}
    fields = tuple(f for f in _RULE_FIELDS if values[f])
    if not fields:
        raise ConfigError(where, f"names none of {', '.join(_RULE_FIELDS)}")
    return fields, tuple(values[f] for f in fields)
