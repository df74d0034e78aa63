"""The fast path and the slow path agree, and neither raises, whatever the packet."""

from __future__ import annotations

import struct

import dns.message
import dns.rcode
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthdns.responder.query import Answerer
from healthdns.responder.table import Table
from healthdns.shared import config, messages
from healthdns.signer.main import Signer

CFG = config.from_mapping({
    "zones": [{
        "origin": "example.test", "aliases": ["example.org"],
        "nameservers": ["ns1.example.net"],
        "records": {
            "www": {"a": ["192.0.2.1", "192.0.2.2"], "aaaa": ["2001:db8::1"]},
            "big": {"txt": [f'"{i:03d} {"x" * 96}"' for i in range(20)]},
            "alias": {"cname": "www"},
            "a.b": {"txt": ['"deep"']},
            "pool": {"pool": {"addresses": ["192.0.2.9"], "check": {"port": 80}}},
        },
    }],
})


def answerer(cfg: config.Config = CFG) -> Answerer:
    published = Signer(cfg).update({}, full=True)
    assert published is not None
    a = Answerer(1232, b"nsid")
    a.table = Table(messages.decode_to_child(published.snapshot))  # type: ignore[arg-type]
    return a


ANSWERER = answerer()
NAMES = ["www.example.test", "WwW.ExAmPlE.TeSt", "big.example.test", "alias.example.org",
         "b.example.test", "nothere.example.test", "x.www.example.test", "example.test",
         "example.org", "www.example.com", "pool.example.test", "."]
TYPES = [1, 2, 5, 6, 15, 16, 28, 41, 65, 99, 251, 252, 253, 255, 65280]


@st.composite
def queries(draw: st.DrawFn) -> bytes:
    name = dns.name.from_text(draw(st.sampled_from(NAMES))).to_wire()
    flags = draw(st.one_of(st.just(0), st.just(0x0100), st.just(0x0120), st.integers(0, 0xFFFF)))
    qtype = draw(st.sampled_from(TYPES))
    qclass = draw(st.sampled_from([1, 1, 1, 3, 255]))
    question = name + struct.pack(">HH", qtype, qclass)
    additional, arcount = b"", 0
    if draw(st.booleans()):
        options = b""
        if draw(st.booleans()):
            code = draw(st.sampled_from([3, 10, 65001]))
            data = draw(st.binary(max_size=12))
            options = struct.pack(">HH", code, len(data)) + data
        size = draw(st.sampled_from([0, 512, 1232, 4096, 65535]))
        ttl = draw(st.sampled_from([0, 0x8000, 0x00010000, 0x01008000]))
        additional = b"\x00\x00\x29" + struct.pack(">HIH", size, ttl, len(options)) + options
        arcount = 1
    qdcount = draw(st.sampled_from([1, 1, 1, 0, 2]))
    header = struct.pack(">HHHHHH", draw(st.integers(0, 0xFFFF)), flags, qdcount, 0, 0, arcount)
    wire = header + question + additional
    mutation = draw(st.sampled_from(["none", "none", "truncate", "flip", "append"]))
    if mutation == "truncate":
        wire = wire[:draw(st.integers(0, len(wire)))]
    elif mutation == "flip":
        i = draw(st.integers(0, len(wire) - 1))
        wire = wire[:i] + bytes([draw(st.integers(0, 255))]) + wire[i + 1:]
    elif mutation == "append":
        wire += draw(st.binary(min_size=1, max_size=8))
    return wire


def signed_answerer(denial: str = "nsec") -> Answerer:
    """The same zone, signed with a key written to a private temporary file."""
    return signed_with(denial)[0]


def signed_with(denial: str, algorithm: str = "ECDSAP256SHA256") -> tuple[Answerer, str]:
    """The zone signed with `denial` (nsec or nsec3) by a new key, and that key's DNSKEY
    rdata as text (a trust anchor for validators)."""
    import tempfile

    from healthdns.signer import keys

    folder = tempfile.mkdtemp()
    path = f"{folder}/csk.pem"
    private = keys.generate(keys.Algorithm[algorithm])
    keys.write(private, path)
    document = msgspec.to_builtins(CFG)
    document["zones"][0]["dnssec"] = {"csk": path, "denial": denial, "algorithm": algorithm}
    dnskey = keys.made(private, "csk", keys.Algorithm[algorithm]).dnskey.to_text()
    return answerer(config.from_mapping(document)), dnskey


