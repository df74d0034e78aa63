"""What a geo pool answers a client, and why: the geo part of `explain`.

The client is an address (a query from it, without ECS) or ``ADDR/LEN`` (a query carrying the
EDNS Client Subnet option with source length LEN). The location, the map entry that gives the
site order, and the scope come from the map as explain compiles it (`explainmaps`); which site
serves that order, which sites were passed over and why, and the addresses, from the signer's
latest choices (`Readout.geo`, by the order's id in the signer's compiled map).
"""

from __future__ import annotations

import ipaddress
from typing import Any, NamedTuple

from healthdns.shared.config import PoolSpec
from healthdns.shared.errors import ConfigError
from healthdns.shared.messages import GeoChoice, MapState
from healthdns.supervisor.catalog import Catalog
from healthdns.supervisor.explainmaps import Address, Compiled, Located, Maps, Pending
from healthdns.supervisor.readout import Readout

_FAMILY = {1: "IPv4", 28: "IPv6"}
_POLICY = {"serve-all": "the first site of the order in full, as if every check passed",
           "backup": "the backup addresses", "empty": "no address"}


class Client(NamedTuple):
    """Whom explain answers: an address, and the ECS source length (None: no ECS)."""

    address: Address
    length: int | None

    def __str__(self) -> str:
        return str(self.address) if self.length is None else f"{self.address}/{self.length}"

    def shown(self) -> dict[str, Any]:
        return {"client": str(self), "address": str(self.address), "ecs": self.length
                is not None, "source_length": self.length}


def client_of(text: str) -> Client:
    """``ADDR`` or ``ADDR/LEN``; a `ValueError` naming what is wrong, as a query with such an
    ECS option would be refused (FORMERR) for it."""
    given = text.strip()
    address_text, slash, length_text = given.partition("/")
    try:
        address = ipaddress.ip_address(address_text)
    except ValueError:
        raise ValueError(f"client: {given[:60]!r} is not an address, nor ADDR/LEN") from None
    if not slash:
        return Client(address, None)
    bits = address.max_prefixlen
    if not length_text.isdigit() or not 0 < int(length_text) <= bits:
        raise ValueError(f"client: {given[:60]!r}: the ECS source length must be 1-{bits} "
                         "(with 0 the server routes by the query's source address: give "
                         "that address alone)")
    length = int(length_text)
    if int(address) & ((1 << (bits - length)) - 1):
        raise ValueError(f"client: {given[:60]!r} has address bits beyond /{length} (a query "
                         f"with this ECS option is answered FORMERR); "
                         f"{ipaddress.ip_network(given, strict=False)} is the network")
    return Client(address, length)


def geo_answer(readout: Readout, known: Catalog, maps: Maps, name: str, number: int,
               pool: PoolSpec, client: Client | None) -> dict[str, Any]:
    """What the geo pool of `name` answers `client` (None: a client the map knows nothing
    about, and the secondaries) in the address type `number`: `records`, `rule`, `why`,
    `scope` and the `geo` detail."""
    state = next((m for m in readout.routing.maps if m.name == pool.map), None)
    geo: dict[str, Any] = {"map": pool.map, "sites": _sites(readout, name, number)}
    if client is None:
        geo |= {"client": None, "entry": f"maps.{pool.map}.default", "entry_why": "no client "
                "given: what a client the map knows nothing about gets, and the secondaries",
                "order": state.orders[0] if state is not None else None}
        return _served(readout, name, number, 0, state, geo) | {"scope": None}
    geo |= client.shown()
    try:
        compiled = maps.compiled(pool.map, known.maps[pool.map].geo(), known.sites)
    except (Pending, ConfigError) as e:
        return {"records": [], "rcode": None, "scope": None, "why": str(e),
                "geo": geo | {"error": str(e)}}
    located = compiled.locate(client.address)
    geo |= _located(located, compiled, state)
    order = _order_id(state, located.order)
    if order is None:
        why = ("the signer's map has no such site order: it was compiled from another "
               "version of the database (see maps in /status)")
        return {"records": [], "rcode": None, "scope": None, "why": why, "geo": geo}
    scope = located.scope if client.length is not None else None
    return _served(readout, name, number, order, state, geo) | {"scope": scope}


def _located(located: Located, compiled: Compiled, state: MapState | None) -> dict[str, Any]:
    table = compiled.table
    found: dict[str, Any] = {
        "location": located.location, "network": located.network, "entry": located.entry,
        "entry_why": located.why, "order": list(located.order),
        "database": table.database or None, "database_type": table.database_type or None,
        "database_networks": table.database_networks}
    if compiled.warning:
        found["warning"] = compiled.warning
    elif state is not None and (state.database_epoch, state.networks) != (
            table.database_epoch, table.database_networks):
        found["warning"] = (f"the signer's map was compiled from another version of the "
                            f"database ({state.networks} networks, built "
                            f"{state.database_epoch}) than explain read ("
                            f"{table.database_networks} networks, built "
                            f"{table.database_epoch}): the file changed since")
    return found


def _order_id(state: MapState | None, order: tuple[str, ...]) -> int | None:
    if state is None:
        return None
    wanted = list(order)
    return next((i for i, o in enumerate(state.orders) if o == wanted), None)


def _served(readout: Readout, name: str, number: int, order: int, state: MapState | None,
            geo: dict[str, Any]) -> dict[str, Any]:
    """What the signer serves the clients of site order `order`, and why."""
    choice = next((c for c in readout.routing.geo if c.name == name and c.rdtype == number
                   and c.order == order), None)
    if choice is None:
        why = "no generation is published yet: the responders answer nothing until the " \
            "first round of checks" if state is None else \
            f"the signer reports no answer for site order {order} of map {geo['map']}"
        return {"records": [], "rcode": None, "why": why, "geo": geo}
    skipped = [{"site": site, "why": why} for site, why in choice.skipped]
    geo |= {"site": choice.site or None, "skipped": skipped}
    return {"records": choice.addresses, "rule": choice.rule, "geo": geo,
            "why": _why(choice, geo["sites"], number)}


def _why(choice: GeoChoice, sites: list[dict[str, Any]], number: int) -> str:
    """The rule that chose, in words."""
    family = _FAMILY.get(number, str(number))
    mine = next((s for s in sites if s["site"] == choice.site), None)
    count = f" ({mine['up']} of {mine['total']} up)" if mine is not None else ""
    if choice.rule == "healthy":
        return f"site {choice.site} serves: it qualifies{count}"
    if choice.rule == "degraded":
        return (f"no site of the order qualifies; {choice.site} is the first with {family} "
                f"addresses up{count}: it serves those")
    policy = choice.rule.split()[-1]
    return (f"every {family} address of every site of the order is down, so the pool's "
            f"policy {policy!r} answers: {_POLICY.get(policy, policy)}")


def _sites(readout: Readout, name: str, number: int) -> list[dict[str, Any]]:
    return [{"site": s.site, "up": s.up, "total": s.total, "qualifies": s.qualifies}
            for s in readout.routing.sites if s.name == name and s.rdtype == number]


def address_sites(pool: PoolSpec) -> dict[str, str]:
    """Each address of a geo pool -> its site."""
    return {a: site for site, spec in pool.sites.items() for g in spec.groups
            for a in g.addresses}
