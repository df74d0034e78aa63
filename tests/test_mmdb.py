"""The search tree walk of MaxMind DB files (`shared/mmdb.py`): the same networks, in the same
order, as `maxminddb`'s own iteration, on files from both of tests/geodata.py's writers; the
aliases of the IPv4 subtree skipped."""

from __future__ import annotations

import ipaddress
import tempfile
from pathlib import Path
from typing import Any

import maxminddb
from harness import bench_module
from hypothesis import given, settings
from hypothesis import strategies as st

from healthdns.shared import mmdb

geodata = bench_module("harness/geodata.py", "geodata")  # shared with bench/geomap.py

COUNTRIES = ("DE", "US", "JP")


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([4, 6]), st.lists(st.tuples(st.integers(0, 2**32 - 1),
                                                   st.integers(8, 32)), max_size=40),
       st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(16, 128)), max_size=20))
def test_the_tree_walk_finds_what_maxminddb_iterates_from_both_writers(
        version: int, fours: list[tuple[int, int]], sixes: list[tuple[int, int]]) -> None:
    networks: list[Any] = []
    for start, length in fours:
        networks.append(ipaddress.IPv4Network((start >> (32 - length) << (32 - length), length)))
    if version == 6:
        for start, length in sixes:
            high = (0x20010DB8 << 96 | start << 32) >> (128 - length) << (128 - length)
            networks.append(ipaddress.IPv6Network((high, length)))
    disjoint: list[Any] = []
    for network in sorted(networks, key=lambda n: (n.version, int(n.network_address))):
        if not disjoint or disjoint[-1].version != network.version \
                or not disjoint[-1].overlaps(network):
            disjoint.append(network)
    contents = [geodata.record(country=COUNTRIES[i % len(COUNTRIES)], asn=64500 + i)
                for i in range(len(disjoint))]
    with tempfile.TemporaryDirectory() as directory:
        one = geodata.write_mmdb(Path(directory) / "one.mmdb",
                                 [(str(n), c) for n, c in zip(disjoint, contents, strict=True)],
                                 ip_version=version)
        two = geodata.write_sorted(Path(directory) / "two.mmdb",
                                   [(n, i) for i, n in enumerate(disjoint)], contents,
                                   ip_version=version)
        walked = [walk(path) for path in (one, two)]
        iterated = [[(n.version, int(n.network_address), n.prefixlen, r)
                     for n, r in maxminddb.open_database(str(path))] for path in (one, two)]
    expected = [(n.version, int(n.network_address), n.prefixlen, c)
                for n, c in zip(disjoint, contents, strict=True)]
    assert walked[0] == walked[1] == iterated[0] == iterated[1] == expected


def walk(path: Path) -> list[tuple[int, int, int, Any]]:
    reader = maxminddb.open_database(str(path))
    meta = reader.metadata()
    out = []
    for leaf in mmdb.networks(path.read_bytes(), mmdb.Shape(meta.node_count, meta.record_size,
                                                            meta.ip_version)):
        address = ipaddress.ip_address(leaf.start) if leaf.version == 4 else \
            ipaddress.IPv6Address(leaf.start)
        out.append((leaf.version, leaf.start, leaf.length, reader.get(address)))
    return out


def test_the_walk_skips_the_aliases_of_the_ipv4_subtree(tmp_path: Path) -> None:
    path = geodata.write_sorted(tmp_path / "alias.mmdb",
                                [(ipaddress.ip_network("192.0.2.0/24"), 0)],
                                [geodata.record("EU", "DE")])
    data = bytearray(path.read_bytes())
    meta = maxminddb.open_database(str(path)).metadata()
    # Point ::ffff:0:0/96 at the node of ::/96, as MaxMind's databases do: follow 80 zero
    # bits, then 16 one bits, and make the 96th record the ::/96 node.
    node, v4_node = 0, 0
    for _ in range(96):
        v4_node = int.from_bytes(data[v4_node * 8:v4_node * 8 + 4], "big")
    for bit in range(95):
        left, right = (int.from_bytes(data[node * 8 + i:node * 8 + i + 4], "big") for i in (0, 4))
        nxt = right if bit >= 80 else left
        if nxt == meta.node_count:
            break
        node = nxt
    assert bit == 80  # the tree has no ::ffff: branch: the alias goes at depth 81
    data[node * 8 + 4:node * 8 + 8] = v4_node.to_bytes(4, "big")
    path.write_bytes(bytes(data))
    assert [n for n, _ in maxminddb.open_database(str(path))] == \
        [ipaddress.ip_network("192.0.2.0/24")]
    assert [(leaf.version, leaf.length) for leaf in mmdb.networks(
        bytes(data), mmdb.Shape(meta.node_count, 32, 6))] == [(4, 24)]