SIGNED = signed_answerer()
SIGNED3 = signed_answerer("nsec3")


@settings(max_examples=3000, deadline=None)
@given(queries(), st.booleans(), st.booleans())
def test_fast_and_slow_paths_agree(wire: bytes, tcp: bool, signed: bool) -> None:
    answerer = SIGNED if signed else ANSWERER
    fast = answerer.answer(wire, tcp)
    slow = answerer.slow(wire, tcp)
    assert fast == slow
    if fast is not None and (fast[2] >> 3) & 0x0F == 0:
        response = dns.message.from_wire(fast)  # a valid message
        assert response.id == struct.unpack_from(">H", wire)[0]
        if not tcp:
            assert len(fast) <= 1232


@settings(max_examples=3000, deadline=None)
@given(st.binary(min_size=0, max_size=300))
def test_random_bytes_never_raise(wire: bytes) -> None:
    assert ANSWERER.answer(wire, False) == ANSWERER.slow(wire, False)


def test_common_queries_take_the_fast_path() -> None:
    a = answerer()
    for name, rdtype in [("www.example.test", "A"), ("nothere.example.test", "A"),
                         ("www.example.test", "MX"), ("WWW.example.test", "AAAA")]:
        for edns in (False, 0):
            wire = dns.message.make_query(name, rdtype, use_edns=edns).to_wire()
            assert a.answer(wire, False) is not None
    assert sum(a.fast_counts.values()) == 8
    assert not a.slow_counts
    assert a.counts()[("fast", 1, dns.rcode.NXDOMAIN)] == 2  # nothere A, with and without EDNS
    assert a.counts()[("fast", 15, dns.rcode.NOERROR)] == 2  # www MX: NODATA


def test_refused_goes_to_the_slow_path_and_is_counted() -> None:
    a = answerer()
    wire = dns.message.make_query("www.example.com", "A").to_wire()
    response = dns.message.from_wire(a.answer(wire, False))
    assert response.rcode() == dns.rcode.REFUSED
    assert a.slow_counts == {(0, 1, dns.rcode.REFUSED, False): 1}  # zone 0: none of ours


def test_packet_cache_answers_repeats_and_starts_empty_with_each_table() -> None:
    a = answerer()
    assert a.table is not None
    table = a.table
    table.cache_size = 100
    query = dns.message.make_query("www.example.test", "A", use_edns=0)
    first = a.answer(query.to_wire(), False)
    assert a.answer(query.to_wire(), False) == first  # the second miss admits it
    query.id ^= 0xFFFF
    second = a.answer(query.to_wire(), False)
    assert a.counts()[("cache", 1, 0)] == 1
    assert second is not None and first is not None
    assert second[:2] == query.to_wire()[:2] and second[2:] == first[2:]
    assert a.answer(query.to_wire(), True) == a.slow(query.to_wire(), True)  # TCP: no cache
    fresh = answerer()  # a new snapshot: a new table with an empty cache
    assert fresh.table is not None and not fresh.table.cache


def test_packet_cache_is_bounded() -> None:
    a = answerer()
    assert a.table is not None
    a.table.cache_size = 10
    for i in range(25):
        for _ in range(2):  # admitted on the second miss
            a.answer(dns.message.make_query("www.example.test", 1000 + i).to_wire(), False)
    assert 0 < len(a.table.cache) <= 10


def test_a_delta_gives_the_same_table_as_the_full_snapshot() -> None:
    document = msgspec.to_builtins(CFG)
    document["zones"][0]["records"]["two"] = {
        "pool": {"addresses": ["192.0.2.21", "192.0.2.22"], "check": {"port": 80}}}
    for i in range(100):
        document["zones"][0]["records"][f"n{i}"] = {"a": [f"198.51.100.{i}"]}
    cfg = config.from_mapping(document)
    signer = Signer(cfg)
    first = signer.update({}, full=True)  # both down: serve-all answers with both
    target = next(t for t, (address, _) in cfg.checks().items() if address == "192.0.2.21")
    second = signer.update({target: True}, full=False)
    assert second is not None and second.delta
    full = Table(messages.decode_to_child(second.snapshot))  # type: ignore[arg-type]
    delta = messages.decode_to_child(second.delta)
    assert isinstance(delta, messages.Delta) and delta.base == first.generation
    patched = Table(messages.decode_to_child(first.snapshot)).apply(delta)  # type: ignore[arg-type]
    assert patched.generation == full.generation
    assert patched.answers == full.answers and patched.names == full.names
    assert patched.soas == full.soas
    # Only what changed travels: far fewer entries than the table holds.
    changed = sum(len(z.answers) + len(z.names) for z in delta.zones)
    assert changed < len(full.answers) / 10


