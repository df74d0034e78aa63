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

import functools
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

from healthdns.shared import canonical, compression, nsec3
from healthdns.shared.compression import Writer
from healthdns.shared.messages import Answer, ZoneTable
from healthdns.shared.nsec3 import NSEC3, NSEC3PARAM
from healthdns.signer.dnssec import DNSKEY, NSEC, RRSIG, ZoneSigner
from healthdns.signer.pool import Variants
from healthdns.signer.zone import CNAME, NS, SOA, RRsets, Zone, fill

IN = 1
ANY = 255
QR_AA = 0x8400
NOERROR, NXDOMAIN = 0, 3
# The header flags of each rcode, made once: `QR_AA | rcode` is a new int object per answer
# (only ints up to 256 are shared), 32 bytes each of 60,000 answers at 10,000 signed names.
FLAGS = {rcode: QR_AA | rcode for rcode in (NOERROR, NXDOMAIN)}
MAX_CHAIN = 8  # CNAME hops followed before giving up (RFC 1034 4.3.2 loop protection)


@dataclass(frozen=True)
class RRs:
    """One RRset to write: its owner (lower-case wire), type, the TTL it is served with, its
    rdata, and its RRSIG rdata (none when unsigned)."""

    owner: bytes
    rdtype: int
    ttl: int
    rdatas: tuple[bytes, ...]
    sigs: tuple[bytes, ...] = ()

    def write(self, writer: Writer, signed: bool) -> None:
        """Its records, then with `signed` its RRSIGs."""
        for rdata in self.rdatas:
            writer.rr(self.owner, self.rdtype, self.ttl, rdata)
        if signed:
            for sig in self.sigs:
                writer.rr(self.owner, RRSIG, self.ttl, sig)


class SoaTemplate(NamedTuple):
    """A zone's SOA record as negative answers carry it, written for the apex as the question
    (`shared.compression`: the responder moves it to each question's apex)."""

    plain: bytes
    signed: bytes  # the same, then its RRSIGs
    names: dict[bytes, int]  # the names it writes, by their offset from its start


# What a name's answers are made of (see `_content`): RRset items, rotating items, NSEC rdata.
Content = tuple[object, object, bytes | None]


class Rendered(NamedTuple):
    """What one name rendered into, and from what. A tuple, and its answers one flat tuple:
    the cache holds one per name for the process's life (10,000 names: no dict per name).
    What it was made from (`_content`) is three fields of it, not a tuple of its own (0.5 MiB)."""

    items: object  # its RRsets as items
    rotating: object  # its rotating answers' rdata sets, as items, or None
    proof: bytes | None  # the NSEC rdata proving its NODATA, or the one before it
    default: Answer  # the name's entry in `ZoneTable.names`
    variants: dict[bytes, list[Answer]] | None  # its rotating answers, if any
    answers: tuple[bytes | Answer, ...]  # key, answer, key, answer... (`ZoneTable.answers`)

    def made_from(self, content: Content) -> bool:
        return self.items == content[0] and self.rotating == content[1] \
            and self.proof == content[2]

    def pairs(self) -> Iterator[tuple[bytes, Answer]]:
        flat = self.answers
        for i in range(0, len(flat), 2):
            yield cast(bytes, flat[i]), cast(Answer, flat[i + 1])


@dataclass
class RenderCache:
    """What one zone rendered last time, reused for names whose content did not change.

    A health change then re-renders (and re-signs) only the names it touched, and the
    unchanged answers stay the same objects, which is how the signer finds what to send.
    Cleared when signatures are renewed.
    """

    names: dict[bytes, Rendered] = field(default_factory=dict)
    order: list[bytes] = field(default_factory=list)  # the chain's names, in order
    keys: list[Any] = field(default_factory=list)  # their sort keys (NSEC) or hashes (NSEC3)
    # owner -> its NSEC (NSEC3) rdata, the same object while the chain and its types stay
    nsecs: dict[bytes, bytes] = field(default_factory=dict)
    # owner -> its NXDOMAIN proof (see `_proof`): the NSEC rdata it was made for is inside it
    proofs: dict[bytes, bytes] = field(default_factory=dict)
    # What the names' bodies were rendered after, in negative answers: the SOA template's
    # lengths and names (a body's pointers count on them).
    soa_shape: tuple[object, ...] = ()

    def clear(self) -> None:
        self.names.clear()
        self.proofs.clear()


