"""Fuzz the responder's query parser: random and mutated packets through both paths.

    python3 bench/fuzz.py --count 1000000 [--seed N]

Every input goes through the fast path and the slow path of a real `Answerer` loaded with a
real snapshot; the script fails on any exception, on any disagreement between the paths, on
any UDP response larger than the client allows (512 octets without EDNS, else the lesser of its
size and ours, at least 512), and on any response (sampled) that dnspython cannot parse. One
input in five is a long or odd question name (up to 4,000 octets, other label types) under
our zone. Prints the counts by outcome.
"""

from __future__ import annotations

import argparse
import collections
import random
import struct
import sys
import time

import dns.exception
import dns.message

from healthdns.responder.query import Answerer
from healthdns.responder.table import Table
from healthdns.shared import config, messages
from healthdns.signer.main import Signer

CFG = config.from_mapping({"zones": [{
    "origin": "example.test", "aliases": ["example.org"], "nameservers": ["ns1.example.net"],
    "records": {
        "www": {"a": ["192.0.2.1", "192.0.2.2"], "aaaa": ["2001:db8::1"]},
        "big": {"txt": [f'"{i:03d} {"x" * 96}"' for i in range(20)]},
        "alias": {"cname": "www"}, "a.b": {"txt": ['"deep"']},
    },
}]})

SEEDS = [
    dns.message.make_query(name, rdtype, use_edns=edns, want_dnssec=do).to_wire()
    for name in ("www.example.test", "big.example.test", "nothere.example.org", "a.example.test",
                 "alias.example.test", "www.example.com")
    for rdtype in ("A", "AAAA", "TXT", "ANY", "MX")
    for edns, do in ((False, False), (0, False), (0, True))
]


def mutate(rng: random.Random, wire: bytes) -> bytes:
    data = bytearray(wire)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        if op == 0 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 1 and data:
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        elif op == 2:
            data[rng.randrange(len(data) + 1):] = b""
        elif op == 3:
            i = rng.randrange(len(data) + 1)
            data[i:i] = rng.randbytes(rng.randint(1, 8))
        elif op == 4 and len(data) > 12:
            i = rng.randrange(4, 12)  # counts
            data[i] = rng.choice([0, 1, 2, 255])
        else:
            i = rng.randrange(len(data) + 1)
            data[i:i] = b"\xc0" + bytes([rng.randrange(256)])  # a compression pointer
    return bytes(data)


def long_name(rng: random.Random) -> bytes:
    """A question under our zone with many labels, some over 63 octets or of other types."""
    limit = rng.choice([250, 260, 600, 4000])
    prefix = b""
    while len(prefix) < limit:
        size = rng.choice([1, 1, 2, 63, rng.randint(1, 63), 0x40, 0x7F, 0x81, 0xC0])
        prefix += bytes([size]) + b"a" * (size & 0x3F)
    edns = b""
    if rng.random() < 0.5:
        edns = b"\x00\x00\x29" + struct.pack(">HIH", rng.choice([0, 512, 1232, 65535]), 0, 0)
    header = struct.pack(">HHHHHH", rng.randrange(65536), 0, 1, 0, 0, 1 if edns else 0)
    return header + prefix + b"\x03www\x07example\x04test\x00\x00\x01\x00\x01" + edns


def allowed(wire: bytes, response: bytes, ours: int) -> int:
    """The largest UDP response the client takes, read with dnspython, not our parser: 512
    when our response carries no OPT, else the lesser of the client's size (ours when
    dnspython cannot read the query) and ours, at least 512 (RFC 6891 6.2.5)."""
    if len(response) <= 512:
        return 512  # within every limit: no need to parse
    if dns.message.from_wire(response, ignore_trailing=True).edns < 0:
        return 512
    try:
        client = dns.message.from_wire(wire, ignore_trailing=True).payload
    except dns.exception.DNSException:
        client = ours
    return min(ours, max(512, client))


def inputs(rng: random.Random, count: int) -> collections.abc.Iterator[bytes]:
    for n in range(count):
        kind = n % 5
        if kind == 4:
            yield long_name(rng)
        elif kind == 0:
            yield rng.randbytes(rng.randint(0, 600))
        elif kind == 1:
            header = struct.pack(">HHHHHH", rng.randrange(65536), rng.randrange(65536), 1, 0, 0,
                                 rng.randrange(3))
            yield header + rng.randbytes(rng.randint(0, 80))
        else:
            yield mutate(rng, rng.choice(SEEDS))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--parse-every", type=int, default=50,
                        help="check every Nth response with dnspython")
    args = parser.parse_args()
    published = Signer(CFG).update({}, full=True)
    assert published is not None
    answerer = Answerer(1232, b"fuzz")
    answerer.table = Table(messages.decode_to_child(published.snapshot))  # type: ignore[arg-type]
    rng = random.Random(args.seed)
    outcomes: collections.Counter[str] = collections.Counter()
    started = time.monotonic()
    for n, wire in enumerate(inputs(rng, args.count)):
        for tcp in (True, False):  # UDP last: `fast` is the UDP response below
            try:
                fast = answerer.answer(wire, tcp)
                slow = answerer.slow(wire, tcp)
            except Exception:
                print(f"input {n} raised: {wire.hex()}", file=sys.stderr)
                raise
            if fast != slow:
                print(f"input {n}: paths disagree (tcp={tcp}): {wire.hex()}", file=sys.stderr)
                return 1
        if fast is not None and len(fast) > allowed(wire, fast, answerer.payload_size):
            print(f"input {n}: {len(fast)} octets over UDP, more than the client allows: "
                  f"{wire.hex()}", file=sys.stderr)
            return 1
        if fast is None:
            outcomes["no reply"] += 1
            continue
        outcomes[f"rcode {fast[3] & 0x0F}"] += 1
        if n % args.parse_every == 0 and (fast[2] >> 3) & 0x0F == 0:
            try:
                dns.message.from_wire(fast)
            except dns.exception.DNSException as e:
                print(f"input {n}: unparseable response ({e}): {fast.hex()}", file=sys.stderr)
                return 1
    elapsed = time.monotonic() - started
    print(f"{args.count} inputs (x2: UDP and TCP limits) in {elapsed:.1f} s, none raised, "
          f"fast and slow paths agreed on all, no UDP response over the client's size")
    for outcome, count in sorted(outcomes.items()):
        print(f"  {outcome:10} {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