@settings(max_examples=1000, deadline=None)
@given(st.integers(0, 0x7FFF), st.sampled_from(NAMES), st.sampled_from(TYPES), st.booleans())
def test_header_bits_follow_the_opcode(flags: int, name: str, qtype: int, tcp: bool) -> None:
    """RD is copied whatever the opcode; CD only for QUERY (RFC 6840 5.9); AD never."""
    question = dns.name.from_text(name).to_wire() + struct.pack(">HH", qtype, 1)
    wire = struct.pack(">HHHHHH", 0x0101, flags, 1, 0, 0, 0) + question
    response = ANSWERER.answer(wire, tcp)
    assert response is not None and response == ANSWERER.slow(wire, tcp)
    reply = struct.unpack_from(">H", response, 2)[0]
    opcode = (flags >> 11) & 0x0F
    assert (reply >> 11) & 0x0F == opcode
    assert reply & 0x0100 == flags & 0x0100  # RD
    assert reply & 0x0010 == (flags & 0x0010 if opcode == 0 else 0)  # CD
    assert not reply & 0x0020  # AD


# --- names that do not exist: the fast path, signed or not (#12) ------------------------------

LABELS = st.text("abcdefghijklmnopqrstuvwxyzABC0123456789-_*", min_size=1, max_size=12)
# Under the apex, under existing names (www, big), under an empty non-terminal (b) and under
# the alias zone: each a different closest encloser.
PARENTS = ["example.test", "example.org", "www.example.test", "b.example.test",
           "big.example.org", "a.b.example.test"]


@st.composite
def absent_names(draw: st.DrawFn) -> bytes:
    """A wire name under one of our zones, mostly one that does not exist, in mixed case."""
    labels = draw(st.lists(LABELS, min_size=1, max_size=3))
    parent = dns.name.from_text(draw(st.sampled_from(PARENTS))).to_wire()
    return b"".join(bytes([len(x)]) + x.encode() for x in labels) + parent


ANSWERERS = {"unsigned": ANSWERER, "nsec": SIGNED, "nsec3": SIGNED3}


@settings(max_examples=1500, deadline=None)
@given(absent_names(), st.sampled_from(sorted(ANSWERERS)), st.sampled_from([1, 16, 28, 99]),
       st.sampled_from([None, 0, 0x8000]), st.booleans())
def test_names_that_do_not_exist_take_the_fast_path(name: bytes, variant: str, qtype: int,
                                                    edns: int | None, tcp: bool) -> None:
    """A new name each query (a random-subdomain flood) is answered on the fast path with
    the same bytes as the slow path: NXDOMAIN with NSEC or NSEC3 proofs when DO=1."""
    a = ANSWERERS[variant]
    wire = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0 if edns is None else 1) \
        + name + struct.pack(">HH", qtype, 1)
    if edns is not None:
        wire += b"\x00\x00\x29" + struct.pack(">HIH", 1232, edns, 0)
    fast_before = sum(a.fast_counts.values())
    fast = a.answer(wire, tcp)
    assert sum(a.fast_counts.values()) == fast_before + 1, "answered on the slow path"
    assert fast is not None and fast == a.slow(wire, tcp)
    response = dns.message.from_wire(fast)
    if response.rcode() == dns.rcode.NXDOMAIN and edns == 0x8000 and variant != "unsigned":
        denial = dns.rdatatype.NSEC3 if variant == "nsec3" else dns.rdatatype.NSEC
        assert any(r.rdtype == denial for r in response.authority)