@dataclass
class _View:
    """One zone filled for a health state: what every name serves."""

    zone: Zone
    serial: int
    names: dict[bytes, RRsets]  # every existing name, empty non-terminals with {}
    signer: ZoneSigner | None
    cache: RenderCache = field(default_factory=RenderCache)
    # NSEC: the owners in canonical order. NSEC3: every name, in the order of their hashes.
    chain: list[bytes] = field(default_factory=list)
    keys: list[Any] = field(default_factory=list)  # NSEC: canonical sort keys; NSEC3: hashes
    hashed: dict[bytes, bytes] = field(default_factory=dict)  # NSEC3: name -> hashed owner
    nsecs: dict[bytes, bytes] = field(default_factory=dict)  # name -> NSEC or NSEC3 rdata
    # name -> type -> the rdata sets of a pool's rotating answers (variant 0 is in `names`)
    rotating: dict[bytes, dict[int, Variants]] = field(default_factory=dict)
    # Bodies rendered in this generation, each once: a NODATA answer proves with the very
    # NSEC records a NSEC query is answered with, names of one address answer alike.
    bodies: dict[bytes, bytes] = field(default_factory=dict)

    def body(self, body: bytes) -> bytes:
        """The one object of this generation equal to `body`."""
        return self.bodies.setdefault(body, body)

    @property
    def apex(self) -> bytes:
        return self.zone.key

    @property
    def negative_ttl(self) -> int:
        # RFC 2308 section 3 and RFC 9077: the lesser of the SOA TTL and MINIMUM.
        soa = self.zone.spec.soa
        return min(soa.ttl, soa.minimum)

    def soa_rdata(self) -> bytes:
        spec = self.zone.spec.soa
        return self.zone.mname + self.zone.rname + struct.pack(
            ">IIIII", self.serial, spec.refresh, spec.retry, spec.expire, spec.minimum)

    def rrs(self, owner: bytes, rdtype: int, ttl: int, rdatas: tuple[bytes, ...],
            served_ttl: int | None = None) -> RRs:
        """An RRset signed at `ttl`, served at `served_ttl`."""
        shown = ttl if served_ttl is None else served_ttl
        if self.signer is None:
            return RRs(owner, rdtype, shown, rdatas)
        return RRs(owner, rdtype, shown, rdatas,
                   tuple(self.signer.rrsigs(owner, rdtype, ttl, rdatas)))

    def soa(self) -> RRs:
        """The SOA for the authority section of a negative answer."""
        return self.rrs(self.apex, SOA, self.zone.spec.soa.ttl, (self.soa_rdata(),),
                        self.negative_ttl)

    @functools.cached_property
    def soa_template(self) -> SoaTemplate:
        """The SOA records the responder puts first in negative answers, as a template."""
        soa, start = self.soa(), compression.after_question(self.apex)
        writer = Writer(self.apex, start)
        soa.write(writer, False)
        plain = writer.written()
        names = {n: at - start for n, at in writer.names.items() if at >= start}
        for sig in soa.sigs:
            writer.rr(self.apex, RRSIG, soa.ttl, sig)
        return SoaTemplate(plain, writer.written(), names)

    def template(self, rrs: RRs) -> bytes:
        """An RRset and its RRSIGs written for the apex as the question, right after it."""
        writer = Writer(self.apex, compression.after_question(self.apex))
        rrs.write(writer, True)
        return writer.written()

    @property
    def nsec3(self) -> bool:
        return self.zone.spec.dnssec is not None and self.zone.spec.dnssec.denial == "nsec3"

    def nsec(self, name: bytes) -> RRs:
        """The NSEC record of `name`, or the NSEC3 record of its hash."""
        if self.nsec3:
            return self.rrs(self.hashed[name], NSEC3, self.negative_ttl, (self.nsecs[name],))
        return self.rrs(name, NSEC, self.negative_ttl, (self.nsecs[name],))

    def denial(self, name: bytes) -> list[RRs]:
        """NSEC records proving `name` does not exist: the one covering it, and the one
        covering the wildcard at its closest encloser (RFC 4035 3.1.3.2); with NSEC3 the
        closest encloser proof and the wildcard's (RFC 5155 7.2.2)."""
        if self.signer is None:
            return []
        if self.nsec3:
            positions = nsec3.nxdomain_positions(self.keys, self.names, name)
            return [self.nsec(self.chain[p]) for p in positions]
        first = self.chain[canonical.covering(self.keys, name)]
        encloser = canonical.closest_encloser(self.names, name)
        second = self.chain[canonical.covering(self.keys, canonical.wildcard(encloser))]
        owners = [first] if first == second else [first, second]
        return [self.nsec(owner) for owner in owners]


