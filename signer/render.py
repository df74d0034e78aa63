"""Pre-rendering: every answer a responder can give, as wire bytes, per zone and health state.

Each body is rendered for its question name sitting at offset 12 of the response, which the
responder copies from the query unchanged (same length whatever the case), and after the SOA
records the responder puts before it in a negative answer: names are compressed against the
question and the records before them, as Knot compresses them (`shared.compression`). What a
zone's names share is rendered once for the apex as the question, and moved by the responder:
the SOA of negative answers, and the NSEC (NSEC3) records that prove an NXDOMAIN.

In a signed zone each answer also has a `signed` variant for DO=1 queries: every RRset with its
RRSIG records, and negative answers with the NSEC records that prove them (RFC 4035 3.1).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from healthdns.shared import canonical, compression
from healthdns.shared.compression import Writer
from healthdns.shared.tables import Answer, GeoAnswers, ZoneTable
from healthdns.signer.dnssec import NSEC, ZoneSigner
from healthdns.signer.filled import FilledZone, RRs, fill_zones, label_offsets
from healthdns.signer.rendercache import Content, RenderCache, Rendered
from healthdns.signer.zone import CNAME, SOA, RRsets, Zone

ANY = 255
QR_AA = 0x8400
NOERROR, NXDOMAIN = 0, 3
# The header flags of each rcode, made once: `QR_AA | rcode` is a new int object per answer
# (only ints up to 256 are shared), 32 bytes each of 60,000 answers at 10,000 signed names.
FLAGS = {rcode: QR_AA | rcode for rcode in (NOERROR, NXDOMAIN)}
MAX_CHAIN = 8  # CNAME hops followed before giving up (RFC 1034 4.3.2 loop protection)


def tables(zones: list[Zone], health: Mapping[str, bool], serials: list[int],
           signers: list[ZoneSigner | None] | None = None,
           caches: list[RenderCache] | None = None) -> list[ZoneTable]:
    """The tables of all zones; zones see each other so CNAME chains cross zone boundaries."""
    return tables_of(fill_zones(zones, health, serials, signers, caches))


def tables_of(filled_zones: list[FilledZone]) -> list[ZoneTable]:
    return [_table(filled, filled_zones) for filled in filled_zones]


def _table(filled: FilledZone, filled_zones: list[FilledZone]) -> ZoneTable:
    answers: dict[bytes, Answer] = {}
    defaults: dict[bytes, Answer] = {}
    variants: dict[bytes, list[Answer]] = {}
    cached = filled.cache.names
    template = filled.soa_template
    shape = (len(template.plain), len(template.signed), tuple(template.names.items()))
    if filled.cache.soa_shape != shape:  # the bodies after it would point amiss
        cached.clear()
        filled.cache.soa_shape = shape
    for name, rrsets in filled.names.items():
        rrsets = _with_soa(filled, name, rrsets)
        owner = filled.zone.owners.get(name)
        if owner is not None and owner.cname is not None:
            _render_cname_owner(filled, filled_zones, name, rrsets, answers, defaults, variants)
            continue
        content = _content(filled, name, rrsets)
        hit = cached.get(name)
        if hit is not None and hit.made_from(content):
            if filled.signer is not None:
                filled.signer.keep(name)
                if filled.nsec3:
                    filled.signer.keep(filled.hashed[name])
            answers.update(hit.pairs())
            if hit.variants is not None:
                variants.update(hit.variants)
            defaults[name] = hit.default
            continue
        own: dict[bytes, Answer] = {}
        own_variants: dict[bytes, list[Answer]] = {}
        _render_name(filled, name, rrsets, own, defaults, own_variants)
        answers.update(own)
        variants.update(own_variants)
        if name != filled.apex:  # the apex holds the SOA: always rendered
            flat = tuple(x for pair in own.items() for x in pair)
            cached[name] = Rendered(*content, defaults[name], own_variants or None, flat)
    nx = _answer(filled, filled.apex, NXDOMAIN, [], [], soa=True)
    return ZoneTable(origin=filled.apex, answers=answers, names=defaults, nxdomain=nx,
                     serial=filled.serial, variants=variants,
                     chain=filled.keys if filled.nsec3 else filled.chain,
                     proofs=[_proof(filled, o) for o in filled.chain],
                     soa=template.plain, soa_signed=template.signed, nsec3=filled.nsec3,
                     geo=_geo_answers(filled, answers, defaults, variants))


def _geo_answers(filled: FilledZone, answers: dict[bytes, Answer],
                 defaults: dict[bytes, Answer], variants: dict[bytes, list[Answer]]
                 ) -> dict[bytes, GeoAnswers]:
    """Each geo name's answers per outcome (`signer.geo`), rendered (and signed) once per
    outcome, not per client. An outcome with no address is the name's NODATA, proved in a
    signed zone by the name's NSEC (NSEC3) record with the type left out of its bitmap
    (`_geo_nodata`); the zone's `answers` holds every geo key (the default order's answer,
    NODATA too), so that a responder finds the key where it looks first; its rotation is
    its outcome's, never the zone's `variants`."""
    out: dict[bytes, GeoAnswers] = {}
    for name, families in filled.geo.items():
        ttl = filled.zone.owners[name].ttl
        for rdtype, made in families.items():
            nodata = _geo_nodata(filled, name, rdtype, defaults[name]) \
                if not all(made.variants) else defaults[name]
            rendered = [[_answer(filled, name, NOERROR, [filled.rrs(name, rdtype, ttl, s)])
                         for s in sets] if sets else [nodata]
                        for sets in made.variants]
            key = _key(name, rdtype)
            answers.setdefault(key, defaults[name])
            variants.pop(key, None)
            out[key] = GeoAnswers(made.map, rendered, made.sites, made.by_order)
    return out


def _geo_nodata(filled: FilledZone, name: bytes, rdtype: int, default: Answer) -> Answer:
    """A geo name's NODATA of `rdtype`: the name's NODATA (`default`) when the zone's record
    already lacks the type, else one whose NSEC (NSEC3) bitmap lacks it. The NXDOMAIN proofs
    keep the zone's records: a covering record's bitmap proves nothing about another name."""
    if filled.signer is None or rdtype not in filled.names[name]:
        return default
    return _answer(filled, name, NOERROR, [], [], [filled.nsec_lacking(name, rdtype)],
                   soa=True)


def _content(filled: FilledZone, name: bytes, rrsets: RRsets) -> Content:
    """Everything a name's answers are made of, but the SOA (spliced in by responders)."""
    rotating = filled.rotating.get(name)
    proof = filled.nsecs.get(name)
    if proof is None and filled.signer is not None:  # an empty non-terminal: the NSEC before
        before = filled.chain[canonical.covering(filled.keys, name)]
        proof = before + filled.nsecs[before]
    owner = filled.zone.owners.get(name)
    items: object
    if owner is not None and owner.plan is None and name != filled.apex:
        items = owner.static  # what `fill` served it, kept: no copy per name and generation
    else:  # with the TTL its addresses are served with
        items = (tuple(rrsets.items()), filled.served.get(name))
    return (items, tuple(rotating.items()) if rotating else None, proof)


