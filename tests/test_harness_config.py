"""tests/harness.py's configuration builder: what it renders reads back as the same values,
and its defaults give a server that starts."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

from harness import Server, config_toml, render_toml
from hypothesis import given
from hypothesis import strategies as st

KEYS = st.text(max_size=8)
SCALARS = (st.booleans() | st.integers(-2**63, 2**63 - 1) | st.text(max_size=12)
           | st.floats(allow_nan=False))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(KEYS, inner, max_size=3), max_leaves=12)
TABLES = st.recursive(st.dictionaries(KEYS, VALUES, max_size=4),
                      lambda inner: st.dictionaries(KEYS, inner | st.lists(inner, min_size=1,
                                                                           max_size=2),
                                                    max_size=3), max_leaves=8)


@given(TABLES)
def test_tomllib_reads_back_what_was_rendered(document: dict[str, Any]) -> None:
    assert tomllib.loads(render_toml(document)) == document


def test_infinities_and_awkward_strings_round_trip() -> None:
    document = {"a.b": {"": [math.inf, -math.inf, 1e300, -0.0]}, "s": "\x7f\x00\"\\\n\u00e9",
                "t": [{"x": 1}, {"y": {"z": []}}]}
    assert tomllib.loads(render_toml(document)) == document


def test_the_defaults_merge_with_what_a_test_gives() -> None:
    document = tomllib.loads(config_toml({"www": {"a": ["192.0.2.1"]}}, zone={"ttl": 30},
                                         server={"responders": 2}, prober={"parallel": 4}))
    assert document == {
        "server": {"listen": ["127.0.0.1:0"], "responders": 2},
        "prober": {"parallel": 4},
        "zones": [{"origin": "example.test", "nameservers": ["ns1.example.net"], "ttl": 30,
                   "records": {"www": {"a": ["192.0.2.1"]}}}],
    }


def test_none_leaves_a_key_out_and_drops_a_default() -> None:
    document = tomllib.loads(config_toml(server={"responders": None},
                                         control={"token": None, "listen": "127.0.0.1:0"},
                                         rrl={"slip": None}))
    assert document["server"] == {"listen": ["127.0.0.1:0"]}
    assert document["control"] == {"listen": "127.0.0.1:0"}
    assert document["rrl"] == {}
    assert tomllib.loads(render_toml({"a": {"b": {"c": None, "d": 1}}})) == {"a": {"b": {"d": 1}}}


def test_a_server_starts_on_the_defaults(tmp_path: Path) -> None:
    server = Server([], tmp_path, config_toml({"www": {"a": ["192.0.2.1"]}})).start()
    try:
        assert server.addresses("www.example.test") == {"192.0.2.1"}
    finally:
        assert server.stop() == 0