View = _View  # what other modules of the signer read a filled zone as


def tables(zones: list[Zone], health: Mapping[str, bool], serials: list[int],
           signers: list[ZoneSigner | None] | None = None,
           caches: list[RenderCache] | None = None) -> list[ZoneTable]:
    """The tables of all zones; zones see each other so CNAME chains cross zone boundaries."""
    return tables_of(views(zones, health, serials, signers, caches))


def views(zones: list[Zone], health: Mapping[str, bool], serials: list[int],
          signers: list[ZoneSigner | None] | None = None,
          caches: list[RenderCache] | None = None) -> list[View]:
    """Every zone filled for a health state: what `tables_of` renders (and `signer.records`
    lists for transfers)."""
    signers = signers or [None] * len(zones)
    caches = caches or [RenderCache() for _ in zones]
    return [_view(z, health, s, g, c)
            for z, s, g, c in zip(zones, serials, signers, caches, strict=True)]


def tables_of(filled: list[View]) -> list[ZoneTable]:
    return [_table(v, filled) for v in filled]


def _view(zone: Zone, health: Mapping[str, bool], serial: int,
          signer: ZoneSigner | None, cache: RenderCache) -> _View:
    names: dict[bytes, RRsets] = {}
    rotating: dict[bytes, dict[int, Variants]] = {}
    for key, owner in zone.owners.items():
        names[key], variants = fill(owner, health)
        if variants:
            rotating[key] = variants
        # Every ancestor up to the apex exists too (RFC 8020 empty non-terminals).
        for i in _label_offsets(key)[1:]:
            if len(key) - i <= len(zone.key):
                break
            names.setdefault(key[i:], {})
    spec = zone.spec
    apex = {**names[zone.key], NS: (spec.ns_ttl, zone.ns)}
    if signer is not None:
        assert spec.dnssec is not None
        apex[DNSKEY] = (spec.dnssec.dnskey_ttl, signer.dnskeys())
        apex.update(signer.cds_records())
        if spec.dnssec.denial == "nsec3":
            soa = spec.soa
            apex[NSEC3PARAM] = (min(soa.ttl, soa.minimum), (nsec3.PARAM,))
    names[zone.key] = apex
    view = _View(zone, serial, names, signer, cache, rotating=rotating)
    if signer is not None:
        _chain(view)
    return view


def _chain(view: _View) -> None:
    """The NSEC chain: every owner (not the empty non-terminals), whatever its health."""
    if view.nsec3:
        _chain3(view)
        return
    cache = view.cache
    if not cache.order:
        cache.order = sorted(view.zone.owners, key=canonical.key)
        labels: dict[bytes, bytes] = {}  # the zone's own labels: one object for all keys
        cache.keys = [tuple([labels.setdefault(label, label) for label in canonical.key(o)])
                      for o in cache.order]
    owners = view.chain = cache.order
    view.keys = cache.keys
    bitmaps: dict[tuple[int, ...], bytes] = {}  # a few distinct type sets, as wire bitmaps
    for i, owner in enumerate(owners):
        following = owners[(i + 1) % len(owners)]
        types = {*view.names[owner], NSEC, RRSIG}
        if owner == view.apex:
            types.add(SOA)
        ordered = tuple(sorted(types))
        bitmap = bitmaps.get(ordered)
        if bitmap is None:
            bitmap = bitmaps[ordered] = nsec3.type_bitmaps(list(ordered))
        view.nsecs[owner] = kept_rdata(cache.nsecs, owner, b"", following, bitmap)


