"""The Prometheus metrics, computed from the `readout.Readout` of the moment when scraped."""

from __future__ import annotations

import platform
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from healthdns.shared.messages import PROBE_BUCKETS
from healthdns.shared.querycounts import PATHS, PROTOS
from healthdns.shared.version import version
from healthdns.supervisor.catalog import Target
from healthdns.supervisor.names import QTYPE_NUMBERS
from healthdns.supervisor.readout import Readout
from healthdns.supervisor.roles import ROLES

# The query types that get their own label value; every other one is "other", so a client
# cannot grow the number of series by asking for odd types (as CoreDNS does).
QTYPES = ("A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT", "CAA", "DS", "DNSKEY",
          "NSEC", "NSEC3", "RRSIG", "HTTPS", "SVCB", "ANY", "AXFR", "IXFR")
_QTYPE_LABEL = {QTYPE_NUMBERS[t]: t for t in QTYPES}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
          9: "NOTAUTH", 16: "BADVERS"}


class Metrics(Collector):
    """Prometheus metrics from the current readout, computed when scraped (nothing is kept)."""

    def __init__(self, current: Any, targets: dict[str, Target]) -> None:
        self.current = current  # a callable returning the Readout of the moment
        self.targets = targets

    def collect(self) -> Iterator[Metric]:
        readout: Readout = self.current()
        yield from _dns(readout)
        yield from _backends(readout, self.targets)
        yield from _checks(readout, self.targets)
        yield from _process(readout)
        yield from _lifecycle(readout)
        yield from _transfers(readout)
        yield from _peers(readout)
        yield from _sites(readout)
        yield from _maps(readout)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # no fixed description: the registry does not ask us at start


def _dns(readout: Readout) -> Iterator[Metric]:
    requests = CounterMetricFamily("healthdns_dns_requests", "DNS queries answered, summed "
                                   "across responders",
                                   labels=["zone", "proto", "family", "type", "path"])
    responses = CounterMetricFamily("healthdns_dns_responses", "DNS responses by rcode",
                                    labels=["zone", "rcode", "path"])
    by_request: dict[tuple[str, str, str, str, str], int] = {}
    by_rcode: dict[tuple[str, str, str], int] = {}
    for (path, proto, family, zone, qtype, rcode), n in readout.counts.items():
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
                              value=readout.truncated)
    yield CounterMetricFamily("healthdns_dns_internal_errors",
                              "queries that met an internal error", value=readout.errors)


def _backends(readout: Readout, targets: dict[str, Target]) -> Iterator[Metric]:
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
        state = readout.targets.get(target.id)
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
    for o in readout.overrides:
        if o.name:
            names.add_metric([o.name, o.action], 1.0)
        else:
            override.add_metric([o.address, o.action], 1.0)
    down = GaugeMetricFamily("healthdns_record_all_down", "1 when every address of a name is "
                             "down (its pool policy answers)", labels=["name"])
    for o in readout.overrides:
        if o.name and o.name in all_down:
            all_down[o.name] = o.action == "drain"
    for name, value in sorted(all_down.items()):
        down.add_metric([name], float(value))
    yield from (up, probed, changes, override, names, down)


def _checks(readout: Readout, targets: dict[str, Target]) -> Iterator[Metric]:
    durations = HistogramMetricFamily("healthdns_backend_check_duration_seconds",
                                      "how long health checks take", labels=["address", "check"])
    failures = CounterMetricFamily("healthdns_backend_check_failures", "failed health checks "
                                   "by kind", labels=["address", "check", "reason"])
    for target_id, probe in sorted(readout.probes.items()):
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


