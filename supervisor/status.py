"""The /status document, rendered from the `readout.Readout` of the moment."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from healthdns.shared.config import ZoneSpec
from healthdns.shared.messages import Probe
from healthdns.shared.version import version
from healthdns.supervisor import keyreport
from healthdns.supervisor.catalog import Catalog, if_all_down, rotation
from healthdns.supervisor.names import QTYPE_NUMBERS, bare, type_text
from healthdns.supervisor.overrides import Override
from healthdns.supervisor.readout import Readout, TargetState


class Document:
    """The /status document, rendered by sections, each kept while what it shows is the same:
    the names (two thirds of the document) change with health, the signer's choices and the
    name overrides, not with every round of checks as the targets do.

    Each section is encoded a row at a time into a buffer of its own, never held whole as
    Python objects, and the document is served as its sections one after another, never
    joined. At 20,000 names the document is 17 MB; building it as dicts and lists, then as one
    string, took 80 MiB and held the GIL for the whole `json.dumps`.

    Not thread-safe: one rendering at a time (`control.Cached` holds a lock around it)."""

    def __init__(self) -> None:
        self._targets = _Kept()
        self._names = _Kept()

    def render(self, readout: Readout, known: Catalog) -> tuple[bytes | bytearray, ...]:
        """The document but for its opening brace and "now" (the endpoint puts them in front
        as it answers): every target (down and unknown first), every checked name, the
        overrides; in pieces."""
        head = msgspec.json.encode({
            "version": version(), "generation": readout.generation, "current": readout.current,
            "published_at": readout.published_at,
            "zones": [{"zone": z, "serial": s} for z, s in readout.serials],
            "responders": [vars(r) for r in readout.responders], **_peers(readout),
            **_maps(readout), "keys": _keys(readout)})
        whole = tuple((o.name, o.action) for o in readout.overrides if o.name)
        targets = self._targets.get((known, readout.targets, readout.probes),
                                    lambda: _array(_target_rows(readout, known)))
        names = self._names.get((known, readout.targets, readout.choices, whole,
                                 readout.routing),
                                lambda: _array(_name_rows(readout, known)))
        return (head[1:-1] + b',"targets":', targets, b',"names":', names,
                b',"overrides":' + msgspec.json.encode(overrides(readout)) + b"}")


class _Kept:
    """One section, kept while the inputs it was made of are equal (the same objects, mostly:
    a readout shares what did not change with the one before it)."""

    def __init__(self) -> None:
        self._of: tuple[object, ...] = ()
        self._made = bytearray()

    def get(self, of: tuple[object, ...], make: Callable[[], bytearray]) -> bytearray:
        if of != self._of:  # element by element, each compared by identity first
            self._made, self._of = make(), of
        return self._made


def _keys(readout: Readout) -> list[dict[str, Any]]:
    """Per zone under a DNSSEC policy, its keys and roll: what `healthdns-ctl keys` says."""
    now = time.time()
    return [keyreport.view(state, now) for state in readout.keys]


def _peers(readout: Readout) -> dict[str, Any]:
    """With [peers]: each peer, fresh or stale, its report's age and counters; the alert."""
    if not readout.peers:
        return {}
    return {"peers": [{"peer": r.name, "fresh": r.fresh, "fenced": r.fenced,
                       "age": r.age if r.age >= 0 else None,
                       "received": r.received, "rejected": r.rejected, "sent": r.sent,
                       "failed": r.failed} for r in readout.peers],
            "peers_too_few_vantages": readout.peers_short,
            "disagreements": readout.split_total,
            "disagreeing": [{"id": target,
                             "vantages": {v: _word(up) for v, up in sorted(votes.states.items())},
                             "outcome": _word(votes.outcome), "verdict": _word(votes.verdict),
                             "flip_due": votes.due if votes.due >= 0 else None}
                            for target, votes in readout.split.items()]}


def overrides(readout: Readout) -> list[dict[str, Any]]:
    """The /overrides document, and the /status section of that name."""
    return [_override(o) for o in readout.overrides]


def _array(rows: Iterator[Any]) -> bytearray:
    """A JSON array of `rows`, each encoded as it comes (and appended: `encode_into` would
    leave the buffer with two thirds more room than it holds)."""
    out = bytearray(b"[")
    encode = msgspec.json.Encoder().encode
    for i, row in enumerate(rows):
        if i:
            out += b","
        out += encode(row)
    out += b"]"
    return out


def _target_rows(readout: Readout, known: Catalog) -> Iterator[dict[str, Any]]:
    states = readout.targets
    unknown = TargetState(None, None, None, 0, None)
    # Down and unknown first, each by address; the catalog's order among equals.
    for target in sorted(known.targets.values(),
                         key=lambda t: (_up(states.get(t.id, unknown)), t.address)):
        state = states.get(target.id, unknown)
        yield {"id": target.id, "address": target.address, "check": target.check,
               "served": target.served, "names": target.names, "zones": target.zones,
               "state": _word(state.up), "probed": _word(state.probed), "since": state.since,
               "changes": state.changes, "override": state.override,
               **_probe(readout.probes.get(target.id))}


