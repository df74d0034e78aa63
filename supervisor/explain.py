"""What a name answers now, and why: `GET /explain` and `healthdns-ctl explain`.

Worked out from the configuration (`catalog.Catalog.specs`: zones, aliases, records) and the
latest readout (the signer's choices for pools, each target's health, the overrides), by the
rules the signer renders and the responders serve:

* a name in none of our zones (nor their aliases) is REFUSED; the most specific zone holds it;
* a name that is no owner, nor an ancestor of one (an empty non-terminal, RFC 8020), is
  NXDOMAIN; a name that exists without the type asked is NODATA (NOERROR, no answer);
* an alias zone answers its names as the zone's own, relative names in rdata re-rooted in it;
* the apex holds the SOA and the NS records (`nameservers`) too;
* a CNAME owner answers every other type with its chain followed through our zones (at most
  `MAX_CHAIN` records; a loop ends it): to a name outside them (the resolver follows it), to
  one that does not exist (NXDOMAIN), or to the data of the type at the chain's end;
* a pool's A and AAAA are the addresses the signer chose for the latest generation
  (`Readout.choices`), each answer `per_answer` of them, rotating when it holds fewer than chosen;
* a geo pool's are those the signer chose for the client's site order (`explaingeo`); with
  ECS, every other answer has scope 0 (it does not depend on the client).

DNSSEC records (DNSKEY, NSEC, RRSIG, ...) are the signer's and are not explained.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from healthdns.shared.config import PeersSpec, RecordSpec, ZoneSpec
from healthdns.supervisor import vantages
from healthdns.supervisor.catalog import Catalog, rotation, zone_of
from healthdns.supervisor.explaingeo import Client, address_sites, client_of, geo_answer
from healthdns.supervisor.explainmaps import Maps
from healthdns.supervisor.names import QTYPE_NUMBERS, bare
from healthdns.supervisor.overrides import Override
from healthdns.supervisor.readout import Readout, TargetState

# The types explain knows: those a configuration gives, and the apex's own.
TYPES = ("A", "AAAA", "CNAME", "MX", "TXT", "SRV", "CAA", "PTR", "NS", "SOA")
MAX_CHAIN = 8  # CNAME records followed, as the signer renders chains
MAX_NAME = 253  # characters of a name in text, without the final dot (RFC 1035 2.3.4)
_HOST_FIELD = {"CNAME": 0, "PTR": 0, "MX": 1, "SRV": 3}  # the field of rdata that is a name
_FAMILY = {"A": "IPv4", "AAAA": "IPv6"}
NOERROR, NXDOMAIN, REFUSED = "NOERROR", "NXDOMAIN", "REFUSED"


class ExplainError(ValueError):
    """A question explain cannot take; the text names the field."""


@dataclass(frozen=True)
class Asker:
    """Who asks (None: any client) and the maps compiled for explain."""

    client: Client | None = None
    maps: Maps = field(default_factory=Maps)

    @property
    def scope(self) -> int | None:
        """The scope of an answer that does not depend on the client: 0 with ECS."""
        return None if self.client is None or self.client.length is None else 0


@dataclass(frozen=True)
class Place:
    """Where a name falls: its zone (an origin or an alias), the spec, the owner in it."""

    name: str  # lower case, no final dot
    zone: str  # the zone holding it, no final dot
    spec: ZoneSpec
    owner: str  # relative to `zone`, "@" for the apex

    @property
    def record(self) -> RecordSpec | None:
        return self.spec.records.get(self.owner)

    @property
    def own_name(self) -> str:
        """The name in the zone itself (an alias zone's names answer as the zone's)."""
        origin = bare(self.spec.origin)
        return origin if self.owner == "@" else f"{self.owner}.{origin}"

    def exists(self) -> bool:
        if self.owner == "@" or self.owner in self.spec.records:
            return True
        below = "." + self.owner
        return any(o.endswith(below) for o in self.spec.records)  # an empty non-terminal


def explain(readout: Readout, known: Catalog, name: str, rdtype: str | None = None,
            client: str | None = None, maps: Maps | None = None) -> dict[str, Any]:
    """What `name` answers for `rdtype` (default: A, AAAA and the types the name holds), to
    `client` (``ADDR`` or ``ADDR/LEN``: with ECS; default: any client)."""
    wanted = name.strip().lower().rstrip(".")
    if not wanted or len(wanted) > MAX_NAME:
        raise ExplainError(f"name: {name[:80]!r} is not a domain name")
    asked = None if rdtype is None else rdtype.strip().upper()
    if asked is not None and asked not in TYPES:
        raise ExplainError(f"type: {asked[:20]!r} is not one of {', '.join(TYPES)} (DNSSEC "
                           "records are the signer's)")
    try:
        asker = Asker(client_of(client) if client else None, maps or Maps())
    except ValueError as e:
        raise ExplainError(str(e)) from None
    doc: dict[str, Any] = {"name": wanted, "generation": readout.generation, "zone": None,
                           "alias_of": None, "rcode": None, "why": "", "answers": [],
                           "client": asker.client.shown() if asker.client else None,
                           "scope": asker.scope}
    place = find(known.specs, wanted)
    if place is None:
        zones = ", ".join(known.zones[:5]) + (", ..." if len(known.zones) > 5 else "")
        return doc | {"rcode": REFUSED, "why": f"{wanted} is in none of this server's zones "
                      f"({zones}): not ours"}
    alias = place.zone != bare(place.spec.origin)
    doc |= {"zone": place.zone, "alias_of": bare(place.spec.origin) if alias else None}
    if not place.exists():
        return doc | {"rcode": NXDOMAIN, "negative_ttl": _negative_ttl(place.spec),
                      "why": f"zone {place.zone} has no name {wanted}, nor any name below it"}
    types = [asked] if asked is not None else _types(place)
    doc["answers"] = [answer(readout, known, place, t, asker) for t in types]
    return doc


def find(specs: tuple[ZoneSpec, ...], name: str) -> Place | None:
    """The zone or alias zone that holds `name` (the most specific), None if none does."""
    best: tuple[str, ZoneSpec] | None = None
    for spec in specs:
        for apex in (spec.origin, *spec.aliases):
            zone = bare(apex)
            if zone_of(name, [zone]) and (best is None or len(zone) > len(best[0])):
                best = (zone, spec)
    if best is None:
        return None
    zone, spec = best
    return Place(name, zone, spec, "@" if name == zone else name[:-len(zone) - 1])


def _types(place: Place) -> list[str]:
    """A and AAAA, and every other type the name holds."""
    record = place.record
    held = {"A", "AAAA"}
    if record is not None:
        held |= {t.upper() for t in record.static()}
    if place.owner == "@":
        held |= {"SOA", "NS"}
    return [t for t in TYPES if t in held]


def answer(readout: Readout, known: Catalog, place: Place, rdtype: str,
           asker: Asker | None = None) -> dict[str, Any]:
    """The answer to `rdtype` at `place`, CNAME chains followed."""
    asker = asker or Asker()
    chain: list[dict[str, Any]] = []
    seen = {place.name}
    while True:
        record = place.record
        if record is None or record.cname is None or rdtype == "CNAME":
            return {"type": rdtype, "chain": chain, "scope": asker.scope,
                    **data(readout, known, place, rdtype, asker)}
        target = absolute(record.cname, place.zone)
        chain.append({"name": place.name, "type": "CNAME", "ttl": _ttl(place),
                      "target": target})
        following = target.lower().rstrip(".")
        ends = _chain_end(known, following, seen, len(chain))
        if isinstance(ends, dict):
            return {"type": rdtype, "chain": chain, "owner": place.name, "ttl": None,
                    "records": [], "source": "cname", "scope": asker.scope, **ends}
        place = ends
        seen.add(following)


def _chain_end(known: Catalog, target: str, seen: set[str],
               length: int) -> Place | dict[str, Any]:
    """Where a chain goes next: the place of `target`, or how the chain ends there."""
    if target in seen or length >= MAX_CHAIN:
        why = "loops" if target in seen else f"is {MAX_CHAIN} records long"
        return {"rcode": NOERROR, "why": f"the chain {why}: it ends with {target}"}
    place = find(known.specs, target)
    if place is None:
        return {"rcode": NOERROR, "why": f"the chain leaves our zones at {target}: the "
                "resolver follows it"}
    if not place.exists():
        return {"rcode": NXDOMAIN, "why": f"the chain leads to {target}, which does not "
                "exist", "negative_ttl": _negative_ttl(place.spec)}
    return place


def data(readout: Readout, known: Catalog, place: Place, rdtype: str,
         asker: Asker | None = None) -> dict[str, Any]:
    """The records of `rdtype` the name at `place` holds itself (no chain)."""
    spec, record = place.spec, place.record
    found: dict[str, Any] = {"owner": place.name, "rcode": NOERROR}
    if place.owner == "@" and rdtype in ("SOA", "NS"):
        return found | _apex(readout, place, rdtype)
    if record is not None and record.pool is not None and rdtype in _FAMILY:
        return found | pool_answer(readout, known, place, rdtype, asker or Asker())
    texts = record.static().get(rdtype.lower(), ()) if record is not None else ()
    if texts:
        return found | {"ttl": _ttl(place), "records": [_rdata(rdtype, t, place.zone)
                                                        for t in texts],
                        "source": "static", "why": f"the static {rdtype} records of "
                        f"{place.own_name}"}
    why = (f"{place.name} holds no {rdtype} records" if record is not None
           or place.owner == "@" else f"{place.name} is an empty non-terminal (names "
           "exist below it, none here)")
    return found | {"ttl": None, "records": [], "source": None,
                    "negative_ttl": _negative_ttl(spec), "why": why + ": NODATA"}


def _apex(readout: Readout, place: Place, rdtype: str) -> dict[str, Any]:
    spec = place.spec
    if rdtype == "NS":
        return {"ttl": spec.ns_ttl, "records": list(spec.nameservers), "source": "zone",
                "why": "the zone's nameservers"}
    serial = dict(readout.serials).get(place.zone)
    soa = spec.soa
    rname = absolute(soa.rname or "hostmaster", place.zone)
    text = (f"{spec.nameservers[0]} {rname} {'?' if serial is None else serial} "
            f"{soa.refresh} {soa.retry} {soa.expire} {soa.minimum}")
    return {"ttl": soa.ttl, "records": [text], "source": "zone",
            "why": "the zone's SOA (the serial of the latest generation)"}


# --- pools --------------------------------------------------------------------------------------


def pool_answer(readout: Readout, known: Catalog, place: Place, rdtype: str,
                asker: Asker) -> dict[str, Any]:
    """A pool's addresses of one family: what the signer chose, by which rule, how an answer
    holds them, and the state of every address of the family."""
    name = place.own_name
    rules = known.pools[name]
    number = QTYPE_NUMBERS[rdtype]
    chosen = next((c for c in readout.choices if c[0] == name and c[1] == number), None)
    states = _addresses(readout, place, rdtype, known.peers)
    override = next((_held(o) for o in readout.overrides if o.name == name), None)
    base = {"ttl": _ttl(place), "source": "pool", "pool": name, "addresses": states,
            "override": override}
    follows = readout.ttls.get(name)
    if follows is not None:  # the TTL that follows health: the rung served now, and why
        base |= {"ttl": follows[0], "ttl_why": follows[1], "ttl_max": _ttl(place)}
    if not states:
        return base | {"records": [], "ttl": None, "negative_ttl": _negative_ttl(place.spec),
                       "why": f"the pool of {name} has no {_FAMILY[rdtype]} address: NODATA"}
    pool = place.record.pool if place.record is not None else None
    if pool is not None and pool.map:
        return base | _geo(readout, known, place, rdtype, asker, states)
    if chosen is None:
        return base | {"rcode": None, "records": [], "why": "no generation is published yet: "
                       "the responders answer nothing until the first round of checks"}
    _, _, group, rule, addresses = chosen
    why = _rule(rules, rdtype, group, rule) + _overridden(override)
    if not addresses:
        return base | {"records": [], "ttl": None, "rule": rule,
                       "negative_ttl": _negative_ttl(place.spec), "why": why + ": NODATA"}
    return base | {"records": addresses, "rule": rule, **rotation(rules, addresses),
                   "why": why}


def _geo(readout: Readout, known: Catalog, place: Place, rdtype: str, asker: Asker,
         states: list[dict[str, Any]]) -> dict[str, Any]:
    """A geo pool's addresses of one family for the client, each address with its site."""
    record = place.record
    assert record is not None and record.pool is not None
    name = place.own_name
    found = geo_answer(readout, known, asker.maps, name, QTYPE_NUMBERS[rdtype], record.pool,
                       asker.client)
    sites = address_sites(record.pool)
    for state in states:
        state["site"] = sites.get(state["address"])
    if found["records"]:
        found |= rotation(known.pools[name], found["records"])
    elif found.get("rcode", NOERROR) is not None:
        found |= {"ttl": None, "negative_ttl": _negative_ttl(place.spec),
                  "why": found["why"] + ": NODATA"}
    return found