def _process(readout: Readout) -> Iterator[Metric]:
    serial = GaugeMetricFamily("healthdns_zone_serial", "SOA serial served", labels=["zone"])
    for zone, value in readout.serials:
        serial.add_metric([zone], value)
    yield serial
    yield GaugeMetricFamily("healthdns_generation", "the latest generation published",
                            value=readout.generation)
    generation = GaugeMetricFamily("healthdns_responder_generation", "generation a responder "
                                   "serves", labels=["responder"])
    age = GaugeMetricFamily("healthdns_responder_stats_age_seconds", "seconds since a "
                            "responder last reported", labels=["responder"])
    snapshot = GaugeMetricFamily("healthdns_responder_snapshot_age_seconds", "seconds since "
                                 "the generation a responder serves was published",
                                 labels=["responder"])
    for r in readout.responders:
        generation.add_metric([str(r.slot)], r.generation)
        if r.stats_age is not None:
            age.add_metric([str(r.slot)], r.stats_age)
        if r.snapshot_age is not None:
            snapshot.add_metric([str(r.slot)], r.snapshot_age)
    yield from (generation, age, snapshot)
    if readout.publish_seconds is not None:
        yield GaugeMetricFamily("healthdns_publish_seconds", "from a health change to the "
                                "signed generation that follows it", value=readout.publish_seconds)
    if readout.sign_seconds is not None:
        yield GaugeMetricFamily("healthdns_sign_seconds", "the signer's time to render and "
                                "sign the latest generation", value=readout.sign_seconds)
    yield from _rolls(readout)
    restarts = CounterMetricFamily("healthdns_child_restarts", "children restarted",
                                   labels=["role"])
    for role, n in _by_role(readout.restarts):
        restarts.add_metric([role], n)
    yield restarts
    rejected = CounterMetricFamily("healthdns_protocol_rejections", "children killed for "
                                   "breaking the pipe protocol", labels=["role"])
    for role, n in _by_role(readout.rejected):
        rejected.add_metric([role], n)
    yield rejected
    yield InfoMetricFamily("healthdns_build", "version of healthdns",
                           value={"version": version(), "python": platform.python_version()})


# Every child role, so that a role's counters exist at 0 before anything happens to it: a
# dashboard then shows 0, and `increase()` sees the first restart (a series that appears with
# its first count at 1 has no earlier sample to increase from).
CHILD_ROLES = tuple(ROLES)


def _rolls(readout: Readout) -> Iterator[Metric]:
    """Key rolls under a DNSSEC policy: seconds until the next step (none while it waits for
    something other than time), and whether it waits for the parent's name servers; no
    sample without such zones."""
    until = GaugeMetricFamily("healthdns_dnssec_roll_next_step_seconds", "seconds until a "
                              "zone's key roll takes its next step", labels=["zone"])
    parent = GaugeMetricFamily("healthdns_dnssec_roll_waiting_for_parent", "1 while a key "
                               "roll waits for every parent name server to serve its new DS",
                               labels=["zone"])
    now = time.time()
    for zone, when, waiting in readout.rolls:
        if when:
            until.add_metric([zone], max(0.0, when - now))
        parent.add_metric([zone], 1.0 if waiting else 0.0)
    yield from (until, parent)


def _by_role(counts: dict[str, int]) -> list[tuple[str, int]]:
    return sorted({**dict.fromkeys(CHILD_ROLES, 0), **counts}.items())


def _lifecycle(readout: Readout) -> Iterator[Metric]:
    reloads = CounterMetricFamily("healthdns_reloads", "configuration reloads applied")
    reloads.add_metric([], readout.reloads.get("ok", 0))
    failures = CounterMetricFamily("healthdns_reload_failures", "configuration reloads refused "
                                   "(the previous configuration stayed in service)")
    failures.add_metric([], readout.reloads.get("failed", 0))
    hung = CounterMetricFamily("healthdns_child_hung", "children killed and respawned for "
                               "sending nothing for server.hung_after", labels=["role"])
    for role, n in _by_role(readout.hung):
        hung.add_metric([role], n)
    waiting = GaugeMetricFamily("healthdns_health_unpublished_seconds", "how long the oldest "
                                "change of health has waited to reach the answers (0: none "
                                "waits)", value=readout.health_waiting)
    yield from (reloads, failures, hung, waiting)


def _transfers(readout: Readout) -> Iterator[Metric]:
    """The transfer process's counters (0 without `[transfer]`)."""
    served = CounterMetricFamily("healthdns_transfers", "transfer requests by outcome: axfr, "
                                 "ixfr (from the journal), fallback (IXFR answered with the "
                                 "whole zone), refused", labels=["kind"])
    for kind in ("axfr", "ixfr", "fallback", "refused"):
        served.add_metric([kind], readout.transfers.get(kind, 0))
    notifies = CounterMetricFamily("healthdns_notifies", "NOTIFY messages to the secondaries: "
                                   "sent (resends included), answered, failed (given up)",
                                   labels=["result"])
    for result in ("sent", "answered", "failed"):
        notifies.add_metric([result], readout.transfers.get(f"notify_{result}", 0))
    yield from (served, notifies)