def reference_proofs(table: Table, name: bytes) -> bytes:
    """The NXDOMAIN proofs as the responder found them before they were cached per closest
    encloser: every position computed from the name, nothing kept between queries; those the
    encloser fixes first, each placed after the ones before it."""
    from healthdns.shared import canonical, compression, nsec3

    i = 0
    while name[i]:
        i += name[i] + 1
        if name[i:] in table.chains:
            keys, proofs, hashed, apex_length, after = table.chains[name[i:]]
            encloser = canonical.closest_encloser(table.names, name)
            if hashed:
                match, wild = nsec3.encloser_positions(keys, encloser)
                closer = nsec3.next_closer_position(keys, name, encloser)
                positions = list(dict.fromkeys((match, wild, closer)))
            else:
                first = canonical.covering(keys, name, canonical.packed)
                second = canonical.covering(keys, canonical.wildcard(encloser),
                                            canonical.packed)
                positions = list(dict.fromkeys((second, first)))
            parsed = dns.name.from_wire(encloser, 0)[0]
            suffixes = {len(parsed.split(depth)[1].to_wire())
                        for depth in range(1, len(parsed) + 1)}
            placed = b""
            for p in positions:
                kept = -1 if hashed else compression.kept_labels(proofs[p], encloser, suffixes,
                                                                 apex_length)
                placed += compression.place(proofs[p], 12 + len(name) - apex_length,
                                            16 + len(name) + after + len(placed), kept)
            return placed
    raise AssertionError("no signed zone holds the name")


@settings(max_examples=1000, deadline=None)
@given(st.lists(absent_names(), min_size=1, max_size=5), st.booleans())
def test_cached_enclosers_give_the_reference_proofs(names: list[bytes], hashed: bool) -> None:
    """Whatever was asked before (the per-encloser cache filled in any order), each name gets
    the records the uncached computation gives, and counts that match them."""
    table = (SIGNED3 if hashed else SIGNED).table
    assert table is not None
    for name in names:
        name = name.lower()
        zone = table.zones.get(name[name.index(b"\x07example"):])
        if zone is None or table.lookup_miss(name) is not zone.entry(len(name)):
            continue  # the name exists (or is a deeper zone's): no NXDOMAIN
        counts, proofs = table.denial(name, (0, 1, 0))
        assert proofs == reference_proofs(table, name)
        records = 2 * (3 if hashed else 2)
        assert struct.unpack(">HHHH", counts)[2] - 1 in range(2, records + 1, 2)


def test_a_flood_of_new_names_leaves_the_cache_to_legitimate_names() -> None:
    """A random-subdomain flood (and one of random types) ten times the cache size: the names
    asked before and after it are still answered from the cache."""
    a = answerer()
    assert a.table is not None
    a.table.cache_size = 100
    legit = [dns.message.make_query(n, t, use_edns=e).to_wire()
             for n, t in [("www.example.test", "A"), ("nothere.example.test", "AAAA"),
                          ("alias.example.org", "A"), ("www.example.test", "MX")]
             for e in (False, 0)]
    for wire in legit + legit:  # asked twice: admitted
        a.answer(wire, False)
    hits = a.cache_counts.copy()
    for i in range(1000):
        a.answer(dns.message.make_query(f"r{i:03d}x.example.test", "A").to_wire(), False)
        a.answer(dns.message.make_query("www.example.test", 1000 + i).to_wire(), False)
    assert a.cache_counts == hits  # the flood itself never hits
    for wire in legit:
        assert a.answer(wire, False) == a.slow(wire, False)
    # nothere: the NXDOMAIN kept for its parent answers it (and the flood), not the cache
    kept = [w for w in legit if dns.message.from_wire(a.slow(w, False)).rcode()
            == dns.rcode.NXDOMAIN]
    assert len(kept) == 2
    assert sum(a.cache_counts.values()) - sum(hits.values()) == len(legit) - len(kept)
    assert len(a.table.cache) <= 100
    # nothere AAAA without and with EDNS, the flood's A (its labels of one length)
    assert len(a.table.nxdomains) == 3


@settings(max_examples=300, deadline=None)
@given(st.lists(absent_names(), min_size=2, max_size=8))
def test_canonical_keys_sort_as_dnspython_does(names: list[bytes]) -> None:
    """RFC 4034 6.1 order, checked against dnspython's own comparison of names."""
    from healthdns.shared import canonical

    wires = [name.lower() for name in names]
    ours = sorted(wires, key=canonical.key)
    theirs = sorted(wires, key=lambda w: dns.name.from_wire(w, 0)[0])
    assert [canonical.key(w) for w in ours] == [canonical.key(w) for w in theirs]


@settings(max_examples=500, deadline=None)
@given(absent_names(), st.sampled_from(PARENTS))
def test_packed_below_an_ancestor_is_the_packed_key(name: bytes, ancestor: str) -> None:
    """The key `Table.denial` builds from the closest encloser's is `packed`'s, escapes and
    several labels included."""
    from healthdns.shared import canonical

    name = name.lower()
    parent = dns.name.from_text(ancestor).to_wire()
    if not name.endswith(parent) or name == parent:
        name = b"\x02a\x00" + parent  # 0x00 inside a label: escaped
    stop = len(name) - len(parent)
    assert canonical.packed_below(canonical.packed(parent), name, stop) == canonical.packed(name)