def _chain3(view: _View) -> None:
    """The NSEC3 chain (RFC 5155 7.1): every name, empty non-terminals included, by hash."""
    cache = view.cache
    if not cache.order:
        cache.order = sorted(view.names, key=nsec3.digest)
        cache.keys = [nsec3.digest(n) for n in cache.order]
    view.chain, view.keys = cache.order, cache.keys
    bitmaps: dict[tuple[int, ...], bytes] = {}  # as in `_chain`
    # Hash algorithm, flags, iterations, salt (none), then the hash's length: the same for all.
    head = nsec3.rdata(view.keys[0], [])[:6]
    for i, name in enumerate(view.chain):
        view.hashed[name] = nsec3.owner(view.keys[i], view.apex)
        following = view.keys[(i + 1) % len(view.keys)]
        types = set(view.names[name])
        if types:
            types.add(RRSIG)
        if name == view.apex:
            types.add(SOA)
        ordered = tuple(sorted(types))
        bitmap = bitmaps.get(ordered)
        if bitmap is None:
            bitmap = bitmaps[ordered] = nsec3.type_bitmaps(list(ordered))
        view.nsecs[name] = kept_rdata(cache.nsecs, name, head, following, bitmap)


def kept_rdata(nsecs: dict[bytes, bytes], owner: bytes, head: bytes, following: bytes,
               bitmap: bytes) -> bytes:
    """`owner`'s NSEC (NSEC3) rdata, `head + following + bitmap`: the cached object when it
    is that, compared in place. Cached by owner, not by (next name, types): no key tuple per
    name (10,000 names: 0.7 MiB), and an owner's rdata stays one object across generations
    (signature cache keys and render cache entries hold it)."""
    rdata = nsecs.get(owner)
    if rdata is None or len(rdata) != len(head) + len(following) + len(bitmap) \
            or not (rdata.startswith(head) and rdata.startswith(following, len(head))
                    and rdata.endswith(bitmap)):
        rdata = nsecs[owner] = head + following + bitmap
    return rdata


def _table(view: _View, views: list[_View]) -> ZoneTable:
    answers: dict[bytes, Answer] = {}
    defaults: dict[bytes, Answer] = {}
    variants: dict[bytes, list[Answer]] = {}
    cached = view.cache.names
    template = view.soa_template
    shape = (len(template.plain), len(template.signed), tuple(template.names.items()))
    if view.cache.soa_shape != shape:  # the bodies after it would point amiss
        cached.clear()
        view.cache.soa_shape = shape
    for name, rrsets in view.names.items():
        rrsets = _with_soa(view, name, rrsets)
        owner = view.zone.owners.get(name)
        if owner is not None and owner.cname is not None:
            _render_cname_owner(view, views, name, rrsets, answers, defaults, variants)
            continue
        content = _content(view, name, rrsets)
        hit = cached.get(name)
        if hit is not None and hit.made_from(content):
            if view.signer is not None:
                view.signer.keep(name)
                if view.nsec3:
                    view.signer.keep(view.hashed[name])
            answers.update(hit.pairs())
            if hit.variants is not None:
                variants.update(hit.variants)
            defaults[name] = hit.default
            continue
        own: dict[bytes, Answer] = {}
        own_variants: dict[bytes, list[Answer]] = {}
        _render_name(view, name, rrsets, own, defaults, own_variants)
        answers.update(own)
        variants.update(own_variants)
        if name != view.apex:  # the apex holds the SOA: always rendered
            flat = tuple(x for pair in own.items() for x in pair)
            cached[name] = Rendered(*content, defaults[name], own_variants or None, flat)
    nx = _answer(view, view.apex, NXDOMAIN, [], [], soa=True)
    return ZoneTable(origin=view.apex, answers=answers, names=defaults, nxdomain=nx,
                     serial=view.serial, variants=variants,
                     chain=view.keys if view.nsec3 else view.chain,
                     proofs=[_proof(view, o) for o in view.chain],
                     soa=template.plain, soa_signed=template.signed, nsec3=view.nsec3)


