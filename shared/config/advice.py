"""Settings that work but are most likely a mistake: warned about, never refused."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from healthdns.shared import lazy
from healthdns.shared.config.control import ControlSpec
from healthdns.shared.config.dnssec import DnssecSpec
from healthdns.shared.config.document import Config
from healthdns.shared.config.prober import FILES_KEPT, file_room, in_flight
from healthdns.shared.config.values import shown_key
from healthdns.shared.config.zones import SoaSpec, ZoneSpec, in_zone

if TYPE_CHECKING:
    import dns.name
else:  # only validation needs it, and a responder only decodes (see shared/lazy.py)
    lazy.module("dns.name")
    dns = lazy.module("dns")


def warnings(config: Config) -> list[tuple[str, str]]:
    """(path, message) of each setting that works but is most likely a mistake."""
    out: list[tuple[str, str]] = _parallel_warnings(config)
    for i, zone in enumerate(config.zones):
        out += _soa_warnings(zone.soa, f"zones[{i}].soa")
        if zone.dnssec is not None and config.transfer.enabled():
            out += _expire_warnings(zone.soa, zone.dnssec, f"zones[{i}]")
        out += _cname_loops(zone, f"zones[{i}].records")
    return out + _control_warnings(config.control)


def _parallel_warnings(config: Config) -> list[tuple[str, str]]:
    # A check that waits for a slot starts late, and so does every result after it: failover
    # takes longer than interval x fall + timeout, just when many backends stop answering.
    checks = config.checks()
    needed, parallel = in_flight(checks), config.prober.parallel
    if parallel >= needed:
        return []
    why = (f"{parallel} checks in flight cannot keep every check on schedule: when the "
           f"targets stop answering, {needed} checks are in flight at once (each of the "
           f"{len(checks)} targets holds a socket for its timeout once per interval), and "
           "the rest wait, so failover comes late")
    room = file_room()
    if room < needed:
        fix = (f"the open files limit holds only {room}: raise it (LimitNOFILE= in systemd, "
               f"ulimit -Hn) to at least {needed + FILES_KEPT}")
    else:
        fix = f"raise it to at least {needed}, or leave it out to size it from the targets"
    return [("prober.parallel", f"{why}; {fix}")]


def _expire_warnings(soa: SoaSpec, dnssec: DnssecSpec, path: str) -> list[tuple[str, str]]:
    # A signature is renewed once less than `dnssec.refresh` of its validity is left, so the
    # signatures a secondary last transferred may have only that much life left; cut off from
    # the primary it serves them until `expire`, past their expiry (docs/transfers.md, DNSSEC).
    if soa.expire <= dnssec.refresh:
        return []
    return [(f"{path}.soa.expire", (f"{soa.expire} is longer than dnssec.refresh "
             f"({dnssec.refresh} s), the least life the signatures a secondary last transferred "
             "may have left: a secondary cut off from this primary would serve expired "
             "signatures (validating resolvers answer SERVFAIL) instead of dropping the zone; "
             f"set expire to at most {dnssec.refresh}"))]


def _soa_warnings(soa: SoaSpec, path: str) -> list[tuple[str, str]]:
    # A secondary whose refresh fails retries every `retry` seconds and drops the zone at
    # `expire`: below refresh + retry it drops the zone before its first retry (RFC 1912 2.2,
    # Zonemaster ZONE05).
    if soa.expire > soa.refresh + soa.retry:
        return []
    return [(f"{path}.expire", (f"{soa.expire} is not more than refresh + retry "
             f"({soa.refresh} + {soa.retry} s): a secondary would drop the zone before it "
             "retries a failed refresh (RFC 1912 section 2.2 suggests 2-4 weeks)"))]


def _cname_loops(zone: ZoneSpec, path: str) -> list[tuple[str, str]]:
    """One warning per CNAME loop among the zone's own names (longer than one name: a name
    that points to itself is an error)."""
    apexes = tuple(dns.name.from_text(n) for n in (zone.origin, *zone.aliases))
    step = {owner: target for owner, record in zone.records.items()
            if record.cname is not None
            and (target := in_zone(record.cname, apexes)) in zone.records}
    out: list[tuple[str, str]] = []
    done: set[str] = set()
    for start in sorted(step):
        chain: list[str] = []
        node: str | None = start
        while node is not None and node not in done and node not in chain:
            chain.append(node)
            node = step.get(node)
        done.update(chain)
        if node is not None and node in chain:  # this walk closed a loop
            loop = chain[chain.index(node):]
            out.append((f"{path}.{shown_key(loop[0])}.cname",
                        (f"{zone.records[loop[0]].cname!r} is part of a CNAME loop "
                        f"({' -> '.join([*loop, loop[0]])}): resolvers fail on these names")))
    return out


def _control_warnings(control: ControlSpec) -> list[tuple[str, str]]:
    # Off loopback, whoever reaches the port reads every backend, check and override, and
    # without TLS a token crosses the network in clear.
    endpoint = control.endpoint()
    if endpoint is None or ipaddress.ip_address(endpoint[0]).is_loopback:
        return []
    if control.cert_pem is not None or control.read_token is not None:
        return []
    return [("control.listen", (f"{control.listen} is not a loopback address, and the "
             "endpoint has neither TLS (cert and key) nor a read_token: whoever reaches it "
             "reads every backend, check and override, and a write token crosses the network "
             "in clear; set read_token_file, cert and key, or listen on 127.0.0.1"))]