def _rule(rules: dict[str, Any], rdtype: str, group: int, rule: str) -> str:
    """The rule that chose, in words; groups numbered as configured (1, 2, ...)."""
    v6 = rdtype == "AAAA"
    family = [i for i, g in enumerate(rules["groups"]) if any((":" in a) == v6 for a in g)]
    count = len(rules["groups"])
    least = rules["min_healthy"]
    if rule == "healthy":
        index = family[group]
        size = sum((":" in a) == v6 for a in rules["groups"][index])
        if size < least:
            return (f"group {index + 1} of {count} has all its {size} {_FAMILY[rdtype]} "
                    f"addresses up (fewer than min_healthy = {least})")
        return f"group {index + 1} of {count} has at least min_healthy = {least} addresses up"
    if rule == "degraded":
        return (f"no group has min_healthy = {least} addresses up; group "
                f"{family[group] + 1} is the first with any up")
    policy = rule.split()[-1]
    what = {"serve-all": "the first group in full, as if every check passed",
            "backup": "the backup addresses", "empty": "no address"}.get(policy, policy)
    return (f"every {_FAMILY[rdtype]} address is down, so the pool's policy {policy!r} "
            f"answers: {what}")


def _overridden(override: dict[str, Any] | None) -> str:
    if override is None:
        return ""
    counted = "down" if override["action"] == "drain" else "up"
    return (f"; the name is {'drained' if counted == 'down' else 'forced'}: every address "
            f"counts as {counted}")


