"""Pre-rendering: every answer a responder can give, as wire bytes, per zone and health state.

Each body is rendered for the question sitting at offset 12 of the response: an owner equal to
the question, or a suffix of it, is written as a compression pointer into the question, which the
responder copies from the query unchanged (same length whatever the case). Everything else,
rdata included, is written uncompressed, which RFC 1035 and RFC 3597 always allow.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from healthdns.shared.messages import Answer, ZoneTable
from healthdns.signer.zone import CNAME, NS, SOA, RRsets, Zone, served

IN = 1
ANY = 255
QR_AA = 0x8400
NOERROR, NXDOMAIN = 0, 3
MAX_CHAIN = 8  # CNAME hops followed before giving up (RFC 1034 4.3.2 loop protection)


@dataclass(frozen=True)
class _View:
    """One zone filled for a health state: what every name serves."""

    zone: Zone
    serial: int
    names: dict[bytes, RRsets]  # every existing name, empty non-terminals with {}

    @property
    def apex(self) -> bytes:
        return self.zone.key

    def soa_rr(self, qname: bytes) -> bytes:
        spec = self.zone.spec.soa
        rdata = self.zone.mname + self.zone.rname + struct.pack(
            ">IIIII", self.serial, spec.refresh, spec.retry, spec.expire, spec.minimum)
        # RFC 2308 section 3: the negative TTL is the lesser of the SOA TTL and MINIMUM.
        return rr(owner_ref(qname, self.apex), SOA, min(spec.ttl, spec.minimum), rdata)


def tables(zones: list[Zone], health: Mapping[str, bool], serials: list[int]) -> list[ZoneTable]:
    """The tables of all zones; zones see each other so CNAME chains cross zone boundaries."""
    views = [_view(z, health, s) for z, s in zip(zones, serials, strict=True)]
    return [_table(v, views) for v in views]


def _view(zone: Zone, health: Mapping[str, bool], serial: int) -> _View:
    names: dict[bytes, RRsets] = {}
    for key, owner in zone.owners.items():
        names[key] = served(owner, health)
        # Every ancestor up to the apex exists too (RFC 8020 empty non-terminals).
        for i in _label_offsets(key)[1:]:
            if len(key) - i <= len(zone.key):
                break
            names.setdefault(key[i:], {})
    spec = zone.spec
    names[zone.key] = {**names[zone.key], NS: (spec.ns_ttl, zone.ns)}
    return _View(zone, serial, names)


def _table(view: _View, views: list[_View]) -> ZoneTable:
    answers: dict[bytes, Answer] = {}
    defaults: dict[bytes, Answer] = {}
    for name, rrsets in view.names.items():
        rrsets = _with_soa(view, name, rrsets)
        cname = view.zone.owners[name].cname if name in view.zone.owners else None
        if cname is not None:
            _render_cname_owner(view, views, name, rrsets, answers, defaults)
            continue
        for rdtype, (ttl, rdatas) in rrsets.items():
            answers[name + struct.pack(">H", rdtype)] = _positive(name, rdtype, ttl, rdatas)
        if rrsets:
            # RFC 8482: ANY gets one RRset, the one with the lowest type number.
            first = min(rrsets)
            answers[name + struct.pack(">H", ANY)] = _positive(name, first, *rrsets[first])
        defaults[name] = Answer(QR_AA | NOERROR, 0, 1, 0, view.soa_rr(name))
    nx = Answer(QR_AA | NXDOMAIN, 0, 1, 0, view.soa_rr(b""))
    return ZoneTable(origin=view.apex, answers=answers, names=defaults, nxdomain=nx,
                     serial=view.serial)


def _with_soa(view: _View, name: bytes, rrsets: RRsets) -> RRsets:
    if name != view.apex:
        return rrsets
    spec = view.zone.spec.soa
    soa = view.soa_rr(name)
    rdata = soa[12:]  # pointer(2) type(2) class(2) ttl(4) rdlength(2), then the rdata
    return {**rrsets, SOA: (spec.ttl, (rdata,))}


def _positive(name: bytes, rdtype: int, ttl: int, rdatas: tuple[bytes, ...]) -> Answer:
    body = b"".join(rr(b"\xc0\x0c", rdtype, ttl, r) for r in rdatas)
    return Answer(QR_AA | NOERROR, len(rdatas), 0, 0, body)


def _render_cname_owner(view: _View, views: list[_View], name: bytes, rrsets: RRsets,
                        answers: dict[bytes, Answer], defaults: dict[bytes, Answer]) -> None:
    """A CNAME owner answers every type with the chain followed inside our zones."""
    ttl, (target_rdata,) = rrsets[CNAME]
    answers[name + struct.pack(">H", CNAME)] = _positive(name, CNAME, ttl, (target_rdata,))
    chain = [rr(b"\xc0\x0c", CNAME, ttl, target_rdata)]
    target = view.zone.owners[name].cname
    seen = {name}
    while target is not None and target not in seen and len(chain) < MAX_CHAIN:
        seen.add(target)
        where = _find(views, target)
        if where is None:  # outside our zones: the resolver follows it
            break
        tview, trrsets = where
        if trrsets is None:  # the target does not exist
            defaults[name] = _chain(chain, NXDOMAIN, [tview.soa_rr(name)])
            return
        trrsets = _with_soa(tview, target, trrsets)
        owner = tview.zone.owners.get(target)
        if owner is not None and owner.cname is not None:
            cttl, (crdata,) = trrsets[CNAME]
            chain.append(rr(target, CNAME, cttl, crdata))
            target = owner.cname
            continue
        for rdtype, (rttl, rdatas) in trrsets.items():
            tail = [rr(target, rdtype, rttl, r) for r in rdatas]
            answers[name + struct.pack(">H", rdtype)] = _chain(chain + tail, NOERROR, [])
        defaults[name] = _chain(chain, NOERROR, [tview.soa_rr(name)])
        return
    defaults[name] = _chain(chain, NOERROR, [])


def _chain(answer: list[bytes], rcode: int, authority: list[bytes]) -> Answer:
    return Answer(QR_AA | rcode, len(answer), len(authority), 0, b"".join(answer + authority))


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


def owner_ref(qname: bytes, owner: bytes) -> bytes:
    """A pointer to `owner` inside the question when it is `qname` or a suffix of it."""
    for i in _label_offsets(qname) if qname else ():
        if qname[i:] == owner:
            return struct.pack(">H", 0xC000 | (12 + i))
    return owner


def rr(owner: bytes, rdtype: int, ttl: int, rdata: bytes) -> bytes:
    return owner + struct.pack(">HHIH", rdtype, IN, ttl, len(rdata)) + rdata
