"""Location maps at the size of GeoLite2-Country: compile time, table memory, lookup cost.

    .venv/bin/python bench/geomap.py [--v4 250000] [--v6 150000] [--repeats 3] [--json PATH]

Generates a Country-model database (harness/geodata.py: about 400,000 networks in 10.0.0.0/8
and 2001:db8::/32, 250 countries with names in eight languages, runs of equal countries as
real databases have), then for two maps over five sites:

* ``regions``: a third of the countries by rule, the rest by continent (11 distinct orders:
  the merging a real deployment gets);
* ``countries``: every country its own order over 17 sites (250 orders: merging only within
  a country's runs, the worst case).

For each: the compile time (`geocompile.compile_map`, median of `--repeats`; targets <= 10 s), the
tables' bytes and their msgpack encoding, what a responder holds after decoding them (the
allocations of `msgspec` decode plus `GeoIndex`, traced; target <= 30 MiB), and ns per lookup
(`GeoIndex.find4`/`find6` on random addresses, best of `--repeats`, loop included; the bare
loop's cost is printed apart). For reference in the same run: `maxminddb`'s own iteration of
the file (what the compiler would cost walking with it) and its C `Reader.get` per address
(what a lookup per query would cost).
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import maxminddb
import msgspec
from harness import geodata

from healthdns.shared import geocompile, geomap, geotable

SITES = ("fra", "iad", "sin", "gru", "syd")
MANY = tuple(f"site{i:02}" for i in range(17))  # 272 ordered pairs: one per country


def maps(database: str) -> dict[str, geomap.GeoMap]:
    regional = []
    for i in range(len(geodata.COUNTRIES)):
        _, country = geodata.country_of(i)
        if i % 3 == 0:
            regional.append(geomap.GeoRule(country=country,
                                           sites=(SITES[i % 5], SITES[(i + 1) % 5])))
    for j, continent in enumerate(geodata.CONTINENT_NAMES):
        regional.append(geomap.GeoRule(continent=continent, sites=(SITES[j % 5],)))
    pairs = [(a, b) for a in MANY for b in MANY if a != b]
    per_country = [geomap.GeoRule(country=geodata.country_of(i)[1], sites=pairs[i])
                   for i in range(len(geodata.COUNTRIES))]
    return {"regions": geomap.GeoMap(database=database, rules=tuple(regional)),
            "countries": geomap.GeoMap(database=database, rules=tuple(per_country))}


def timed(action: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def held_after_decode(wire: bytes) -> int:
    """Bytes a responder allocates to decode the tables and build its index."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    table = msgspec.msgpack.decode(wire, type=geotable.GeoTable)
    index = geotable.GeoIndex(table)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del index, table
    return held


def per_call(function: Callable[[int], object], addresses: list[int], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for address in addresses:
            function(address)
        best = min(best, (time.perf_counter_ns() - start) / len(addresses))
    return best


def addresses(rng: random.Random, count: int) -> dict[str, list[int]]:
    ten = int(ipaddress.IPv4Address("10.0.0.0"))
    doc = int(ipaddress.IPv6Address("2001:db8::"))
    return {"v4 in 10/8": [ten + rng.getrandbits(24) for _ in range(count)],
            "v4 anywhere": [rng.getrandbits(32) for _ in range(count)],
            "v6 in 2001:db8::/32": [doc + rng.getrandbits(96) for _ in range(count)],
            "v6 anywhere": [rng.getrandbits(128) for _ in range(count)]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--v4", type=int, default=250_000)
    parser.add_argument("--v6", type=int, default=150_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lookups", type=int, default=200_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "country.mmdb"
        seconds, _ = timed(lambda: geodata.country_sized(path, args.v4, args.v6, args.seed))
        reader = maxminddb.open_database(str(path))
        iterate, count = timed(lambda: sum(1 for _ in reader))
        print(f"database: {count} networks, {path.stat().st_size >> 20} MiB, written in "
              f"{seconds:.1f} s; maxminddb iterates it in {iterate:.1f} s")
        results["database"] = {"networks": count, "bytes": path.stat().st_size,
                               "maxminddb_iteration_s": iterate}
        rng = random.Random(args.seed)
        samples = addresses(rng, args.lookups)
        for name, spec in maps(str(path)).items():
            names = SITES if name == "regions" else MANY
            sites = {site: geomap.Site() for site in names}
            results[name] = measure(name, spec, sites, samples, args.repeats)
        empty = per_call(lambda a: a, samples["v4 in 10/8"], args.repeats)
        get = per_call(lambda a: reader.get(ipaddress.IPv4Address(a)),
                       samples["v4 in 10/8"][:50_000], args.repeats)
        print(f"for reference: the bare loop {empty:.0f} ns; maxminddb Reader.get (C) with its "
              f"address object {get:.0f} ns")
        results["reference"] = {"loop_ns": empty, "maxminddb_get_ns": get}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def measure(name: str, spec: geomap.GeoMap, sites: dict[str, geomap.Site],
            samples: dict[str, list[int]], repeats: int) -> dict[str, object]:
    runs = [timed(lambda: geocompile.compile_map(spec, sites)) for _ in range(repeats)]
    compile_s = statistics.median(seconds for seconds, _ in runs)
    table = runs[-1][1]
    assert isinstance(table, geotable.GeoTable)
    wire = msgspec.msgpack.encode(table)
    held = held_after_decode(wire)
    decode_s, _ = timed(lambda: geotable.GeoIndex(msgspec.msgpack.decode(
        wire, type=geotable.GeoTable)))
    blocks4, blocks6 = len(table.v4_starts) // 4, len(table.v6_high) // 8
    print(f"{name}: compiled in {compile_s:.2f} s (median of {repeats}; "
          f"{', '.join(f'{s:.2f}' for s, _ in runs)}), {len(table.orders)} orders, "
          f"{blocks4} IPv4 + {blocks6} IPv6 blocks, {table.nbytes / 2**20:.2f} MiB of tables, "
          f"{len(wire) / 2**20:.2f} MiB encoded, {held / 2**20:.2f} MiB held after decode "
          f"({decode_s * 1000:.1f} ms)")
    index = geotable.GeoIndex(table)
    lookups = {}
    for kind, values in samples.items():
        find = index.find4 if kind.startswith("v4") else index.find6
        lookups[kind] = per_call(find, values, repeats)
    print("  ns per lookup: " + ", ".join(f"{k} {v:.0f}" for k, v in lookups.items()))
    return {"compile_s": compile_s, "orders": len(table.orders), "blocks_v4": blocks4,
            "blocks_v6": blocks6, "table_bytes": table.nbytes, "encoded_bytes": len(wire),
            "held_bytes": held, "decode_s": decode_s, "lookup_ns": lookups}


if __name__ == "__main__":
    sys.exit(main())