def _proof(filled: FilledZone, owner: bytes) -> bytes:
    """An owner's NSEC (NSEC3) and RRSIG records as a template, for NXDOMAIN proofs: its
    owner written as its labels below the apex, then a pointer to the apex."""
    rdata = filled.nsecs[owner]
    hit = filled.cache.proofs.get(owner)
    record_owner = filled.hashed[owner] if filled.nsec3 else owner
    written = len(record_owner) - len(filled.apex) + 2
    if hit is None or not proves(hit, written, rdata):
        hit = filled.cache.proofs[owner] = filled.template(filled.nsec(owner))
    return hit


RDLENGTH = struct.Struct(">H")


def proves(proof: bytes, owner_length: int, rdata: bytes) -> bool:
    """Whether `proof` is the NSEC (NSEC3) record with `rdata`, then its signatures: the
    rdata follows the owner (`owner_length` octets as written), type, class, TTL and length.
    Read in place, so the cache keeps no tuple of the rdata and the proof per name (10,000
    names: 0.5 MiB)."""
    start = owner_length + 10
    # The length too: a bitmap that lost its last window would be a prefix of the old one.
    return len(proof) >= start + len(rdata) \
        and RDLENGTH.unpack_from(proof, start - 2)[0] == len(rdata) \
        and proof.startswith(rdata, start)


def _render_name(filled: FilledZone, name: bytes, rrsets: RRsets,
                 answers: dict[bytes, Answer], defaults: dict[bytes, Answer],
                 variants: dict[bytes, list[Answer]]) -> None:
    """Every answer of a name that is not a CNAME."""
    for rdtype, (ttl, rdatas) in rrsets.items():
        answers[_key(name, rdtype)] = _answer(filled, name, NOERROR, [
            filled.rrs(name, rdtype, ttl, rdatas)])
    for rdtype, sets in filled.rotating.get(name, {}).items():
        # Variant 0 is what `answers` holds: a responder that ignores `variants` still
        # answers correctly, only without rotating.
        ttl = rrsets[rdtype][0]
        variants[_key(name, rdtype)] = [_answer(filled, name, NOERROR, [
            filled.rrs(name, rdtype, ttl, s)]) for s in sets]
        answers[_key(name, rdtype)] = variants[_key(name, rdtype)][0]
    if rrsets:
        # RFC 8482: ANY gets one RRset, the one with the lowest type number.
        first = min(rrsets)
        answers[_key(name, ANY)] = answers[_key(name, first)]
    if name in filled.nsecs:
        if not filled.nsec3:
            answers[_key(name, NSEC)] = _answer(filled, name, NOERROR, [filled.nsec(name)])
        proof = [filled.nsec(name)]
    else:  # an empty non-terminal: the NSEC before it covers it (RFC 4035 3.1.3.2)
        proof = filled.denial(name)[:1]
    defaults[name] = _answer(filled, name, NOERROR, [], [], proof, soa=True)


