"""The `ttl` forms: a number (fixed), "MAX/MIN" or {max, min} (a TTL that follows health), per
name, pool or zone, decoded once with errors that name the field."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest

from healthdns.shared import config
from healthdns.shared.config import TtlRange
from healthdns.shared.errors import ConfigError
from healthdns.supervisor import shown as supervisor_shown

BASE: dict[str, Any] = {
    "zones": [{
        "origin": "example.test",
        "nameservers": ["ns1.example.net"],
        "records": {
            "www": {"pool": {"addresses": ["192.0.2.1"], "check": {"port": 80}}},
            "mail": {"a": ["192.0.2.2"]},
        },
    }],
}


def doc(zone: dict[str, Any] | None = None, www: dict[str, Any] | None = None,
        pool: dict[str, Any] | None = None) -> dict[str, Any]:
    out = copy.deepcopy(BASE)
    out["zones"][0].update(zone or {})
    out["zones"][0]["records"]["www"].update(www or {})
    out["zones"][0]["records"]["www"]["pool"].update(pool or {})
    return out


def record(document: dict[str, Any], name: str = "www") -> config.RecordSpec:
    return config.from_mapping(document).zones[0].records[name]


@pytest.mark.parametrize("written", ["300/30", " 300 / 30 ", {"max": 300, "min": 30}])
def test_a_range_is_decoded_once_in_either_form(written: Any) -> None:
    for document in (doc(www={"ttl": written}), doc(pool={"ttl": written}),
                     doc(zone={"ttl": written})):
        www = record(document)
        assert (www.ttl, www.health_ttl) == (300, TtlRange(max=300, min=30))
        assert www.pool is not None and www.pool.ttl is None  # moved to the record
        cfg = config.from_mapping(document)
        assert config.decode(config.encode(cfg)) == cfg


def test_a_plain_number_keeps_its_fixed_meaning() -> None:
    www = record(doc(www={"ttl": 45}))
    assert (www.ttl, www.health_ttl) == (45, None)
    assert record(doc(pool={"ttl": 45})).ttl == 45
    assert (record(doc()).ttl, record(doc()).health_ttl) == (300, None)


def test_the_zone_default_range_follows_health_for_pools_only() -> None:
    cfg = config.from_mapping(doc(zone={"ttl": "600/20"}))
    zone = cfg.zones[0]
    assert (zone.ttl, zone.health_ttl) == (600, TtlRange(max=600, min=20))
    assert zone.records["www"].health_ttl == TtlRange(max=600, min=20)
    # Nothing of a static name can change: it is served at the max.
    assert (zone.records["mail"].ttl, zone.records["mail"].health_ttl) == (600, None)


def test_a_name_overrides_the_zone_default() -> None:
    www = record(doc(zone={"ttl": "600/20"}, www={"ttl": 30}))
    assert (www.ttl, www.health_ttl) == (30, None)


SIGNED = {"dnssec": {"csk": "k.pem", "refresh": 86400}}

CASES = [
    (doc(www={"ttl": "300/600"}), "zones[0].records.www.ttl: min 600 is above max 300"),
    (doc(pool={"ttl": {"max": 300, "min": 0}}),
     ("zones[0].records.www.pool.ttl: min 0 is not between 1 and 2147483647 (a TTL that "
      "follows health is never 0)")),
    (doc(zone={"ttl": "0/0"}), "zones[0].ttl: max 0 is not between 1 and 2147483647"),
    (doc(www={"ttl": "300-30"}),
     "zones[0].records.www.ttl: '300-30' is not a TTL: write a number of seconds, \"MAX/MIN\""),
    (doc(www={"ttl": "3000000000/30"}),
     "zones[0].records.www.ttl: max 3000000000 is not between 1 and 2147483647"),
    (doc(www={"ttl": {"max": 300}}), "zones[0].records.www.ttl"),
    (doc(www={"ttl": 30}, pool={"ttl": "300/30"}),
     "zones[0].records.www.pool.ttl: the name gives its ttl already: give it once"),
    (doc(www={"ttl": "2000000/30"}),
     "zones[0].records.www.ttl: max 2000000 is above the SOA's expire (1209600)"),
    (doc(zone={"ttl": "100000/30", **SIGNED}),
     ("zones[0].ttl: max 100000 is above dnssec.refresh (86400): a signature may have no "
      "more than that left when it is served")),
    (doc(www={"health_ttl": {"max": 3, "min": 1}}),
     "zones[0].records.www.health_ttl: unknown key (healthdns sets it"),
]


@pytest.mark.parametrize("document,message", CASES, ids=[c[1][:50] for c in CASES])
def test_ttl_errors_name_the_field_and_what_is_wrong(document: dict[str, Any],
                                                     message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config.from_mapping(document)
    assert str(raised.value).startswith(message), str(raised.value)


def test_toml_forms(tmp_path: Any) -> None:
    path = tmp_path / "healthdns.toml"
    path.write_text('[[zones]]\norigin = "example.test"\nnameservers = ["ns1.example.net"]\n'
                    'ttl = "300/30"\n[zones.records.www.pool]\naddresses = ["192.0.2.1"]\n'
                    'check = { port = 80 }\nttl = { max = 120, min = 10 }\n')
    cfg = config.load(str(path))
    assert cfg.zones[0].records["www"].health_ttl == TtlRange(max=120, min=10)
    assert cfg.zones[0].health_ttl == TtlRange(max=300, min=30)


def test_check_config_shows_the_range() -> None:
    shown = msgspec.json.decode(supervisor_shown.text(config.from_mapping(
        doc(zone={"ttl": "600/20"}, www={"ttl": "300/30"}))))
    zone = shown["zones"][0]
    assert zone["ttl"] == {"max": 600, "min": 20}
    assert zone["records"]["www"]["ttl"] == {"max": 300, "min": 30}
    assert zone["records"]["mail"]["ttl"] == 600
    assert "health_ttl" not in zone["records"]["www"] and "ttl" not in zone["records"]["www"]["pool"]


def test_a_normalised_zone_without_a_range_decodes_again_and_one_with_it_is_refused() -> None:
    """Tests and tools feed a normalised configuration back as a document: `health_ttl`
    unset is accepted, set (healthdns's own field) is not."""
    document = msgspec.to_builtins(config.from_mapping(doc()))
    assert config.from_mapping(document).zones[0].health_ttl is None
    ranged = msgspec.to_builtins(config.from_mapping(doc(zone={"ttl": "300/30"})))
    with pytest.raises(ConfigError, match=r"zones\[0\]\.health_ttl: unknown key \(healthdns"):
        config.from_mapping(ranged)
