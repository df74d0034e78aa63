#!/usr/bin/env python3
"""What one AXFR costs the transfer process in its own code (issue #11), in process: N AXFRs of
one zone state of `--names` signed-looking names, through `Transfers.answer` as a secondary asks
(unsigned: TSIG is the same work with or without the packing), the first apart from the rest.

Usage:
    .venv/bin/python bench/axfr_pack.py --names 10000 --axfrs 50

Each name has an A, its RRSIG, an NSEC and the NSEC's RRSIG (about 4 RRs a name, as a signed
zone from the signer); the signatures are random bytes of an ECDSA P-256 signature's length.
Imports healthdns: run it with the worktree's .venv.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from healthdns.shared import config, messages, tables
from healthdns.transfer.answer import Transfers

ORIGIN = b"\x07example\x04test\x00"


def rr(owner: bytes, rdtype: int, rdata: bytes) -> bytes:
    return owner + rdtype.to_bytes(2, "big") + b"\x00\x01" + (300).to_bytes(4, "big") \
        + len(rdata).to_bytes(2, "big") + rdata


def rrsig(covered: int) -> bytes:
    return (covered.to_bytes(2, "big") + b"\x0d\x03" + (300).to_bytes(4, "big")
            + (2_000_000_000).to_bytes(4, "big") + (1_900_000_000).to_bytes(4, "big")
            + b"\x30\x39" + ORIGIN + os.urandom(64))


def zone(names: int) -> tables.ZoneRecords:
    soa = rr(ORIGIN, 6, b"\x03ns1" + ORIGIN + b"\x0ahostmaster" + ORIGIN
             + b"".join(v.to_bytes(4, "big") for v in (7, 3600, 600, 86400, 60)))
    owners: dict[bytes, list[bytes]] = {ORIGIN: [rr(ORIGIN, 2, b"\x03ns1" + ORIGIN)]}
    for i in range(names):
        owner = bytes([6]) + b"s%05d" % i + ORIGIN
        after = bytes([6]) + b"s%05d" % (i + 1) + ORIGIN
        owners[owner] = [rr(owner, 1, bytes([192, 0, 2, i % 250 + 1])), rr(owner, 46, rrsig(1)),
                         rr(owner, 47, after + b"\x00\x06\x40\x00\x00\x00\x00\x03"),
                         rr(owner, 46, rrsig(47))]
    return tables.ZoneRecords(ORIGIN, 7, soa, owners)


def query(qid: int) -> bytes:
    return (qid.to_bytes(2, "big") + b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"
            + ORIGIN + b"\x00\xfc\x00\x01")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--names", type=int, default=10000)
    p.add_argument("--axfrs", type=int, default=50)
    args = p.parse_args()
    spec = config.from_mapping({
        "server": {"listen": ["127.0.0.1:0"]},
        "transfer": {"listen": ["127.0.0.1:0"], "require_tsig": False,
                     "allow": [{"networks": ["127.0.0.1/32"]}]},
        "zones": [{"origin": "example.test", "nameservers": ["ns1.example.test"]}]}).transfer
    served = Transfers(spec, [])
    served.store.load(messages.Records(1, [zone(args.names)]))
    times = []
    for n in range(args.axfrs + 1):
        start = time.process_time()
        sent = list(served.answer(query(n + 1), "127.0.0.1"))
        times.append(time.process_time() - start)
    size = sum(map(len, sent))
    print(f"{args.names} names, {len(sent)} messages, {size} octets")
    print(f"first AXFR of the state: {times[0] * 1e3:.2f} ms CPU")
    print(f"next {args.axfrs}: median {statistics.median(times[1:]) * 1e3:.2f} ms CPU "
          f"(min {min(times[1:]) * 1e3:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
