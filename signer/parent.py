"""Asking the parent's name servers which of a zone's DS records they serve.

A KSK or CSK roll goes past "submitted" only when every name server of the parent serves the
new DS (a resolver may ask any of them), and counts the old DS gone only when none serves it.
The servers are the policy's `parent_nameservers`, or else those of the parent zone, found by
DNS through the system's resolver. Each is asked directly, over UDP (TCP when truncated),
without recursion.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rdtypes.ANY.DS
import dns.resolver

from healthdns.shared.config import PolicySpec, parse_endpoint
from healthdns.signer import keyrecords
from healthdns.signer.keys import Key

log = logging.getLogger("healthdns.signer.parent")
TIMEOUT = 2.0  # per server and query


@dataclass(frozen=True)
class Answer:
    """What the parent serves: by key tag, True when every server serves its DS, False when
    none does (a tag missing: some do, or no server answered); what keeps a DS from counting
    as served, in words, per tag; the DS RRset each server that answered serves (by "ADDR"
    or "ADDR:PORT"); which servers could not be asked, and each DS served that is of no key
    of the zone, in words."""

    served: dict[int, bool]
    missing: dict[int, str]
    sets: dict[str, list[dns.rdtypes.ANY.DS.DS]] = field(default_factory=dict)
    silent: list[str] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)


Fetch = Callable[[dns.name.Name, PolicySpec, list[Key], list[int]], Answer]


def fetch(zone: dns.name.Name, policy: PolicySpec, sep_keys: list[Key],
          gone: list[int]) -> Answer:
    """`ask` the parent's name servers of `policy` (or found by DNS)."""
    try:
        addresses = servers(zone, policy)
    except Exception as e:  # noqa: BLE001  # any failure to find them: wait and say so
        log.warning("%s: the parent's name servers cannot be found: %s", zone, e)
        return Answer({}, {}, silent=[f"the parent's name servers cannot be found ({e})"])
    return ask(zone, sep_keys, gone, addresses)


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
    """Which DS each of `addresses` serves for `zone` (see `judged`)."""
    sets: dict[str, list[dns.rdtypes.ANY.DS.DS] | None] = {}
    for host, port in addresses:
        where = f"{host}:{port}" if port != 53 else host
        try:
            sets[where] = _ds_set(zone, host, port)
        except (dns.exception.DNSException, OSError) as e:
            log.warning("parent name server %s did not answer for the DS of %s: %s", where,
                        zone, e)
            sets[where] = None
    return judged(zone, sep_keys, gone, sets)


def judged(zone: dns.name.Name, sep_keys: Iterable[Key], gone: Iterable[int],
           sets: Mapping[str, list[dns.rdtypes.ANY.DS.DS] | None]) -> Answer:
    """What the DS RRset of each parent name server (None: it did not answer) says of
    `sep_keys` (a DS of any digest type of `keyrecords.DIGESTS` counts) and of the keys of
    `gone` (removed keys, whose files are deleted: the tag is what is left)."""
    wanted: dict[int, Key | None] = {k.tag: k for k in sep_keys}
    wanted.update({tag: None for tag in gone if tag not in wanted})
    count = dict.fromkeys(wanted, 0)
    missing: dict[int, list[str]] = {tag: [] for tag in wanted}
    answer = Answer({}, {})
    for where, found in sets.items():
        if found is None:
            for tag in wanted:
                missing[tag].append(f"{where} did not answer")
            answer.silent.append(f"{where} did not answer")
            continue
        answer.sets[where] = found
        for tag, key in wanted.items():
            if any(_of(ds, zone, tag, key) for ds in found):
                count[tag] += 1
            else:
                missing[tag].append(f"not yet served by {where}")
        answer.stray.extend(
            f"{where} serves DS {ds.key_tag} (algorithm {ds.algorithm}, digest type "
            f"{ds.digest_type}), which is of no key of this zone"
            for ds in found if not any(_of(ds, zone, tag, key) for tag, key in wanted.items()))
    for tag, n in count.items():
        if sets and n == len(sets):
            answer.served[tag] = True
        elif n == 0 and not answer.silent and sets:
            answer.served[tag] = False
    answer.missing.update({tag: ", ".join(m) for tag, m in missing.items() if m})
    return answer


def _of(ds: dns.rdtypes.ANY.DS.DS, zone: dns.name.Name, tag: int, key: Key | None) -> bool:
    """Whether `ds` is the DS of `key` (of a removed key, known by its `tag` alone)."""
    if key is None:
        return bool(ds.key_tag == tag)
    return keyrecords.matches(ds, zone, key.dnskey)


def _ds_set(zone: dns.name.Name, host: str, port: int) -> list[dns.rdtypes.ANY.DS.DS]:
    query = dns.message.make_query(zone, dns.rdatatype.DS)
    query.flags &= ~dns.flags.RD
    response, _ = dns.query.udp_with_fallback(query, host, TIMEOUT, port)
    if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise dns.exception.DNSException(  # type: ignore[no-untyped-call]  # dnspython's
            f"rcode {dns.rcode.to_text(response.rcode())}")
    return [ds for rrset in response.answer
            if rrset.rdtype == dns.rdatatype.DS and rrset.name == zone for ds in rrset]