def _addresses(readout: Readout, place: Place, rdtype: str,
               peers: PeersSpec | None = None) -> list[dict[str, Any]]:
    """Every address of the family in the pool (groups, then backup), with its state:
    up, down, unknown, drained or forced (an override holds it), and why; with [peers], each
    vantage's say and the rule that made the verdict (`vantages`)."""
    record = place.record
    assert record is not None and record.pool is not None
    v6 = rdtype == "AAAA"
    name = place.own_name
    whole = next((o.action for o in readout.overrides if o.name == name), None)
    held = {o.address: o for o in readout.overrides if o.address}
    out = []
    for number, group in enumerate(record.pool.groups, start=1):
        assert group.check is not None  # normalised
        for address in group.addresses:
            if (":" in address) != v6:
                continue
            target = group.check.target(address)
            state = readout.targets.get(target, TargetState(None, None, None, 0, None))
            probe = readout.probes.get(target)
            mine = held.get(address)
            action = whole or state.override
            word = {"drain": "drained", "force": "forced"}.get(action or "") or \
                ("unknown" if state.up is None else "up" if state.up else "down")
            out.append({"address": address, "group": number, "state": word,
                        "probed": None if state.probed is None else
                        ("up" if state.probed else "down"),
                        "reason": probe.reason if probe is not None else None,
                        "since": state.since,
                        "override": _held(mine) if mine is not None and not whole else None,
                        **({"peers": vantages.say(readout, peers, target, state.up)}
                           if peers is not None else {})})
    out += [{"address": a, "group": None, "state": "backup", "probed": None, "reason": None,
             "since": None, "override": None}
            for a in record.pool.backup if (":" in a) == v6]
    return out


def _held(o: Override) -> dict[str, Any]:
    return {"action": o.action, "reason": o.reason, "by": o.by, "expires": o.expires,
            "created": o.created}


# --- text ---------------------------------------------------------------------------------------


def absolute(text: str, zone: str) -> str:
    """A name as configured (relative to its zone, "@", or absolute) in `zone`, absolute."""
    if text == "@":
        return zone + "."
    return text if text.endswith(".") else f"{text}.{zone}."


def _rdata(rdtype: str, text: str, zone: str) -> str:
    """Static rdata as configured, with a relative name in it made absolute in `zone`."""
    field = _HOST_FIELD.get(rdtype)
    if field is None:
        return text
    fields = text.split()
    if len(fields) > field:
        fields[field] = absolute(fields[field], zone)
    return " ".join(fields)


def _ttl(place: Place) -> int:
    record = place.record
    return record.max_ttl if record is not None else place.spec.ttl


def _negative_ttl(spec: ZoneSpec) -> int:
    """The TTL of a negative answer's SOA: the lesser of the SOA's TTL and MINIMUM (RFC 2308
    section 3, RFC 9077)."""
    return min(spec.soa.ttl, spec.soa.minimum)