def _content(view: _View, name: bytes, rrsets: RRsets) -> Content:
    """Everything a name's answers are made of, but the SOA (spliced in by responders)."""
    rotating = view.rotating.get(name)
    proof = view.nsecs.get(name)
    if proof is None and view.signer is not None:  # an empty non-terminal: the NSEC before
        before = view.chain[canonical.covering(view.keys, name)]
        proof = before + view.nsecs[before]
    owner = view.zone.owners.get(name)
    if owner is not None and owner.plan is None and name != view.apex:
        items = owner.static  # what `fill` served it, kept: no copy per name and generation
    else:
        items = tuple(rrsets.items())
    return (items, tuple(rotating.items()) if rotating else None, proof)


def _proof(view: _View, owner: bytes) -> bytes:
    """An owner's NSEC (NSEC3) and RRSIG records as a template, for NXDOMAIN proofs: its
    owner written as its labels below the apex, then a pointer to the apex."""
    rdata = view.nsecs[owner]
    hit = view.cache.proofs.get(owner)
    record_owner = view.hashed[owner] if view.nsec3 else owner
    written = len(record_owner) - len(view.apex) + 2
    if hit is None or not proves(hit, written, rdata):
        hit = view.cache.proofs[owner] = view.template(view.nsec(owner))
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


def _render_name(view: _View, name: bytes, rrsets: RRsets, answers: dict[bytes, Answer],
                 defaults: dict[bytes, Answer], variants: dict[bytes, list[Answer]]) -> None:
    """Every answer of a name that is not a CNAME."""
    for rdtype, (ttl, rdatas) in rrsets.items():
        answers[_key(name, rdtype)] = _answer(view, name, NOERROR, [
            view.rrs(name, rdtype, ttl, rdatas)])
    for rdtype, sets in view.rotating.get(name, {}).items():
        # Variant 0 is what `answers` holds: a responder that ignores `variants` still
        # answers correctly, only without rotating.
        ttl = rrsets[rdtype][0]
        variants[_key(name, rdtype)] = [_answer(view, name, NOERROR, [
            view.rrs(name, rdtype, ttl, s)]) for s in sets]
        answers[_key(name, rdtype)] = variants[_key(name, rdtype)][0]
    if rrsets:
        # RFC 8482: ANY gets one RRset, the one with the lowest type number.
        first = min(rrsets)
        answers[_key(name, ANY)] = answers[_key(name, first)]
    if name in view.nsecs:
        if not view.nsec3:
            answers[_key(name, NSEC)] = _answer(view, name, NOERROR, [view.nsec(name)])
        proof = [view.nsec(name)]
    else:  # an empty non-terminal: the NSEC before it covers it (RFC 4035 3.1.3.2)
        proof = view.denial(name)[:1]
    defaults[name] = _answer(view, name, NOERROR, [], [], proof, soa=True)


def _key(name: bytes, rdtype: int) -> bytes:
    return name + struct.pack(">H", rdtype)


def _with_soa(view: _View, name: bytes, rrsets: RRsets) -> RRsets:
    if name != view.apex:
        return rrsets
    return {**rrsets, SOA: (view.zone.spec.soa.ttl, (view.soa_rdata(),))}


