"""Response Rate Limiting and cookies: what they save in a reflection flood, what they cost.

Two experiments against healthdns on loopback:

* reflection: a spoofed-source flood, played by one UDP socket (the "victim") sending the same
  query at a steady rate; the answers and octets that reach the victim with RRL off and on
  (the recommended `responses_per_second = 5`, slip 2);
* per-query CPU: the standard mix's queries answered in-process by one responder's code path
  (`Answerer.answer`, or `Guard.answer` with cookies, or with RRL too), the best of several
  interleaved runs: the cost with the machine's noise taken out;
* cost: the standard query mix of `harness/queries.py` through dnsperf, with cookies and RRL
  off (the address-free fast path), with the defaults (cookies on), and with RRL on but never
  triggered (a limit far above the load), in turns; median queries per second and the ratio
  to the first.

    .venv/bin/python bench/rrl.py --seconds 5 --rounds 3
"""

from __future__ import annotations

import argparse
import random
import selectors
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dns.message
from harness import HOST, BenchError
from harness.dnsperf import run_dnsperf
from harness.queries import query_mix
from harness.servers import Server, free_port, healthdns_command
from harness.zone import ZONE, Zone

VARIANTS = {  # label -> configuration added to the standard zone's
    "cookies off, RRL off": "[cookies]\nenabled = false\n",
    "defaults (cookies on)": "",
    "RRL on, not triggered": "[rrl]\nresponses_per_second = 1000000\n",
}
REFLECTION = {"RRL off": "", "RRL on (rate 5, slip 2)": "[rrl]\nresponses_per_second = 5\n"}


def start(label: str, extra: str, zone: Zone, root: Path, rng: random.Random,
          taken: set[int]) -> Server:
    port = free_port(taken, rng)
    workdir = root / label.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
    workdir.mkdir()
    toml = zone.healthdns_toml(port, 2)
    # The extra sections go before [[zones]]: top-level tables after it would nest in it.
    head, _, zones = toml.partition("[[zones]]")
    (workdir / "healthdns.toml").write_text(f"{head}{extra}\n[[zones]]{zones}")
    command = healthdns_command(None)
    if command is None:
        raise BenchError("healthdns-supervisor not found")
    server = Server(label, "healthdns", [command, "--config", str(workdir / "healthdns.toml"),
                                         "--log-level", "info",
                                         "--control-listen", "127.0.0.1:0"],
                    port, workdir, ready_line="ready: serving", responders=2)
    server.start(60)
    return server


def reflect(server: Server, rate: int, seconds: float) -> tuple[int, int, int, int]:
    """(queries sent, full answers, truncated answers, octets received) for a flood at
    `rate` a second."""
    query = dns.message.make_query(f"www.{ZONE}", "A", use_edns=0).to_wire()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.bind((HOST, 0))
    sent = answers = truncated = octets = 0
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        began = time.monotonic()
        while (now := time.monotonic()) - began < seconds + 0.5:
            due = int((now - began) * rate) if now - began < seconds else sent
            while sent < due:
                sock.sendto(query, (HOST, server.port))
                sent += 1
            for _ in selector.select(0.001):
                data = sock.recv(65535)
                if data[2] & 0x02:  # TC
                    truncated += 1
                else:
                    answers += 1
                octets += len(data)
    sock.close()
    return sent, answers, truncated, octets


def cost(args: argparse.Namespace, root: Path, zone: Zone, rng: random.Random) -> None:
    queries = root / "queries.txt"
    queries.write_text("".join(f"{name} {rtype}\n" for _, name, rtype in query_mix(zone, rng)))
    taken: set[int] = set()
    servers = [start(label, extra, zone, root, rng, taken) for label, extra in VARIANTS.items()]
    load = argparse.Namespace(seconds=args.seconds, clients=8, threads=2, outstanding=500,
                              edns=False, dnssec=False)
    qps: dict[str, list[float]] = {s.label: [] for s in servers}
    try:
        for round_no in range(args.rounds):
            for server in servers:  # in turns: the machine's noise falls on all alike
                qps[server.label].append(run_dnsperf(server, queries, load, round_no,
                                                     root).qps)
    finally:
        for server in servers:
            server.stop()
    base = statistics.median(qps[servers[0].label])
    print("\nstandard mix, dnsperf -c 8 -T 2 -q 500, 2 responders "
          f"({args.rounds} rounds of {args.seconds:g} s, medians)")
    for label, values in qps.items():
        median = statistics.median(values)
        print(f"  {label:26s} {median:10.0f} q/s  {median / base:5.3f}x")


