"""The benchmarks' library: what every script in bench/ shares.

zone: the zone every server serves, in each server's format; queries: the query mix;
servers: starting, checking and stopping one server process (any kind, ready when it answers);
supervisor: a healthdns-supervisor followed by its log lines; kinds: each server kind's
configuration (healthdns, gdnsd, Knot, a-healthy-dns); procfs: readings of /proc; answers:
the answer check against the reference servers; dnsperf: running it and reading its output;
report: the tables; scrape: the cost of scraping /metrics; backend: a checked TCP backend;
geodata: MaxMind DB files; geoclients: clients in many places asked in batches (ECS);
georigs: one location map written for healthdns, gdnsd's geoip plugin and unbound; ecscache:
the queries an ECS-caching unbound lets through to healthdns. The tests load backend,
geodata and geoclients too (tests/harness.py's `bench_module`). Stdlib only but geodata (mmdb-writer and netaddr, in the test extras);
imports nothing from healthdns or tests/.
"""

from __future__ import annotations

from pathlib import Path

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent.parent
EXIT_START = 2
EXIT_STRICT = 1


class BenchError(Exception):
    """A failure that ends the run: the message says what and includes the evidence."""


class Interrupted(Exception):
    """SIGTERM or SIGINT: stop the servers and leave."""


def log(text: str) -> None:
    print(f"[bench] {text}", flush=True)