def _sites(readout: Readout) -> Iterator[Metric]:
    """Geo pools: answers by the site whose addresses they carry (never by client), and each
    site's addresses up, in all, and whether it qualifies, per name and address type."""
    answers = CounterMetricFamily("healthdns_site_answers", "answers of geo names, by the site "
                                  "whose addresses they carry (\"\": none, NODATA or backup)",
                                  labels=["zone", "site"])
    for (zone, site), n in sorted(readout.site_answers.items()):
        answers.add_metric([zone, site], n)
    labels = ["name", "site", "type"]
    up = GaugeMetricFamily("healthdns_site_addresses_up", "addresses of a geo pool's site "
                           "that are up (after overrides)", labels=labels)
    total = GaugeMetricFamily("healthdns_site_addresses", "addresses of a geo pool's site",
                              labels=labels)
    qualifies = GaugeMetricFamily("healthdns_site_qualifies", "1 while a geo pool's site "
                                  "qualifies (a group of it has min_healthy up): it serves the "
                                  "clients it comes first for", labels=labels)
    for state in readout.routing.sites:
        key = [state.name, state.site, _QTYPE_LABEL.get(state.rdtype, str(state.rdtype))]
        up.add_metric(key, state.up)
        total.add_metric(key, state.total)
        qualifies.add_metric(key, float(state.qualifies))
    yield from (answers, up, total, qualifies)


def _maps(readout: Readout) -> Iterator[Metric]:
    """Each location map as the signer holds it: networks read, when compiled, and whether the
    latest load of its database failed (the map compiled before stays in service)."""
    networks = GaugeMetricFamily("healthdns_map_networks", "networks read from the database of "
                                 "the map in service", labels=["map"])
    loaded = GaugeMetricFamily("healthdns_map_loaded_timestamp_seconds", "when the map in "
                               "service was compiled (Unix time)", labels=["map"])
    failed = GaugeMetricFamily("healthdns_map_load_failed", "1 while the latest load of the "
                               "map's database failed: the map compiled before serves",
                               labels=["map"])
    for state in readout.routing.maps:
        networks.add_metric([state.name], state.networks)
        loaded.add_metric([state.name], state.compiled)
        failed.add_metric([state.name], float(bool(state.error)))
    yield from (networks, loaded, failed)


def _peers(readout: Readout) -> Iterator[Metric]:
    """The peers process's view of each peer (no peer rows, and 0, without `[peers]`)."""
    fresh = GaugeMetricFamily("healthdns_peer_fresh", "1 while the peer's latest report is "
                              "within peers.stale_after", labels=["peer"])
    age = GaugeMetricFamily("healthdns_peer_report_age_seconds", "seconds since the peer's "
                            "latest accepted report (-1: none yet)", labels=["peer"])
    fenced = GaugeMetricFamily("healthdns_peer_fenced", "1 while the peer's latest report says "
                               "its prober is fenced (its view does not vote)", labels=["peer"])
    received = CounterMetricFamily("healthdns_peer_reports", "reports accepted from the peer",
                                   labels=["peer"])
    rejected = CounterMetricFamily("healthdns_peer_reports_rejected", "reports refused, by "
                                   "reason: signature, replay, malformed, oversized, rate; "
                                   "unknown counts reports naming checks this instance does "
                                   "not have (the others are taken)", labels=["peer", "reason"])
    sent = CounterMetricFamily("healthdns_peer_sends", "reports sent to the peer, by result",
                               labels=["peer", "result"])
    for row in readout.peers:
        fresh.add_metric([row.name], int(row.fresh))
        age.add_metric([row.name], row.age)
        fenced.add_metric([row.name], int(row.fenced))
        received.add_metric([row.name], row.received)
        for reason, n in row.rejected.items():
            rejected.add_metric([row.name, reason], n)
        sent.add_metric([row.name, "ok"], row.sent - row.failed)
        sent.add_metric([row.name, "failed"], row.failed)
    short = GaugeMetricFamily("healthdns_peers_too_few_vantages", "1 while too few vantages "
                              "are fresh for a verdict (peers.min_vantages): the last verdict "
                              "is kept, or the own checks followed (peers.cut_off)",
                              value=int(readout.peers_short))
    unknown = CounterMetricFamily("healthdns_peer_reports_unknown_sender", "reports that named "
                                  "no configured peer", value=readout.peers_unknown)
    refused = CounterMetricFamily("healthdns_peer_connections_refused", "connections the "
                                  "peers listener closed at accept, over its caps (in all, "
                                  "or per client address)", value=readout.peers_refused)
    yield from (fresh, fenced, age, received, rejected, sent, short, unknown, refused)