# --- NXDOMAIN kept per parent: a random-subdomain flood answered without the full path -------

def twin(a: Answerer, cache: int) -> Answerer:
    """An answerer serving `a`'s table with empty caches of `cache` entries (0: none, so
    that every query takes the full path: the model a kept answer must agree with)."""
    import copy

    assert a.table is not None
    other = Answerer(a.payload_size, b"nsid")
    other.table = copy.copy(a.table)
    other.table.cache, other.table.seen, other.table.nxdomains = {}, set(), {}
    other.table.cache_size = cache
    return other


# Labels that repeat (so that keys repeat), that exist under some parent (www, a, big, b),
# that differ in case only, or that hold a 0x00 or are as long as a label may be.
FIRST_LABELS = st.one_of(st.sampled_from([b"www", b"WWW", b"a", b"big", b"b", b"zz", b"x\x00y",
                                          b"q" * 63]), LABELS.map(str.encode))


@st.composite
def floods(draw: st.DrawFn) -> list[bytes]:
    """Queries as a flood sends them: one to three shapes (parent, type, flags, EDNS), each
    query one of them with a label of its own, so that kept answers are found and used. Most
    shapes are those kept answers take; some are not (an NSID option, odd flags), and now and
    then a datagram is cut short. Client sizes either side of the signed answers' lengths
    (414-654 octets with NSEC, 728-985 with NSEC3), so that some fit and some must be cut."""
    shapes = []
    for _ in range(draw(st.integers(1, 3))):
        parent = dns.name.from_text(draw(st.sampled_from(PARENTS))).to_wire()
        if draw(st.integers(0, 9)) == 0:
            parent = parent.upper()
        flags = draw(st.sampled_from([0x0100, 0x0000, 0x0110, 0x0120, 0x0500, 0x8100]))
        additional = b""
        if draw(st.booleans()):
            size = draw(st.sampled_from([512, 600, 700, 900, 1232]))
            options = b"\x00\x03\x00\x00" if draw(st.integers(0, 9)) == 0 else b""
            additional = b"\x00\x00\x29" + struct.pack(
                ">HIH", size, draw(st.sampled_from([0, 0x8000])), len(options)) + options
        shapes.append((parent, struct.pack(">HH", draw(st.sampled_from([1, 28, 16, 255, 99])),
                                           1), flags, additional))
    wires = []
    for _ in range(draw(st.integers(1, 40))):
        parent, question_end, flags, additional = draw(st.sampled_from(shapes))
        label = draw(FIRST_LABELS)
        wire = struct.pack(">HHHHHH", draw(st.integers(0, 0xFFFF)), flags, 1, 0, 0,
                           1 if additional else 0) \
            + bytes([len(label)]) + label + parent + question_end + additional
        if draw(st.integers(0, 19)) == 0:
            wire = wire[:draw(st.integers(0, len(wire)))]
        wires.append(wire)
    return wires


def by_kind(a: Answerer) -> dict[tuple[object, ...], int]:
    """Answers counted by everything but the path (a kept answer is no packet cache hit)."""
    out: dict[tuple[object, ...], int] = {}
    for (_, *kind), n in a.counts_by_label().items():
        out[tuple(kind)] = out.get(tuple(kind), 0) + n
    return out


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(ANSWERERS)), floods())
def test_kept_nxdomains_answer_as_the_full_path_does(variant: str, wires: list[bytes]) -> None:
    """Whatever came before, a query gets the bytes and the counters the full path gives it:
    kept answers (and the packet cache) change how fast, never what."""
    kept, full = twin(ANSWERERS[variant], 100), twin(ANSWERERS[variant], 0)
    for wire in wires:
        assert kept.answer(wire, 0) == full.answer(wire, 0)
    assert by_kind(kept) == by_kind(full)
    assert kept.truncated == full.truncated