def _key(name: bytes, rdtype: int) -> bytes:
    return name + struct.pack(">H", rdtype)


def _with_soa(filled: FilledZone, name: bytes, rrsets: RRsets) -> RRsets:
    if name != filled.apex:
        return rrsets
    return {**rrsets, SOA: (filled.zone.spec.soa.ttl, (filled.soa_rdata(),))}


def _answer(filled: FilledZone, qname: bytes, rcode: int, answer: list[RRs],
            authority: list[RRs] | None = None, proofs: list[RRs] | None = None,
            soa: bool = False) -> Answer:
    """The answer to `qname`, with its signed variant in a signed zone.

    With `soa`, the responder puts the zone's SOA records first in the authority section:
    the counts include them, the body does not, so the answer outlives serial changes.
    """
    authority = authority or []
    plain_an = sum(len(s.rdatas) for s in answer)
    plain_ns = sum(len(s.rdatas) for s in authority) + (1 if soa else 0)
    body = _body(filled, qname, answer + authority, soa, False)
    signed = None
    if filled.signer is not None:
        sections = (answer, authority + (proofs or []))
        an, ns = (sum(len(s.rdatas) + len(s.sigs) for s in sec) for sec in sections)
        soa_count = 1 + len(filled.signer.zone_keys()) if soa else 0
        signed = Answer(FLAGS[rcode], an, ns + soa_count, 0,
                        _body(filled, qname, [*sections[0], *sections[1]], soa, True), soa=soa)
    return Answer(FLAGS[rcode], plain_an, plain_ns, 0, body, signed, soa=soa)


def _body(filled: FilledZone, qname: bytes, rrsets: list[RRs], soa: bool,
          signed: bool) -> bytes:
    """The records of an answer to `qname`, written after the question and, with `soa`, after
    the SOA records the responder puts first."""
    start, names = compression.after_question(qname), None
    if soa:
        template = filled.soa_template
        names = {name: start + at for name, at in template.names.items()}
        start += len(template.signed if signed else template.plain)
    writer = Writer(qname, start, names)
    for rrs in rrsets:
        rrs.write(writer, signed)
    return filled.body(writer.written())


def _render_cname_owner(filled: FilledZone, filled_zones: list[FilledZone], name: bytes,
                        rrsets: RRsets, answers: dict[bytes, Answer],
                        defaults: dict[bytes, Answer],
                        variants: dict[bytes, list[Answer]]) -> None:
    """A CNAME owner answers every type with the chain followed inside our zones."""
    ttl, rdatas = rrsets[CNAME]
    first = filled.rrs(name, CNAME, ttl, rdatas)
    answers[_key(name, CNAME)] = _answer(filled, name, NOERROR, [first])
    if name in filled.nsecs and not filled.nsec3:
        answers[_key(name, NSEC)] = _answer(filled, name, NOERROR, [filled.nsec(name)])
    chain = [first]
    target = filled.zone.owners[name].cname
    seen = {name}
    while target is not None and target not in seen and len(chain) < MAX_CHAIN:
        seen.add(target)
        where = _find(filled_zones, target)
        if where is None:  # outside our zones: the resolver follows it
            break
        target_zone, trrsets = where
        if trrsets is None:  # the target does not exist
            defaults[name] = _answer(filled, name, NXDOMAIN, chain, [target_zone.soa()],
                                     target_zone.denial(target))
            return
        trrsets = _with_soa(target_zone, target, trrsets)
        owner = target_zone.zone.owners.get(target)
        if owner is not None and owner.cname is not None:
            cttl, crdatas = trrsets[CNAME]
            chain.append(target_zone.rrs(target, CNAME, cttl, crdatas))
            target = owner.cname
            continue
        for rdtype, (rttl, rdatas) in trrsets.items():
            # A chain that ends at a rotating pool rotates with it.
            sets = target_zone.rotating.get(target, {}).get(rdtype, [rdatas])
            ends = [_answer(filled, name, NOERROR,
                            chain + [target_zone.rrs(target, rdtype, rttl, s)]) for s in sets]
            answers[_key(name, rdtype)] = ends[0]
            if len(ends) > 1:
                variants[_key(name, rdtype)] = ends
        proof = [target_zone.nsec(target)] if target in target_zone.nsecs \
            else target_zone.denial(target)[:1]
        defaults[name] = _answer(filled, name, NOERROR, chain, [target_zone.soa()], proof)
        return
    defaults[name] = _answer(filled, name, NOERROR, chain)


def _find(filled_zones: list[FilledZone], name: bytes
          ) -> tuple[FilledZone, RRsets | None] | None:
    """The zone holding `name` (most specific first) and its data, None if it does not exist."""
    for i in label_offsets(name):
        for filled in filled_zones:
            if filled.apex == name[i:]:
                return filled, filled.names.get(name)
    return None