def _answer(view: _View, qname: bytes, rcode: int, answer: list[RRs],
            authority: list[RRs] | None = None, proofs: list[RRs] | None = None,
            soa: bool = False) -> Answer:
    """The answer to `qname`, with its signed variant in a signed zone.

    With `soa`, the responder puts the zone's SOA records first in the authority section:
    the counts include them, the body does not, so the answer outlives serial changes.
    """
    authority = authority or []
    plain_an = sum(len(s.rdatas) for s in answer)
    plain_ns = sum(len(s.rdatas) for s in authority) + (1 if soa else 0)
    body = _body(view, qname, answer + authority, soa, False)
    signed = None
    if view.signer is not None:
        sections = (answer, authority + (proofs or []))
        an, ns = (sum(len(s.rdatas) + len(s.sigs) for s in sec) for sec in sections)
        soa_count = 1 + len(view.signer.zone_keys()) if soa else 0
        signed = Answer(FLAGS[rcode], an, ns + soa_count, 0,
                        _body(view, qname, [*sections[0], *sections[1]], soa, True), soa=soa)
    return Answer(FLAGS[rcode], plain_an, plain_ns, 0, body, signed, soa=soa)


def _body(view: _View, qname: bytes, rrsets: list[RRs], soa: bool, signed: bool) -> bytes:
    """The records of an answer to `qname`, written after the question and, with `soa`, after
    the SOA records the responder puts first."""
    start, names = compression.after_question(qname), None
    if soa:
        template = view.soa_template
        names = {name: start + at for name, at in template.names.items()}
        start += len(template.signed if signed else template.plain)
    writer = Writer(qname, start, names)
    for rrs in rrsets:
        rrs.write(writer, signed)
    return view.body(writer.written())


def _render_cname_owner(view: _View, views: list[_View], name: bytes, rrsets: RRsets,
                        answers: dict[bytes, Answer], defaults: dict[bytes, Answer],
                        variants: dict[bytes, list[Answer]]) -> None:
    """A CNAME owner answers every type with the chain followed inside our zones."""
    ttl, rdatas = rrsets[CNAME]
    first = view.rrs(name, CNAME, ttl, rdatas)
    answers[_key(name, CNAME)] = _answer(view, name, NOERROR, [first])
    if name in view.nsecs and not view.nsec3:
        answers[_key(name, NSEC)] = _answer(view, name, NOERROR, [view.nsec(name)])
    chain = [first]
    target = view.zone.owners[name].cname
    seen = {name}
    while target is not None and target not in seen and len(chain) < MAX_CHAIN:
        seen.add(target)
        where = _find(views, target)
        if where is None:  # outside our zones: the resolver follows it
            break
        tview, trrsets = where
        if trrsets is None:  # the target does not exist
            defaults[name] = _answer(view, name, NXDOMAIN, chain, [tview.soa()],
                                     tview.denial(target))
            return
        trrsets = _with_soa(tview, target, trrsets)
        owner = tview.zone.owners.get(target)
        if owner is not None and owner.cname is not None:
            cttl, crdatas = trrsets[CNAME]
            chain.append(tview.rrs(target, CNAME, cttl, crdatas))
            target = owner.cname
            continue
        for rdtype, (rttl, rdatas) in trrsets.items():
            # A chain that ends at a rotating pool rotates with it.
            sets = tview.rotating.get(target, {}).get(rdtype, [rdatas])
            ends = [_answer(view, name, NOERROR, chain + [tview.rrs(target, rdtype, rttl, s)])
                    for s in sets]
            answers[_key(name, rdtype)] = ends[0]
            if len(ends) > 1:
                variants[_key(name, rdtype)] = ends
        proof = [tview.nsec(target)] if target in tview.nsecs \
            else tview.denial(target)[:1]
        defaults[name] = _answer(view, name, NOERROR, chain, [tview.soa()], proof)
        return
    defaults[name] = _answer(view, name, NOERROR, chain)


def _find(views: list[_View], name: bytes) -> tuple[_View, RRsets | None] | None:
    """The zone holding `name` (most specific first) and its data, None if it does not exist."""
    for i in _label_offsets(name):
        for view in views:
            if view.apex == name[i:]:
                return view, view.names.get(name)
    return None


def _label_offsets(name: bytes) -> list[int]:
    offsets = []
    i = 0
    while name[i] != 0:
        offsets.append(i)
        i += name[i] + 1
    offsets.append(i)
    return offsets


def rr(owner: bytes, rdtype: int, ttl: int, rdata: bytes) -> bytes:
    return owner + struct.pack(">HHIH", rdtype, IN, ttl, len(rdata)) + rdata