def reflection(args: argparse.Namespace, root: Path, zone: Zone,
               rng: random.Random) -> None:
    print(f"\nreflection: one victim address, {args.flood_rate} queries/s for "
          f"{args.flood_seconds:g} s")
    results = {}
    taken: set[int] = set()
    for label, extra in REFLECTION.items():
        server = start(label, extra, zone, root, rng, taken)
        try:
            results[label] = reflect(server, args.flood_rate, args.flood_seconds)
        finally:
            server.stop()
    off = results["RRL off"]
    for label, (sent, answers, truncated, octets) in results.items():
        print(f"  {label:24s} sent {sent:6d}  answers {answers:6d}  TC {truncated:5d}  "
              f"octets {octets:8d}  answers cut by {1 - answers / max(1, off[1]):6.1%}, "
              f"octets by {1 - octets / max(1, off[3]):6.1%}")


def per_query(args: argparse.Namespace, zone: Zone, rng: random.Random) -> None:
    import timeit

    import msgspec

    from healthdns.responder import guard
    from healthdns.responder.query import Answerer
    from healthdns.responder.table import Table
    from healthdns.shared import config, messages
    from healthdns.signer.main import Signer

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "zone.toml"
        path.write_text(zone.healthdns_toml(53, 1))
        cfg = config.load(path)
    published = Signer(cfg).update({}, full=True)
    assert published is not None
    answerer = Answerer(1232)
    answerer.table = Table(messages.decode_to_child(published.snapshot))  # type: ignore[arg-type]
    wires = [dns.message.make_query(name, rtype, use_edns=0).to_wire()
             for _, name, rtype in query_mix(zone, rng)]
    client = bytes([127, 0, 0, 1])
    plain = msgspec.structs.replace(cfg, cookies=config.CookieSpec(enabled=False))
    rrl_on = msgspec.structs.replace(cfg, rrl=config.RrlSpec(responses_per_second=1_000_000))
    paths = {"cookies off, RRL off": lambda w: answerer.answer(w, False)}
    for label, variant in (("defaults (cookies on)", cfg), ("RRL on, not triggered", rrl_on)):
        made = guard.build(answerer, variant, b"s" * 32, "")
        assert made is not None
        every = made.limiter is not None

        def path(w: bytes, g: guard.Guard = made, every: bool = every) -> bytes | None:
            # as the recvmmsg loop does: cookies alone see queries with an additional record
            if every or w[11:12] > b"\x00" and w[-11:-8] != b"\x00\x00\x29":
                return g.answer(w, False, client)
            return answerer.answer(w, False)

        paths[label] = path
    assert guard.build(answerer, plain, b"", "") is None  # the first: no guard at all
    best = {label: float("inf") for label in paths}
    for _ in range(args.micro_repeats):
        for label, answer in paths.items():  # interleaved: noise falls on all alike
            seconds = timeit.timeit(lambda a=answer: [a(w) for w in wires], number=20)
            best[label] = min(best[label], seconds / (20 * len(wires)))
    base = best["cookies off, RRL off"]
    print(f"\nper query, in process ({len(wires)} queries of the standard mix, UDP, "
          f"best of {args.micro_repeats})")
    for label, seconds in best.items():
        print(f"  {label:26s} {seconds * 1e9:7.0f} ns  +{seconds / base - 1:6.1%}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=5.0, help="dnsperf -l per run (default 5)")
    p.add_argument("--rounds", type=int, default=3, help="turns per variant (default 3)")
    p.add_argument("--flood-rate", type=int, default=2000, help="flood queries/s (default 2000)")
    p.add_argument("--flood-seconds", type=float, default=3.0, help="flood length (default 3)")
    p.add_argument("--micro-repeats", type=int, default=7, help="in-process runs (default 7)")
    p.add_argument("--skip-cost", action="store_true", help="leave out the dnsperf runs")
    args = p.parse_args()
    rng = random.Random(1)
    zone = Zone(0)
    with tempfile.TemporaryDirectory(prefix="healthdns-rrl-") as tmp:
        root = Path(tmp)
        reflection(args, root, zone, rng)
        per_query(args, zone, rng)
        if not args.skip_cost:
            cost(args, root, zone, rng)
    return 0


if __name__ == "__main__":
    sys.exit(main())
