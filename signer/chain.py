"""Whether a zone's keys, as a roll's step would leave them, validate: from each DS RRset the
parent serves, through the DNSKEY RRset, down to a sample of the zone's signed answers.

The sample (the DNSKEY, CDS and CDNSKEY RRsets, and the apex NS RRset) is signed by
`ZoneSigner` with the keys of the step, as the zone's answers are, and checked by dnspython's
validator, a second implementation of RFC 4034/4035: a step whose keys it does not accept is
not taken. For each DS RRset (one per parent name server, as fetched): some DS must be of a
key that signs the DNSKEY RRset (RFC 4035 5.2); an empty DS RRset is an insecure delegation,
which no step can make bogus. Every RRset must carry a signature of each algorithm of the
DNSKEY RRset (RFC 4035 2.2), which is what an algorithm roll must not break.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Mapping, Sequence

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.DS
import dns.rrset

from healthdns.shared.config import DnssecSpec
from healthdns.shared.keystate import KeyEntry
from healthdns.signer import keyrecords, parent
from healthdns.signer.dnssec import DNSKEY, RRSIG, ZoneSigner
from healthdns.signer.keys import Key
from healthdns.signer.zone import wire

Sample = tuple[int, int, tuple[bytes, ...]]  # rdtype, TTL, rdata (wire, canonical) at the apex
Signed = tuple[dns.rrset.RRset, dns.rrset.RRset]  # an RRset and its RRSIGs


def why_not(origin: dns.name.Name, keys: list[Key], cds: list[KeyEntry], spec: DnssecSpec,
            answer: parent.Answer, touches_parent: bool, sample: Sequence[Sample],
            now: float) -> str | None:
    """Why the keys a step would leave (`keys`, asking for the DS of `cds`) would make the
    zone bogus, from the parent's `answer` down (None: they would not). A step that changes
    which keys sign the DNSKEY RRset or which DS the zone asks for needs every parent name
    server's answer; any other is checked against those that answered."""
    if answer.silent and touches_parent:
        return f"the parent's DS RRset cannot be checked: {'; '.join(answer.silent)}"
    sources = {f"the DS RRset served by {where}": dses for where, dses in answer.sets.items()}
    wanted = {k.tag for k in cds}
    return check(origin, keys, [k for k in keys if k.tag in wanted], spec, sources, sample,
                 now)


def check(origin: dns.name.Name, keys: list[Key], cds_keys: list[Key], spec: DnssecSpec,
          sources: Mapping[str, Sequence[dns.rdtypes.ANY.DS.DS]], sample: Sequence[Sample],
          now: float) -> str | None:
    """None when `keys` (with the CDS of `cds_keys`) validate from every DS RRset of
    `sources` (by where it was served) down to the sample; else why not, in words."""
    dnssec = _validator()
    signer = ZoneSigner(origin, keys, spec, lambda: now, cds_keys=cds_keys)
    signed = {DNSKEY: _signed(signer, origin, DNSKEY, spec.dnskey_ttl, signer.dnskeys())}
    for rdtype, (ttl, rdatas) in signer.cds_records().items():
        signed[rdtype] = _signed(signer, origin, rdtype, ttl, rdatas)
    for rdtype, ttl, rdatas in sample:
        signed[rdtype] = _signed(signer, origin, rdtype, ttl, rdatas)
    unsigned = [dns.rdatatype.to_text(dns.rdatatype.RdataType(t))
                for t, (_, sigs) in signed.items() if not sigs]
    if unsigned:
        return f"no key would sign the {', '.join(unsigned)} RRset"
    dnskeys = signed[DNSKEY][0]
    for where, dses in sources.items():
        why = _from_ds(origin, list(dses), signed[DNSKEY], now)
        if why is not None:
            return f"{where} {why}"
    for rdtype, (rrset, sigs) in signed.items():
        name = dns.rdatatype.to_text(dns.rdatatype.RdataType(rdtype))
        try:
            dnssec.validate(rrset, sigs, {origin: dnskeys}, now=now)
        except dns.exception.ValidationFailure as e:
            return f"the {name} RRset would not validate with the DNSKEY RRset: {e}"
        lacking = {k.algorithm for k in dnskeys} - {s.algorithm for s in sigs}
        if lacking:
            return (f"the {name} RRset would have no signature of algorithm "
                    f"{', '.join(sorted(dnssec.algorithm_to_text(a) for a in lacking))}, "
                    "which the DNSKEY RRset holds (RFC 4035 2.2)")
    return None


def _from_ds(origin: dns.name.Name, dses: list[dns.rdtypes.ANY.DS.DS], dnskey: Signed,
             now: float) -> str | None:
    """Why the DNSKEY RRset would not validate from the DS RRset `dses` (None: it would)."""
    if not dses:
        return None  # an insecure delegation: nothing to go bogus
    rrset, sigs = dnskey
    served = " ".join(str(ds.key_tag) for ds in dses)
    anchored = [k for k in rrset if any(keyrecords.matches(ds, origin, k) for ds in dses)]
    if not anchored:
        tags = " ".join(str(keyrecords.key_tag(k)) for k in rrset)
        return (f"(DS {served}) is of no key of the DNSKEY RRset after this step "
                f"(keys {tags})")
    trusted = dns.rrset.from_rdata_list(origin, rrset.ttl, anchored)
    try:
        _validator().validate(rrset, sigs, {origin: trusted}, now=now)
    except dns.exception.ValidationFailure:
        signers = " ".join(str(s.key_tag) for s in sigs)
        return (f"(DS {served}) is of no key that would sign the DNSKEY RRset after this "
                f"step (signed by {signers or 'no key'})")
    return None


def _validator() -> types.ModuleType:
    """dnspython's validator, imported at the first check rather than when the signer starts:
    it imports every algorithm dnspython knows, DSA among them, which cryptography deprecates
    with a warning at import (healthdns never meets a DSA key), and costs memory a signer
    without a policy does not need."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "DSA is deprecated")
        import dns.dnssec
    return dns.dnssec


def _signed(signer: ZoneSigner, origin: dns.name.Name, rdtype: int, ttl: int,
            rdatas: tuple[bytes, ...]) -> Signed:
    sigs = signer.rrsigs(wire(origin), rdtype, ttl, rdatas)
    empty = dns.rrset.RRset(origin, dns.rdataclass.IN, dns.rdatatype.RRSIG)
    return _rrset(origin, rdtype, ttl, rdatas), _rrset(origin, RRSIG, ttl, sigs) if sigs \
        else empty


def _rrset(origin: dns.name.Name, rdtype: int, ttl: int,
           rdatas: tuple[bytes, ...]) -> dns.rrset.RRset:
    records = [dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.RdataType(rdtype), r, 0,
                                  len(r)) for r in rdatas]
    return dns.rrset.from_rdata_list(origin, ttl, records)


def ns_sample(nameservers: Sequence[str], ttl: int) -> Sample:
    """The apex NS RRset of a zone, as a sample to check: signed by its zone keys."""
    targets = sorted({wire(dns.name.from_text(ns)) for ns in nameservers})
    return (dns.rdatatype.NS, ttl, tuple(targets))