def _name_rows(readout: Readout, known: Catalog) -> Iterator[dict[str, Any]]:
    """Each pooled name, by name: its addresses up and down (after overrides), those an
    override holds (`drained`, `forced`), what it answers now and what it would with all
    down."""
    whole = {o.name: o.action for o in readout.overrides if o.name}
    answers = _choices(readout)
    aliases = _aliases(known.specs)
    routed = _routed(readout)
    for name, (zone, ids) in known.names.items():
        entry = _by_state(readout, known, name, zone, ids)
        entry["aliases"] = [f"{name[:-len(zone)]}{a}" for a in aliases.get(zone, ())]
        pool = known.pools.get(name)
        entry["answers"] = [_answer(choice, pool) for choice in answers.get(name, ())]
        entry["pool"] = pool
        entry["if_all_down"] = if_all_down(pool) if pool else None
        entry["override"] = whole.get(name)
        entry["ttl"], entry["ttl_why"] = _served_ttl(readout, known, name, zone)
        every = entry["up"] + entry["down"]
        if entry["override"] == "drain":  # the whole name: every address, whatever its own
            entry["up"], entry["down"], entry["drained"], entry["forced"] = [], every, every, []
        elif entry["override"] == "force":
            entry["up"], entry["down"], entry["drained"], entry["forced"] = every, [], [], every
        entry["all_down"] = not entry["up"]
        if name in routed:  # a geo name: what a client the map knows nothing about gets
            entry |= routed[name]
            entry["answers"] = [_answer((name, QTYPE_NUMBERS[r["type"]], -1, r["rule"],
                                         r["addresses"]), pool)
                                for r in entry["routes"] if r["order_id"] == 0]
        yield entry


def _served_ttl(readout: Readout, known: Catalog, name: str,
                zone: str) -> tuple[int | None, str | None]:
    """The TTL a name's addresses are served with now, and why when it follows health."""
    follows = readout.ttls.get(name)
    if follows is not None:
        return follows
    spec = next((z for z in known.specs if bare(z.origin) == zone), None)
    owner = "@" if name == zone else name[:-len(zone) - 1]
    record = spec.records.get(owner) if spec is not None else None
    return (record.max_ttl if record is not None else None), None


def _by_state(readout: Readout, known: Catalog, name: str, zone: str,
              ids: tuple[str, ...]) -> dict[str, Any]:
    """A name's addresses by state, as its targets' health and address overrides make it."""
    entry: dict[str, Any] = {"name": name, "zone": zone, "up": [], "down": [], "drained": [],
                             "forced": []}
    unknown = TargetState(None, None, None, 0, None)
    for target_id in ids:
        served = known.targets[target_id].served
        state = readout.targets.get(target_id, unknown)
        entry["up" if state.up else "down"].extend(served)
        held = {"drain": "drained", "force": "forced"}.get(state.override or "")
        if held is not None:
            entry[held].extend(served)
    return entry


Choice = tuple[str, int, int, str, list[str]]


def _choices(readout: Readout) -> dict[str, list[Choice]]:
    """The signer's choices by name (each name's in the order the signer sent them)."""
    by_name: dict[str, list[Choice]] = {}
    for choice in readout.choices:
        by_name.setdefault(choice[0], []).append(choice)
    return by_name


def _answer(choice: Choice, pool: dict[str, Any] | None) -> dict[str, Any]:
    """What one address type of a name answers now, why, and how an answer holds it."""
    _, rdtype, group, rule, addresses = choice
    return {"type": type_text(rdtype), "addresses": addresses, "rule": rule,
            "group": group if group >= 0 else None,
            **(rotation(pool, addresses) if pool is not None else {})}



def _maps(readout: Readout) -> dict[str, Any]:
    """With geo pools: each location map as the signer holds it compiled."""
    if not readout.routing.maps:
        return {}
    return {"maps": [{"map": m.name, "database": m.database or None,
                      "database_type": m.database_type or None,
                      "database_built": m.database_epoch or None, "networks": m.networks,
                      "blocks": m.blocks, "orders": len(m.orders), "compiled": m.compiled,
                      "error": m.error or None} for m in readout.routing.maps]}


def _routed(readout: Readout) -> dict[str, dict[str, Any]]:
    """Each geo name (without the final dot) -> its `map`, `sites` (per site and address type:
    addresses up, in all, whether it qualifies) and `routes` (per address type and site order
    of the map: the site that serves, the sites skipped and why, the addresses)."""
    orders = {m.name: m.orders for m in readout.routing.maps}
    out: dict[str, dict[str, Any]] = {}
    for state in readout.routing.sites:
        entry = out.setdefault(state.name, {"map": None, "sites": [], "routes": []})
        entry["sites"].append({"site": state.site, "type": type_text(state.rdtype),
                               "up": state.up, "total": state.total,
                               "qualifies": state.qualifies})
    for choice in readout.routing.geo:
        entry = out.setdefault(choice.name, {"map": None, "sites": [], "routes": []})
        entry["map"] = choice.map
        known = orders.get(choice.map, [])
        entry["routes"].append({
            "type": type_text(choice.rdtype), "order_id": choice.order,
            "order": known[choice.order] if 0 <= choice.order < len(known) else None,
            "site": choice.site or None, "rule": choice.rule,
            "skipped": [{"site": site, "why": why} for site, why in choice.skipped],
            "addresses": choice.addresses})
    return out


def _aliases(specs: tuple[ZoneSpec, ...]) -> dict[str, tuple[str, ...]]:
    """Zone (without the final dot) -> its alias zones."""
    return {bare(z.origin): tuple(bare(a) for a in z.aliases) for z in specs if z.aliases}


def _probe(probe: Probe | None) -> dict[str, Any]:
    if probe is None:
        return {"reason": None, "checks": 0, "failures": {}}
    return {"reason": probe.reason, "checks": sum(probe.buckets),
            "failures": dict(sorted(probe.failures.items()))}


def _override(o: Override) -> dict[str, Any]:
    return {"address": o.address, "name": o.name, "action": o.action, "reason": o.reason,
            "by": o.by, "expires": o.expires, "created": o.created}


def _word(up: bool | None) -> str:
    return "unknown" if up is None else ("up" if up else "down")


def _up(state: TargetState) -> bool:
    return state.up is True
