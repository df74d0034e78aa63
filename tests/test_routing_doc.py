"""docs/routing.md: its worked example is a valid configuration, and its table of clients says
what the map does with each (the map compiled as explain compiles it, over a database generated
with the locations the table gives)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
from test_geomap import geodata

from healthdns.shared import config
from healthdns.supervisor import explainmaps

DOC = Path(__file__).resolve().parent.parent / "docs" / "routing.md"
PLACE = "/var/lib/healthdns/GeoLite2-City.mmdb"


def example(tmp_path: Path) -> config.Config:
    text = DOC.read_text()
    block = re.search(r"<!-- config: routing.toml -->\n```toml\n(.*?)```", text, re.DOTALL)
    assert block is not None, "the worked example is marked <!-- config: routing.toml -->"
    db = geodata.write_mmdb(tmp_path / "geo.mmdb", [
        ("198.18.0.0/15", geodata.record("EU", "DE", ["HE"], "Frankfurt am Main", 3320, 50.1,
                                         8.7)),
        ("198.19.0.0/18", geodata.record("NA", "MX", latitude=19.4, longitude=-99.1)),
        ("198.51.100.0/24", geodata.record("AS", "JP", latitude=35.7, longitude=139.7))])
    path = tmp_path / "routing.toml"
    assert PLACE in block.group(1)
    path.write_text(block.group(1).replace(PLACE, str(db)))
    return config.load(path)


@pytest.mark.parametrize(("client", "entry", "order"), [
    ("198.18.7.0", "rules[0]", ("fra", "iad", "sin")),
    ("198.19.40.0", "rules[2]", ("iad", "sin", "fra")),
    ("198.51.100.0", "rules[3]", ("sin", "fra", "iad")),
    ("10.20.30.40", "networks[0].cidrs[0]", ("iad", "fra")),
    ("192.0.2.0", "default", ("fra", "iad")),
])
def test_each_client_of_the_table_gets_the_order_the_page_says(
        tmp_path: Path, client: str, entry: str, order: tuple[str, ...]) -> None:
    cfg = example(tmp_path)
    table = DOC.read_text().split("### What each client gets", 1)[1].split("\n\n", 2)[1]
    row = next(line for line in table.splitlines() if client.rsplit(".", 1)[0] in line)
    assert f"`{entry.split('.')[0]}`" in row and ", ".join(order) in row, row
    world = cfg.maps["world"]
    compiled = explainmaps.Maps().compiled("world", world.geo(), cfg.sites)
    found = compiled.locate(ipaddress.ip_address(client))
    assert (found.entry, found.order) == (f"maps.world.{entry}", order)


def test_the_example_pool_holds_each_sites_addresses(tmp_path: Path) -> None:
    cfg = example(tmp_path)
    pool = cfg.zones[0].records["www"].pool
    assert pool is not None and pool.map == "world"
    assert list(pool.sites) == ["fra", "iad", "sin"]
