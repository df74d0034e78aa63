"""What the control endpoint shows: an immutable `View` the supervisor builds and swaps in, and
its renderings (the /status JSON and the Prometheus metrics).

The supervisor loop builds a new `View` when something changed and assigns it to the control
server in one reference assignment; the HTTP thread only ever reads whole views, so it needs no
lock and can never see half an update, nor hold up the loop.
"""

from __future__ import annotations

import functools
import math
import platform
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from healthdns.shared.config import Config, ZoneSpec
from healthdns.shared.messages import PATHS, PROBE_BUCKETS, PROTOS, Probe
from healthdns.shared.version import version
from healthdns.supervisor.names import QTYPE_NUMBERS, absolute, bare, from_wire, type_text
from healthdns.supervisor.overrides import Override

# The query types that get their own label value; every other one is "other", so a client
# cannot grow the number of series by asking for odd types (as CoreDNS does).
QTYPES = ("A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT", "CAA", "DS", "DNSKEY",
          "NSEC", "NSEC3", "RRSIG", "HTTPS", "SVCB", "ANY", "AXFR", "IXFR")
_QTYPE_LABEL = {QTYPE_NUMBERS[t]: t for t in QTYPES}
# The zone label of queries for names in none of our zones (answered REFUSED), and of those
# without a usable question (FORMERR): CoreDNS counts these under its own placeholder; "."
# cannot be a zone of ours (the configuration refuses the root zone).
NO_ZONE = "."
# (path, proto, family, zone label, qtype, rcode) -> queries
Counts = Counter[tuple[int, int, int, str, int, int]]
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
          9: "NOTAUTH", 16: "BADVERS"}
MAX_VARIANTS = 1024  # rotating answers per name and type, at most (as the signer renders)


@dataclass(frozen=True)
class Target:
    """One check target as configured: what it checks and what it decides."""

    id: str
    address: str  # the address the check connects to
    check: str  # "tcp 80", "https 443"
    served: tuple[str, ...]  # the addresses whose health it decides
    names: tuple[str, ...]
    zones: tuple[str, ...]


@dataclass(frozen=True)
class TargetState:
    probed: bool | None  # None: not checked yet
    up: bool | None  # after overrides: what the signer is told
    since: float | None  # wall clock of the last change seen by the supervisor
    changes: int
    override: str | None


@dataclass(frozen=True)
class Responder:
    slot: int
    state: str
    pid: int | None
    generation: int
    stats_age: float | None  # seconds since its last Stats
    snapshot_age: float | None  # seconds since the generation it serves was published


@dataclass(frozen=True)
class View:
    """Everything the endpoint shows, at one moment."""

    generation: int = 0
    published_at: float | None = None  # wall clock
    publish_seconds: float | None = None  # from a health change to its publication
    sign_seconds: float | None = None  # the signer's time to render and sign the latest
    serials: tuple[tuple[str, int], ...] = ()
    responders: tuple[Responder, ...] = ()
    targets: dict[str, TargetState] = field(default_factory=dict)
    counts: dict[tuple[int, int, int, str, int, int], int] = field(default_factory=dict)
    truncated: int = 0
    errors: int = 0
    restarts: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    overrides: tuple[Override, ...] = ()
    current: bool = False  # every responder serves `generation`
    # What each pooled name answers and why, from the signer (see messages.Choices).
    choices: tuple[tuple[str, int, int, str, list[str]], ...] = ()
    probes: dict[str, Probe] = field(default_factory=dict)  # the prober's detail, by target
    reloads: dict[str, int] = field(default_factory=dict)  # "ok", "failed"
    hung: dict[str, int] = field(default_factory=dict)  # children killed for silence, by role
    transfers: dict[str, int] = field(default_factory=dict)  # messages.TransferStats totals
    # Seconds the oldest change of health has waited to reach the answers (the signer has not
    # taken it in yet), and how long it may wait before /readyz fails.
    health_waiting: float = 0.0
    health_limit: float = 0.0


