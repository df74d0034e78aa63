"""Geo configuration errors, table-driven: `[sites]`, `[maps]`, a pool's `map` and `sites`,
and a map's database file (unreadable, not a MaxMind DB, truncated), each naming the field."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from harness import bench_module

from healthdns.shared import config
from healthdns.shared.errors import ConfigError

geodata = bench_module("harness/geodata.py", "geodata")
CHECK = {"port": 80}


def document(**changes: Any) -> dict[str, Any]:
    """Two sites, a map of networks, a geo pool; `changes` replace top-level keys, or the
    pool's (keys starting with `pool_`)."""
    pool: dict[str, Any] = {"map": "world", "check": CHECK,
                            "sites": {"fra": {"addresses": ["192.0.2.10", "192.0.2.11"]},
                                      "iad": {"groups": [{"addresses": ["198.51.100.10"]}]}}}
    doc: dict[str, Any] = {
        "sites": {"fra": {"latitude": 50.11, "longitude": 8.68}, "iad": {}},
        "maps": {"world": {"default": ["fra", "iad"],
                           "networks": [{"cidrs": ["10.1.0.0/16"], "sites": ["iad", "fra"]}]}},
        "zones": [{"origin": "example.test", "nameservers": ["ns1.example.net"],
                   "records": {"www": {"pool": pool}}}],
    }
    for key, value in changes.items():
        if key.startswith("pool_"):
            if value is None:
                pool.pop(key[5:], None)
            else:
                pool[key[5:]] = value
        else:
            doc[key] = value
    return copy.deepcopy(doc)


def test_a_geo_pool_is_normalised_per_site_and_whole() -> None:
    cfg = config.from_mapping(document())
    pool = cfg.zones[0].records["www"].pool
    assert pool is not None and pool.map == "world"
    assert [g.addresses for g in pool.sites["fra"].groups] == [("192.0.2.10", "192.0.2.11")]
    assert [g.addresses for g in pool.sites["iad"].groups] == [("198.51.100.10",)]
    # Every site's groups, in site order: what the prober checks and the status lists.
    assert [g.addresses for g in pool.groups] == [("192.0.2.10", "192.0.2.11"),
                                                  ("198.51.100.10",)]
    assert all(g.check is not None and g.check.port == 80 for g in pool.groups)
    assert cfg.maps["world"].check_interval == 60.0
    assert list(cfg.sites) == ["fra", "iad"]


CASES = [
    (document(pool_map="europe"),
     "zones[0].records.www.pool.map: 'europe' is not a map (maps: world)"),
    (document(pool_sites={"fra": {"addresses": ["192.0.2.10"]},
                          "sin": {"addresses": ["192.0.2.20"]}}),
     "zones[0].records.www.pool.sites.sin: 'sin' is not a site (sites: fra, iad)"),
    (document(pool_addresses=["192.0.2.30"]),
     ("zones[0].records.www.pool.addresses: a pool with sites holds its addresses per site: "
     "give them under sites.NAME, not here")),
    (document(pool_groups=[{"addresses": ["192.0.2.30"]}]),
     ("zones[0].records.www.pool.groups: a pool with sites holds its addresses per site: "
     "give them under sites.NAME, not here")),
    (document(pool_sites=None),
     ("zones[0].records.www.pool.sites: a pool with a map ('world') needs its addresses per "
     "site: [...pool.sites.NAME]")),
    (document(pool_map=None),
     "zones[0].records.www.pool.map: a pool with sites needs a map to order them"),
    (document(pool_sites={"fra": {"addresses": ["192.0.2.10"]},
                          "iad": {"addresses": ["192.0.2.10"]}}),
     "zones[0].records.www.pool.sites.iad.addresses[0]: 192.0.2.10 is given twice"),
    (document(pool_sites={"fra": {"addresses": []}}),
     "zones[0].records.www.pool.sites.fra.addresses: at least one address is required"),
    (document(pool_sites={"fra": {"addresses": ["192.0.2.10"], "groups": [
        {"addresses": ["192.0.2.11"]}]}}),
     ("zones[0].records.www.pool.sites.fra.addresses: give either addresses (one group) or "
     "groups, not both")),
    (document(pool_sites={"fra": {"adresses": ["192.0.2.10"]}}),
     "zones[0].records.www.pool.sites.fra.adresses: unknown key; did you mean 'addresses'?"),
    (document(maps={"world": {"default": ["fra", "sin"]}}),
     "maps.world.default[1]: 'sin' is not a site (sites: fra, iad)"),
    (document(maps={"world": {"rules": [{"continent": "EU", "sites": ["ams"]}]}}),
     "maps.world.rules[0].sites[0]: 'ams' is not a site (sites: fra, iad)"),
    (document(maps={"world": {"networks": [
        {"cidrs": ["10.1.0.0/16"], "sites": ["fra"]},
        {"cidrs": ["10.1.2.0/24"], "sites": ["iad"]}]}}),
     ("maps.world.networks[1].cidrs[0]: 10.1.2.0/24 overlaps 10.1.0.0/16 "
     "(maps.world.networks[0].cidrs[0])")),
    (document(maps={"world": {"check_interval": -1.0}}),
     "maps.world.check_interval: -1.0 is not between 0 (only at reload) and 86400 seconds"),
    (document(sites={"fra": {"latitude": 50.0}, "iad": {}}),
     "sites.fra.longitude: is missing: coordinates need both"),
    (document(sites={"fra mil": {}, "iad": {}}),
     "sites.\"fra mil\": 'fra mil' is not a site name (letters, digits, '_' and '-', at most 63)"),
]