@pytest.mark.parametrize("variant", sorted(ANSWERERS))
@pytest.mark.parametrize("parent", ["example.test", "www.example.test"])
def test_a_flood_is_answered_by_one_kept_nxdomain(variant: str, parent: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """200 new names under an existing parent, DO=1, their first labels of one length (a
    kept answer's pointers count on where the label ends): the full path answers the first
    only, signed answers carry their own name's proofs. Under a parent that does not exist,
    nothing is kept: random parents cannot fill the table."""
    a = twin(ANSWERERS[variant], 100)
    full = twin(ANSWERERS[variant], 0)
    lookups = []
    real = a._lookup

    def counted(*args: object) -> bytes | None:
        lookups.append(args)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(a, "_lookup", counted)
    for i in range(200):
        wire = dns.message.make_query(f"r{i:03d}x.{parent}", "A", want_dnssec=True).to_wire()
        assert a.answer(wire, 0) == full.answer(wire, 0)
    assert len(lookups) == 1
    assert a.table is not None and len(a.table.nxdomains) == 1
    for i in range(50):
        wire = dns.message.make_query(f"r{i}.nothere{i}.{parent}", "A").to_wire()
        assert a.answer(wire, 0) == full.answer(wire, 0)
    assert len(lookups) == 51 and len(a.table.nxdomains) == 1


@pytest.mark.parametrize("flags", [0x0500, 0x0300, 0x0900])  # AA, TC, opcode 1 (IQUERY)
def test_a_query_the_fast_path_leaves_to_the_slow_one_is_never_kept(flags: int) -> None:
    """Odd flags in a query (AA or TC set, another opcode) are the slow path's to answer: no
    kept answer is made from its reply, so each of a flood of them is counted slow."""
    a = twin(ANSWERER, 100)
    header = struct.pack(">HHHHHH", 7, flags, 1, 0, 0, 0)
    tail = dns.name.from_text("example.test").to_wire() + struct.pack(">HH", 1, 1)
    for i in range(30):
        label = f"r{i}x".encode()
        a.answer(header + bytes([len(label)]) + label + tail, 0)
    assert a.table is not None and not a.table.nxdomains
    paths = {path for path, *_ in a.counts_by_label()}
    assert paths == {"slow"}, a.counts_by_label()


def test_kept_nxdomains_are_bounded_by_the_cache_size() -> None:
    a = twin(ANSWERER, 10)
    for qtype in range(1000, 1100):
        a.answer(dns.message.make_query("nothere.example.test", qtype).to_wire(), 0)
    assert a.table is not None and len(a.table.nxdomains) == 10
    assert not twin(ANSWERER, 0).table.nxdomains  # type: ignore[union-attr]


def test_a_kept_nxdomain_makes_no_name_over_255_octets_and_no_root_name() -> None:
    """Under a parent of 200 octets, a label that makes the name too long is FORMERR, as the
    full path says; a query whose first octet is 0 (the root) with the kept key's octets
    after it is no name under the parent."""
    document = msgspec.to_builtins(CFG)
    long = ".".join(c * 48 for c in "pqrs")  # 4 labels, 196 octets, 210 with the origin
    document["zones"][0]["records"][long] = {"a": ["192.0.2.7"]}
    a = answerer(config.from_mapping(document))
    kept, full = twin(a, 100), twin(a, 0)
    parent = dns.name.from_text(f"{long}.example.test").to_wire()
    header = struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0)
    tail = parent + struct.pack(">HH", 1, 1)
    fits = header + b"\x05short" + tail
    assert dns.message.from_wire(kept.answer(fits, 0)).rcode() == dns.rcode.NXDOMAIN
    assert kept.table is not None and len(kept.table.nxdomains) == 1
    for wire in (header + b"\x30" + b"t" * 48 + tail, header + b"\x00" + tail, fits):
        assert kept.answer(wire, 0) == full.answer(wire, 0)


def test_a_name_asked_again_under_a_kept_nxdomain_goes_into_the_packet_cache() -> None:
    """A client repeating its NXDOMAIN query (right after itself under that parent) is served
    from the packet cache from then on; a flood, whose names never repeat, never is."""
    a = twin(ANSWERER, 100)
    assert a.table is not None
    first = dns.message.make_query("nothere.example.test", "A").to_wire()
    a.answer(first, 0)  # the full path: the NXDOMAIN is kept
    a.answer(first, 0)  # the kept answer, which sees it again
    assert not a.table.cache  # the first kept answer it gave: not yet
    a.answer(first, 0)
    assert list(a.table.cache) == [first[2:]]
    for i in range(100):
        a.answer(dns.message.make_query(f"r{i}.example.test", "A").to_wire(), 0)
    assert list(a.table.cache) == [first[2:]]
    hits = sum(a.cache_counts.values())
    assert a.answer(first, 0) == twin(ANSWERER, 0).answer(first, 0)
    assert sum(a.cache_counts.values()) == hits + 1
