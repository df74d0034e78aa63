#!/usr/bin/env python3
"""What deciding health from several sites costs one instance: the verdict over every target
and the size of the reports, for `--targets` targets and `--vantages` vantages.

Usage:
    .venv/bin/python bench/peers_verdict.py                      # 10,000 targets x 3
    .venv/bin/python bench/peers_verdict.py --targets 2000 --vantages 5

Measured (median of `--rounds`):
  combine   one verdict over every target (`peers.verdict.combine`, `Steady.step`, `settle`):
            the peers process computes one on every report that changes a view, on every
            change of the fresh vantages, and when a steadied flip falls due;
  sign      encoding and signing one whole report (`peers.wire.encode`);
  judge     checking and decoding one (`peers.wire.judge`);
  bytes     one whole report's body (sent when a peer's copy is out of step), and one
            heartbeat's (a report of no changes: every `interval` to every peer).
            bench/peers_sites.py measures the traffic between running instances.

Prints one line per figure. Needs the dev install.
"""

from __future__ import annotations

import argparse
import statistics
import time

from healthdns.peers import sync, verdict, wire


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--vantages", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    targets = [f"tcp 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255} 443 1/1/2/2"
               for i in range(args.targets)]
    now = time.monotonic()
    views = {f"site-{v}": verdict.Vantage({t: (i + v) % 7 != 0 for i, t in enumerate(targets)},
                                          now) for v in range(args.vantages)}
    own = dict(views["site-0"].states)

    steady = verdict.Steady(2, 2, 10.0, 1.0)

    def combine() -> None:
        raw = verdict.combine(views, own, now, 3.0, "majority", args.vantages // 2 + 1)
        verdict.settle(steady.step(raw, now), own, own, "keep")

    secret = b"s" * 32
    report = wire.Report("site-1", time.time(), own,
                         digest=sync.to_bytes(sync.digest(own)))
    body, signature = wire.encode(report, secret)

    def sign() -> None:
        wire.encode(wire.Report("site-1", time.time(), own), secret)

    def judge() -> None:
        wire.judge(body, signature, "site-1", secret, report.sent, 10.0, 0.0)

    for name, work in (("combine", combine), ("sign", sign), ("judge", judge)):
        print(f"{name:8} {median_ms(work, args.rounds):8.2f} ms  "
              f"({args.targets} targets x {args.vantages} vantages)")
    box = sync.Outbox()
    box.answered(report, {}, 204)  # the peer holds the view: what follows is the heartbeat
    beat = box.report("site-1", time.time(), sync.Tally.of(own), False, secret)[1]
    print(f"bytes    {len(body):8d}     one whole report")
    print(f"bytes    {len(beat):8d}     one heartbeat; at interval 1 s, "
          f"{len(beat)} B/s to each peer (and the HTTP and TLS around it)")


def median_ms(work: object, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


if __name__ == "__main__":
    main()
