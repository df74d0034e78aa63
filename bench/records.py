"""What listing each zone's records for transfers (#11) costs the signer.

    python3 bench/records.py [--names 10000] [--flips 20] [--denial nsec|nsec3]

A signed zone (ECDSA P-256) of N pooled names, each with two addresses checked on their own
target, is published by two signers in the same process: one without `[transfer]`, one with
it. Each does its first generation (everything signed), then `--flips` generations in which 1%
of the targets change state. Printed per signer: the first generation's time, the median and
worst flip generation (the signer's own `took`: render, sign and, with transfers, the records),
and the encoded sizes of the snapshot, the records and the records' delta of the last flip.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from healthdns.shared import config
from healthdns.signer import keys
from healthdns.signer.main import Signer


def document(names: int, key: Path, denial: str, transfer: bool) -> dict[str, Any]:
    records = {f"n{i:05d}": {"pool": {"addresses": [f"10.{i >> 8 & 255}.{i & 255}.1",
                                                    f"10.{i >> 8 & 255}.{i & 255}.2"],
                                      "check": {"port": 80}}}
               for i in range(names)}
    doc: dict[str, Any] = {"zones": [{"origin": "example.test",
                                      "nameservers": ["ns1.example.net"],
                                      "dnssec": {"csk": str(key), "denial": denial},
                                      "records": records}]}
    if transfer:
        doc["transfer"] = {"listen": ["127.0.0.1:5399"], "require_tsig": False}
    return doc


def targets(cfg: config.Config) -> list[str]:
    return sorted(cfg.checks())


def run(cfg: config.Config, flips: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)  # both signers see the same flips
    ids = targets(cfg)
    health = dict.fromkeys(ids, True)
    signer = Signer(cfg)
    began = time.perf_counter()
    published = signer.update(health, full=True)
    first = time.perf_counter() - began
    assert published is not None
    took: list[float] = []
    for _ in range(flips):
        for target in rng.sample(ids, max(1, len(ids) // 100)):
            health[target] = not health[target]
        published = signer.update(health, full=True) or published
        took.append(signer.took)
    return {"first": first, "median": statistics.median(took), "worst": max(took),
            "snapshot": len(published.snapshot), "records": len(published.records),
            "records_delta": len(published.records_delta)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=10000)
    parser.add_argument("--flips", type=int, default=20)
    parser.add_argument("--denial", choices=["nsec", "nsec3"], default="nsec")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "csk.pem"
        keys.write(keys.generate(keys.Algorithm.ECDSAP256SHA256), str(key))
        print(f"{args.names} signed names ({args.denial}), {args.flips} generations flipping "
              "1% of the targets each")
        print(f"{'transfers':<10} {'first s':>8} {'flip p50 ms':>12} {'flip max ms':>12} "
              f"{'snapshot B':>11} {'records B':>11} {'delta B':>9}")
        for transfer in (False, True):
            cfg = config.from_mapping(document(args.names, key, args.denial, transfer))
            r = run(cfg, args.flips, seed=1)
            print(f"{'on' if transfer else 'off':<10} {r['first']:>8.2f} "
                  f"{r['median'] * 1000:>12.1f} {r['worst'] * 1000:>12.1f} "
                  f"{r['snapshot']:>11} {r['records']:>11} {r['records_delta']:>9}")


if __name__ == "__main__":
    main()