def catalog(cfg: Config) -> dict[str, Target]:
    """Every check target (the prober's ids), with the addresses, names and zones it decides."""
    checks = cfg.checks()
    found: dict[str, tuple[dict[str, None], dict[str, None], dict[str, None]]] = {}
    for zone in cfg.zones:
        for owner, record in zone.records.items():
            name = absolute(owner, zone.origin)
            for group in record.pool.groups if record.pool is not None else ():
                assert group.check is not None  # normalised
                for address in group.addresses:
                    served, names, zones = found.setdefault(group.check.target(address),
                                                            ({}, {}, {}))
                    served[address] = names[name] = zones[zone.origin.rstrip(".")] = None
    out = {}
    for target, (served, names, zones) in found.items():
        checked, spec = checks[target]
        out[target] = Target(target, checked, f"{spec.kind} {spec.port}", tuple(served),
                             tuple(names), tuple(zones))
    return out


@dataclass(frozen=True)
class Catalog:
    """What the configuration says, for the endpoint: targets, pools by name, zones, and the
    zones' specs (what `explain` reads static records and aliases from)."""

    targets: dict[str, Target]
    pools: dict[str, dict[str, Any]]  # name -> its pool's rules (see `pools`)
    zones: list[str]
    specs: tuple[ZoneSpec, ...] = ()

    @functools.cached_property
    def names(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        """Each pooled name, in order -> its zone and the targets that judge its addresses
        (in the order of `targets`); worked out once, when /status first asks."""
        origins = [bare(z.origin) for z in self.specs]
        found: dict[str, tuple[str, list[str]]] = {}
        for target in self.targets.values():
            for name in target.names:
                if name not in found:
                    found[name] = (zone_of(name, origins) or target.zones[0], [])
                found[name][1].append(target.id)
        return {name: (zone, tuple(ids)) for name, (zone, ids) in sorted(found.items())}


def make_catalog(cfg: Config) -> Catalog:
    return Catalog(catalog(cfg), pools(cfg), zone_names(cfg), cfg.zones)


def pools(cfg: Config) -> dict[str, dict[str, Any]]:
    """Each pooled name (of the zones, not the aliases) -> its pool's rules: groups and their
    weights, min_healthy, max_answers, policy and backup."""
    out = {}
    for zone in cfg.zones:
        for owner, record in zone.records.items():
            if record.pool is not None:
                pool = record.pool
                out[absolute(owner, zone.origin)] = {
                    "groups": [list(g.addresses) for g in pool.groups],
                    "weights": [list(g.weights) for g in pool.groups],
                    "min_healthy": pool.min_healthy, "max_answers": pool.max_answers,
                    "policy": pool.policy, "backup": list(pool.backup)}
    return out


def rotation(pool: dict[str, Any], addresses: list[str]) -> dict[str, Any]:
    """What one answer holds of the `addresses` a pool chose: `per_answer` of them; when an
    answer holds fewer than were chosen (`max_answers`), the signer renders `variants`
    answers, each address first in as many as its weight says, and they rotate."""
    limit = pool["max_answers"]
    if not limit or len(addresses) <= limit:
        return {"per_answer": len(addresses), "rotates": False, "variants": 1}
    weights = {a: w for group, ws in zip(pool["groups"], pool["weights"], strict=True)
               for a, w in zip(group, ws, strict=True)}
    chosen = [weights.get(a, 1) for a in addresses]  # backup addresses weigh 1
    divisor = math.gcd(*chosen)
    return {"per_answer": limit, "rotates": True,
            "variants": min(sum(w // divisor for w in chosen), MAX_VARIANTS)}


def if_all_down(pool: dict[str, Any]) -> dict[str, Any]:
    """What a pool answers once every address of a family is down: its policy, and the
    addresses per type ("serve-all": the first group with addresses of the family)."""
    policy = pool["policy"]
    answers: dict[str, list[str]] = {}
    for rdtype, v6 in (("A", False), ("AAAA", True)):
        groups = [[a for a in g if (":" in a) == v6] for g in pool["groups"]]
        groups = [g for g in groups if g]
        if not groups:
            continue  # no address of the family: NODATA, whatever the policy
        answers[rdtype] = groups[0] if policy == "serve-all" else \
            [a for a in pool["backup"] if (":" in a) == v6] if policy == "backup" else []
    return {"policy": policy, "answers": answers}


def zone_label(origin: bytes, spelled: list[str]) -> str:
    """The `zone` label of an origin (wire, lower-case) as responders count it: the zone's
    name as `zone_names` spells it, so that the DNS counters join `healthdns_zone_serial`;
    NO_ZONE for b"" (none of ours)."""
    if not origin:
        return NO_ZONE
    name = from_wire(origin)
    if name is None:
        return f"invalid {origin[:64].hex()}"  # a responder's bug: shown, never fatal
    return next((z for z in spelled if z.lower() == name.lower()), name)


def zone_names(cfg: Config) -> list[str]:
    """The zones in the order the signer numbers them (each origin, then its aliases)."""
    return [o.rstrip(".") for z in cfg.zones for o in (z.origin, *z.aliases)]


# --- /status ------------------------------------------------------------------------------------


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

    def render(self, view: View, known: Catalog) -> tuple[bytes | bytearray, ...]:
        """The document but for its opening brace and "now" (the endpoint puts them in front
        as it answers): every target (down and unknown first), every checked name, the
        overrides; in pieces."""
        head = msgspec.json.encode({
            "version": version(), "generation": view.generation, "current": view.current,
            "published_at": view.published_at,
            "zones": [{"zone": z, "serial": s} for z, s in view.serials],
            "responders": [vars(r) for r in view.responders]})
        whole = tuple((o.name, o.action) for o in view.overrides if o.name)
        targets = self._targets.get((known, view.targets, view.probes),
                                    lambda: _array(_target_rows(view, known)))
        names = self._names.get((known, view.targets, view.choices, whole),
                                lambda: _array(_name_rows(view, known)))
        return (head[1:-1] + b',"targets":', targets, b',"names":', names,
                b',"overrides":' + msgspec.json.encode(overrides(view)) + b"}")


class _Kept:
    """One section, kept while the inputs it was made of are equal (the same objects, mostly:
    a view shares what did not change with the one before it)."""

    def __init__(self) -> None:
        self._of: tuple[object, ...] = ()
        self._made = bytearray()

    def get(self, of: tuple[object, ...], make: Callable[[], bytearray]) -> bytearray:
        if of != self._of:  # element by element, each compared by identity first
            self._made, self._of = make(), of
        return self._made


def overrides(view: View) -> list[dict[str, Any]]:
    """The /overrides document, and the /status section of that name."""
    return [_override(o) for o in view.overrides]


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


def _target_rows(view: View, known: Catalog) -> Iterator[dict[str, Any]]:
    states = view.targets
    unknown = TargetState(None, None, None, 0, None)
    # Down and unknown first, each by address; the catalog's order among equals.
    for target in sorted(known.targets.values(),
                         key=lambda t: (_up(states.get(t.id, unknown)), t.address)):
        state = states.get(target.id, unknown)
        yield {"id": target.id, "address": target.address, "check": target.check,
               "served": target.served, "names": target.names, "zones": target.zones,
               "state": _word(state.up), "probed": _word(state.probed), "since": state.since,
               "changes": state.changes, "override": state.override,
               **_probe(view.probes.get(target.id))}


def _name_rows(view: View, known: Catalog) -> Iterator[dict[str, Any]]:
    """Each pooled name, by name: its addresses up and down (after overrides), those an
    override holds (`drained`, `forced`), what it answers now and what it would with all
    down."""
    whole = {o.name: o.action for o in view.overrides if o.name}
    answers = _choices(view)
    aliases = _aliases(known.specs)
    for name, (zone, ids) in known.names.items():
        entry = _by_state(view, known, name, zone, ids)
        entry["aliases"] = [f"{name[:-len(zone)]}{a}" for a in aliases.get(zone, ())]
        pool = known.pools.get(name)
        entry["answers"] = [_answer(choice, pool) for choice in answers.get(name, ())]
        entry["pool"] = pool
        entry["if_all_down"] = if_all_down(pool) if pool else None
        entry["override"] = whole.get(name)
        every = entry["up"] + entry["down"]
        if entry["override"] == "drain":  # the whole name: every address, whatever its own
            entry["up"], entry["down"], entry["drained"], entry["forced"] = [], every, every, []
        elif entry["override"] == "force":
            entry["up"], entry["down"], entry["drained"], entry["forced"] = every, [], [], every
        entry["all_down"] = not entry["up"]
        yield entry


def _by_state(view: View, known: Catalog, name: str, zone: str,
              ids: tuple[str, ...]) -> dict[str, Any]:
    """A name's addresses by state, as its targets' health and address overrides make it."""
    entry: dict[str, Any] = {"name": name, "zone": zone, "up": [], "down": [], "drained": [],
                             "forced": []}
    unknown = TargetState(None, None, None, 0, None)
    for target_id in ids:
        served = known.targets[target_id].served
        state = view.targets.get(target_id, unknown)
        entry["up" if state.up else "down"].extend(served)
        held = {"drain": "drained", "force": "forced"}.get(state.override or "")
        if held is not None:
            entry[held].extend(served)
    return entry


Choice = tuple[str, int, int, str, list[str]]


def _choices(view: View) -> dict[str, list[Choice]]:
    """The signer's choices by name (each name's in the order the signer sent them)."""
    by_name: dict[str, list[Choice]] = {}
    for choice in view.choices:
        by_name.setdefault(choice[0], []).append(choice)
    return by_name


def _answer(choice: Choice, pool: dict[str, Any] | None) -> dict[str, Any]:
    """What one address type of a name answers now, why, and how an answer holds it."""
    _, rdtype, group, rule, addresses = choice
    return {"type": type_text(rdtype), "addresses": addresses, "rule": rule,
            "group": group if group >= 0 else None,
            **(rotation(pool, addresses) if pool is not None else {})}


def zone_of(name: str, zones: list[str]) -> str | None:
    """The most specific of `zones` (lower case, no final dot) that holds `name`."""
    holding = [z for z in zones if name == z or name.endswith("." + z)]
    return max(holding, key=len, default=None)


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


# --- /metrics -----------------------------------------------------------------------------------


class Metrics(Collector):
    """Prometheus metrics from the current view, computed when scraped (nothing is kept)."""

    def __init__(self, current: Any, targets: dict[str, Target]) -> None:
        self.current = current  # a callable returning the View of the moment
        self.targets = targets

    def collect(self) -> Iterator[Metric]:
        view: View = self.current()
        yield from _dns(view)
        yield from _backends(view, self.targets)
        yield from _checks(view, self.targets)
        yield from _process(view)
        yield from _lifecycle(view)
        yield from _transfers(view)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # no fixed description: the registry does not ask us at start


def _dns(view: View) -> Iterator[Metric]:
    requests = CounterMetricFamily("healthdns_dns_requests", "DNS queries answered, summed "
                                   "across responders",
                                   labels=["zone", "proto", "family", "type", "path"])
    responses = CounterMetricFamily("healthdns_dns_responses", "DNS responses by rcode",
                                    labels=["zone", "rcode", "path"])
    by_request: dict[tuple[str, str, str, str, str], int] = {}
    by_rcode: dict[tuple[str, str, str], int] = {}
    for (path, proto, family, zone, qtype, rcode), n in view.counts.items():
        key = (zone, PROTOS[proto], str(family), _QTYPE_LABEL.get(qtype, "other"), PATHS[path])
        by_request[key] = by_request.get(key, 0) + n
        rkey = (zone, RCODES.get(rcode, str(rcode)), PATHS[path])
        by_rcode[rkey] = by_rcode.get(rkey, 0) + n
    for key, n in sorted(by_request.items()):
        requests.add_metric(list(key), n)
    for rkey, n in sorted(by_rcode.items()):
        responses.add_metric(list(rkey), n)
    yield requests
    yield responses
    yield CounterMetricFamily("healthdns_dns_truncated", "UDP answers sent truncated (TC=1)",
                              value=view.truncated)
    yield CounterMetricFamily("healthdns_dns_internal_errors",
                              "queries that met an internal error", value=view.errors)


def _backends(view: View, targets: dict[str, Target]) -> Iterator[Metric]:
    up = GaugeMetricFamily("healthdns_backend_up", "1 if the address is served as healthy "
                           "(after overrides)", labels=["name", "zone", "address", "check"])
    probed = GaugeMetricFamily("healthdns_backend_probe_up", "1 if the last checks passed "
                               "(before overrides)", labels=["address", "check"])
    changes = CounterMetricFamily("healthdns_backend_state_changes", "health changes seen",
                                  labels=["address", "check"])
    override = GaugeMetricFamily("healthdns_backend_override", "1 while an admin override "
                                 "holds the address", labels=["address", "action"])
    all_down: dict[str, bool] = {}
    for target in targets.values():
        state = view.targets.get(target.id)
        if state is None or state.up is None:
            continue
        for name, zone in ((n, target.zones[0]) for n in target.names):
            for address in target.served:
                up.add_metric([name, zone, address, target.check], float(state.up))
            all_down[name] = all_down.get(name, True) and not state.up
        probed.add_metric([target.address, target.check], float(bool(state.probed)))
        changes.add_metric([target.address, target.check], state.changes)
    names = GaugeMetricFamily("healthdns_name_override", "1 while an admin override holds "
                              "a whole name", labels=["name", "action"])
    for o in view.overrides:
        if o.name:
            names.add_metric([o.name, o.action], 1.0)
        else:
            override.add_metric([o.address, o.action], 1.0)
    down = GaugeMetricFamily("healthdns_record_all_down", "1 when every address of a name is "
                             "down (its pool policy answers)", labels=["name"])
    for o in view.overrides:
        if o.name and o.name in all_down:
            all_down[o.name] = o.action == "drain"
    for name, value in sorted(all_down.items()):
        down.add_metric([name], float(value))
    yield from (up, probed, changes, override, names, down)


def _checks(view: View, targets: dict[str, Target]) -> Iterator[Metric]:
    durations = HistogramMetricFamily("healthdns_backend_check_duration_seconds",
                                      "how long health checks take", labels=["address", "check"])
    failures = CounterMetricFamily("healthdns_backend_check_failures", "failed health checks "
                                   "by kind", labels=["address", "check", "reason"])
    for target_id, probe in sorted(view.probes.items()):
        target = targets.get(target_id)
        if target is None:
            continue
        labels = [target.address, target.check]
        running, buckets = 0, []
        for bound, count in zip((*PROBE_BUCKETS, float("inf")), probe.buckets, strict=True):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else f"{bound:g}", running))
        durations.add_metric(labels, buckets, probe.seconds)
        for reason, n in sorted(probe.failures.items()):
            failures.add_metric([*labels, reason], n)
    yield durations
    yield failures


def _process(view: View) -> Iterator[Metric]:
    serial = GaugeMetricFamily("healthdns_zone_serial", "SOA serial served", labels=["zone"])
    for zone, value in view.serials:
        serial.add_metric([zone], value)
    yield serial
    yield GaugeMetricFamily("healthdns_generation", "the latest generation published",
                            value=view.generation)
    generation = GaugeMetricFamily("healthdns_responder_generation", "generation a responder "
                                   "serves", labels=["responder"])
    age = GaugeMetricFamily("healthdns_responder_stats_age_seconds", "seconds since a "
                            "responder last reported", labels=["responder"])
    snapshot = GaugeMetricFamily("healthdns_responder_snapshot_age_seconds", "seconds since "
                                 "the generation a responder serves was published",
                                 labels=["responder"])
    for r in view.responders:
        generation.add_metric([str(r.slot)], r.generation)
        if r.stats_age is not None:
            age.add_metric([str(r.slot)], r.stats_age)
        if r.snapshot_age is not None:
            snapshot.add_metric([str(r.slot)], r.snapshot_age)
    yield from (generation, age, snapshot)
    if view.publish_seconds is not None:
        yield GaugeMetricFamily("healthdns_publish_seconds", "from a health change to the "
                                "signed generation that follows it", value=view.publish_seconds)
    if view.sign_seconds is not None:
        yield GaugeMetricFamily("healthdns_sign_seconds", "the signer's time to render and "
                                "sign the latest generation", value=view.sign_seconds)
    restarts = CounterMetricFamily("healthdns_child_restarts", "children restarted",
                                   labels=["role"])
    for role, n in _by_role(view.restarts):
        restarts.add_metric([role], n)
    yield restarts
    rejected = CounterMetricFamily("healthdns_protocol_rejections", "children killed for "
                                   "breaking the pipe protocol", labels=["role"])
    for role, n in _by_role(view.rejected):
        rejected.add_metric([role], n)
    yield rejected
    yield InfoMetricFamily("healthdns_build", "version of healthdns",
                           value={"version": version(), "python": platform.python_version()})


# Every child role, so that a role's counters exist at 0 before anything happens to it: a
# dashboard then shows 0, and `increase()` sees the first restart (a series that appears with
# its first count at 1 has no earlier sample to increase from).
CHILD_ROLES = ("prober", "signer", "responder", "transfer")


def _by_role(counts: dict[str, int]) -> list[tuple[str, int]]:
    return sorted({**dict.fromkeys(CHILD_ROLES, 0), **counts}.items())


def _lifecycle(view: View) -> Iterator[Metric]:
    reloads = CounterMetricFamily("healthdns_reloads", "configuration reloads applied")
    reloads.add_metric([], view.reloads.get("ok", 0))
    failures = CounterMetricFamily("healthdns_reload_failures", "configuration reloads refused "
                                   "(the previous configuration stayed in service)")
    failures.add_metric([], view.reloads.get("failed", 0))
    hung = CounterMetricFamily("healthdns_child_hung", "children killed and respawned for "
                               "sending nothing for server.hung_after", labels=["role"])
    for role, n in _by_role(view.hung):
        hung.add_metric([role], n)
    waiting = GaugeMetricFamily("healthdns_health_unpublished_seconds", "how long the oldest "
                                "change of health has waited to reach the answers (0: none "
                                "waits)", value=view.health_waiting)
    yield from (reloads, failures, hung, waiting)


def _transfers(view: View) -> Iterator[Metric]:
    """The transfer process's counters (0 without `[transfer]`)."""
    served = CounterMetricFamily("healthdns_transfers", "transfer requests by outcome: axfr, "
                                 "ixfr (from the journal), fallback (IXFR answered with the "
                                 "whole zone), refused", labels=["kind"])
    for kind in ("axfr", "ixfr", "fallback", "refused"):
        served.add_metric([kind], view.transfers.get(kind, 0))
    notifies = CounterMetricFamily("healthdns_notifies", "NOTIFY messages to the secondaries: "
                                   "sent (resends included), answered, failed (given up)",
                                   labels=["result"])
    for result in ("sent", "answered", "failed"):
        notifies.add_metric([result], view.transfers.get(f"notify_{result}", 0))
    yield from (served, notifies)
