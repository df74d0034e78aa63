"""DNSSEC figures: signing speed, and how fast a health change reaches responders, signed.

    python3 bench/dnssec.py [--names 10000] [--flips 10]

1. Signing: a zone of N names (one A RRset each) signed with ECDSA P-256 from scratch, as the
   signer does at start: the time to sign and render everything, and signatures per second.
2. Propagation: the real healthdns-supervisor serving that zone plus one health-checked pool;
   a backend on 127.0.0.1 is stopped and started `--flips` times. For each change the script
   reads, from the server's own log, when the prober saw it and when the last responder loaded
   the signed snapshot that follows, and checks on the wire that the answer is signed.
For DO=1 query throughput against Knot, see `bench/run.py --dnssec`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.query

from healthdns.shared import config
from healthdns.signer import keys
from healthdns.signer.main import Signer

STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\S+) \w+ (.*)$")


def zone_document(names: int, key: Path, port: int | None) -> dict[str, object]:
    records: dict[str, object] = {f"n{i:05d}": {"a": [f"192.0.{2 + i // 250 % 200}.{i % 250}"]}
                                  for i in range(names)}
    if port is not None:
        records["www"] = {"pool": {"addresses": ["127.0.0.1", "127.0.0.2"],
                                   "check": {"port": port, "interval": 0.2, "timeout": 0.1,
                                             "rise": 1, "fall": 1}}}
    return {"zones": [{"origin": "example.test", "nameservers": ["ns1.example.net"],
                       "dnssec": {"csk": str(key)}, "records": records}]}


def bench_signing(names: int, key: Path) -> None:
    cfg = config.from_mapping(zone_document(names, key, None))
    started = time.perf_counter()
    signer = Signer(cfg)
    published = signer.update({}, full=True)
    elapsed = time.perf_counter() - started
    assert published is not None
    zone_signer = signer.signers[0]
    assert zone_signer is not None
    count = zone_signer.signed
    print(f"signing: {names} names -> {count} signatures (A and NSEC RRsets, apex) "
          f"in {elapsed:.2f} s, rendering included: {count / elapsed:,.0f} signatures/s; "
          f"10,000 RRsets take {10000 / count * elapsed:.2f} s")
    started = time.perf_counter()
    again = signer.update({"unknown": True}, full=False)
    assert again is None
    clock = signer.now
    signer.now = lambda: clock() + 1
    signer.prints = [None]  # force a re-render with every signature cached
    started = time.perf_counter()
    signer.publish()
    print(f"re-render with all signatures cached: {time.perf_counter() - started:.2f} s")


def bench_propagation(names: int, key: Path, flips: int, tmp: Path) -> None:
    backend = socket.socket()
    backend.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    backend.bind(("127.0.0.1", 0))
    port = backend.getsockname()[1]
    backend.listen(64)
    toml = tmp / "healthdns.toml"
    toml.write_text(to_toml(zone_document(names, key, port)))
    command = [str(Path(sys.executable).parent / "healthdns-supervisor"),
               "--control-listen", "127.0.0.1:0", "--config", str(toml),
               "--listen", "127.0.0.1:0", "--responders", "2", "--log-level", "debug"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if "ready: serving" in line:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        if not ready.wait(120):
            raise SystemExit("healthdns did not become ready:\n" + "".join(lines[-20:]))
        dns_port = int(re.search(r"on 127\.0\.0\.1:(\d+)", "".join(lines)).group(1))  # type: ignore[union-attr]
        delays = []
        for flip in range(flips):
            mark = len(lines)
            if flip % 2 == 0:
                backend.close()
                want = "is down"
            else:
                backend = socket.socket()
                backend.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                backend.bind(("127.0.0.1", port))
                backend.listen(64)
                want = "is up"
            delays.append(wait_propagation(lines, mark, want))
            check_signed(dns_port)
        print(f"propagation ({names} names, signed, 2 responders): health change seen by the "
              f"prober -> loaded by every responder: median {statistics.median(delays):.0f} ms, "
              f"max {max(delays):.0f} ms over {flips} changes")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)
        backend.close()


def wait_propagation(lines: list[str], mark: int, want: str) -> float:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        seen = [stamp(x) for x in lines[mark:] if "prober" in x and want in x]
        if seen:
            generation = [int(m.group(1)) for x in lines[mark:]
                          if (m := re.search(r"signer\[\d+\] \w+ generation (\d+)", x))]
            if generation:
                loaded = [stamp(x) for x in lines[mark:]
                          if f"generation {generation[-1]} loaded" in x]
                if len(loaded) == 2:
                    return (max(loaded) - seen[0]).total_seconds() * 1000
        time.sleep(0.01)
    raise SystemExit(f"no propagation of '{want}' seen:\n" + "".join(lines[mark:][-20:]))


def stamp(line: str) -> datetime.datetime:
    found = STAMP.match(line)
    assert found, line
    return datetime.datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f")


def check_signed(port: int) -> None:
    query = dns.message.make_query("www.example.test", "A", want_dnssec=True)
    response = dns.query.udp(query, "127.0.0.1", port=port, timeout=2)
    assert any(r.rdtype == 46 for r in response.answer), response


def to_toml(document: dict[str, object]) -> str:
    zone = document["zones"][0]  # type: ignore[index]
    out = ["[[zones]]", 'origin = "example.test"', 'nameservers = ["ns1.example.net"]',
           "[zones.dnssec]", f'csk = "{zone["dnssec"]["csk"]}"']
    for name, record in zone["records"].items():
        out.append(f"[zones.records.{name}]")
        if "a" in record:
            out.append(f'a = ["{record["a"][0]}"]')
        else:
            pool = record["pool"]
            check = pool["check"]
            out.append('pool = { addresses = ["127.0.0.1", "127.0.0.2"], check = { port = '
                       f'{check["port"]}, interval = 0.2, timeout = 0.1, rise = 1, fall = 1 }} }}')
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--names", type=int, default=10000)
    parser.add_argument("--flips", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        key = tmp / "csk.pem"
        keys.write(keys.generate(keys.Algorithm.ECDSAP256SHA256), str(key))
        os.chmod(key, 0o600)
        bench_signing(args.names, key)
        bench_propagation(args.names, key, args.flips, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