@pytest.mark.parametrize("doc,message", CASES, ids=[c[1].split(":")[0] for c in CASES])
def test_a_geo_error_names_the_field(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.from_mapping(doc)
    assert str(caught.value) == message


def good(path: Path) -> Path:
    return geodata.write_mmdb(path, [("10.2.0.0/16", geodata.record("EU", "DE"))])


def database_error(tmp_path: Path, make: str) -> str:
    path = tmp_path / "geo.mmdb"
    if make == "missing":
        pass
    elif make == "text":
        path.write_text("not a database\n")
    elif make == "truncated":
        data = good(path).read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif make == "folder" and not path.exists():
        path.mkdir()
    doc = document(maps={"world": {"database": str(path), "default": ["fra"]}})
    with pytest.raises(ConfigError) as caught:
        config.from_mapping(doc)
    return str(caught.value).replace(str(path), "PATH")


def test_a_bad_database_is_an_error_naming_the_field_and_the_file(tmp_path: Path) -> None:
    assert database_error(tmp_path, "missing") == \
        "maps.world.database: PATH: cannot read it: No such file or directory"
    for make in ("text", "truncated"):
        message = database_error(tmp_path, make)
        assert message.startswith("maps.world.database: PATH is not a MaxMind DB file, or is "
                                  "truncated ("), message
        (tmp_path / "geo.mmdb").unlink()
    assert database_error(tmp_path, "folder") == \
        "maps.world.database: PATH is not a regular file"


def test_a_good_database_passes_and_a_relative_path_is_under_the_files_folder(
        tmp_path: Path) -> None:
    good(tmp_path / "geo.mmdb")
    text = """
        [sites.fra]
        [maps.world]
        database = "geo.mmdb"
        [[zones]]
        origin = "example.test"
        nameservers = ["ns1.example.net"]
        [zones.records.www.pool]
        map = "world"
        check = { port = 80 }
        [zones.records.www.pool.sites.fra]
        addresses = ["192.0.2.10"]
        """
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "geo.mmdb").write_bytes((tmp_path / "geo.mmdb").read_bytes())
    file = tmp_path / "conf" / "healthdns.toml"
    file.write_text("\n".join(line.strip() for line in text.splitlines()))
    cfg = config.load(file)
    assert cfg.maps["world"].database == str(tmp_path / "conf" / "geo.mmdb")


def test_a_pool_without_a_map_has_no_map_or_sites_keys_in_effect() -> None:
    doc = document()
    doc["zones"][0]["records"]["plain"] = {"pool": {"addresses": ["192.0.2.50"],
                                                    "check": CHECK}}
    pool = config.from_mapping(doc).zones[0].records["plain"].pool
    assert pool is not None and pool.map == "" and pool.sites == {}


def test_the_documented_example_is_a_valid_configuration(tmp_path: Path) -> None:
    """The example of docs/configuration.md's geo section, its database written here."""
    page = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    section = page.split("## Sites and maps: routing by location", 1)[1]
    block = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert block is not None
    good(tmp_path / "GeoLite2-Country.mmdb")
    file = tmp_path / "healthdns.toml"
    file.write_text(block.group(1))
    cfg = config.load(file)
    pool = cfg.zones[0].records["www"].pool
    assert pool is not None and list(pool.sites) == ["fra", "iad"]
    assert [r.continent for r in cfg.maps["world"].rules] == ["EU", "NA"]
