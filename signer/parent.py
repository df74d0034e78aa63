"""Asking the parent's name servers which of a zone's DS records they serve.

A KSK or CSK roll goes past "submitted" only when every name server of the parent serves the
new DS (a resolver may ask any of them), and counts the old DS gone only when none serves it.
The servers are the policy's `parent_nameservers`, or else those of the parent zone, found by
DNS through the system's resolver. Each is asked directly, over UDP (TCP when truncated),
without recursion.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdatatype
import dns.resolver

from healthdns.shared.config import PolicySpec, parse_endpoint
from healthdns.signer import keyrecords
from healthdns.signer.keys import Key

log = logging.getLogger("healthdns.signer.parent")
TIMEOUT = 2.0  # per server and query


@dataclass(frozen=True)
class Answer:
    """What the parent serves: by key tag, True when every server serves its DS, False when
    none does (a tag missing: some do, or no server answered); and what keeps a DS from
    counting as served, in words, per tag."""

    served: dict[int, bool]
    missing: dict[int, str]


def servers(zone: dns.name.Name, policy: PolicySpec) -> list[tuple[str, int]]:
    """The parent's name servers to ask: as listed, or found by DNS."""
    if policy.parent_nameservers:
        return [tuple(parse_endpoint(s, 53, "parent_nameservers"))  # type: ignore[misc]
                for s in policy.parent_nameservers]
    parent = dns.resolver.zone_for_name(zone.parent())
    found = []
    for ns in dns.resolver.resolve(parent, "NS"):
        for rdtype in ("A", "AAAA"):
            try:
                found += [(a.to_text(), 53) for a in dns.resolver.resolve(ns.target, rdtype)]
            except dns.exception.DNSException:
                continue
    return found


def ask(zone: dns.name.Name, sep_keys: Iterable[Key], gone: Iterable[int],
        addresses: list[tuple[str, int]]) -> Answer:
    """Which DS each of `addresses` serves for `zone`: those of `sep_keys`, and any with a
    key tag of `gone` (removed keys, whose files are deleted: the tag is what is left)."""
    wanted: dict[int, object] = {k.tag: keyrecords.ds(zone, k.dnskey) for k in sep_keys}
    wanted.update({tag: None for tag in gone if tag not in wanted})
    count = dict.fromkeys(wanted, 0)
    missing: dict[int, list[str]] = {tag: [] for tag in wanted}
    answered = 0
    for host, port in addresses:
        where = f"{host}:{port}" if port != 53 else host
        try:
            found = _ds_set(zone, host, port)
        except (dns.exception.DNSException, OSError) as e:
            log.warning("parent name server %s did not answer for the DS of %s: %s", where,
                        zone, e)
            for tag in wanted:
                missing[tag].append(f"{where} did not answer")
            continue
        answered += 1
        tags = {ds.key_tag for ds in found}  # type: ignore[attr-defined]
        for tag, ds in wanted.items():
            if ds in found or (ds is None and tag in tags):
                count[tag] += 1
            else:
                missing[tag].append(f"not yet served by {where}")
    served: dict[int, bool] = {}
    for tag, n in count.items():
        if addresses and n == len(addresses):
            served[tag] = True
        elif n == 0 and answered == len(addresses) and addresses:
            served[tag] = False
    return Answer(served, {tag: ", ".join(m) for tag, m in missing.items() if m})


def _ds_set(zone: dns.name.Name, host: str, port: int) -> set[object]:
    query = dns.message.make_query(zone, dns.rdatatype.DS)
    query.flags &= ~dns.flags.RD
    response, _ = dns.query.udp_with_fallback(query, host, TIMEOUT, port)
    found: set[object] = set()
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.DS and rrset.name == zone:
            found.update(rrset)
    return found
