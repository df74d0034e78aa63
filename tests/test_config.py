"""Config errors, table-driven: each bad input and the exact message it gets."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from healthdns.shared import config
from healthdns.shared.errors import ConfigError

BASE: dict[str, Any] = {
    "zones": [{
        "origin": "example.test",
        "nameservers": ["ns1.example.net"],
        "records": {
            "www": {"pool": {"addresses": ["192.0.2.1"], "check": {"port": 80}}},
            "mail": {"a": ["192.0.2.2"], "mx": ["10 mail"]},
        },
    }],
}


def with_(path: str, value: Any) -> dict[str, Any]:
    """BASE with the value at a path set (`zones/0/records/www/ttl`)."""
    doc = copy.deepcopy(BASE)
    *parents, last = path.split("/")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    node[int(last) if last.isdigit() else last] = value
    return doc


CASES = [
    (with_("zones/0/records/www/pool/check/port", 70000),
     "zones[0].records.www.pool.check.port: 70000 is not a port (1-65535)"),
    (with_("zones/0/records/www/pool/check/port", "80"),
     "zones[0].records.www.pool.check.port: expected int, got str"),
    (with_("zones/0/records/www/pool/check/bogus", 1),
     "zones[0].records.www.pool.check: object contains unknown field bogus"),
    (with_("zones/0/records/www/pool/addresses", ["192.0.2.300"]),
     "zones[0].records.www.pool.addresses[0]: '192.0.2.300' is not an IPv4 or IPv6 address"),
    (with_("zones/0/records/www/pool/addresses", ["192.0.2.1", "192.0.2.1"]),
     "zones[0].records.www.pool.addresses[1]: 192.0.2.1 is given twice"),
    (with_("zones/0/records/www/pool/addresses", []),
     "zones[0].records.www.pool.addresses: at least one address is required"),
    (with_("zones/0/records/www/pool/check/timeout", 9),
     "zones[0].records.www.pool.check.timeout: 9 must be positive and at most the interval "
     "(5 s)"),
    (with_("zones/0/records/www/pool/check/rise", 0),
     "zones[0].records.www.pool.check.rise: 0 is not between 1 and 100"),
    (with_("zones/0/records/www/pool/policy", "random"),
     "zones[0].records.www.pool.policy: expected one of 'serve-all', 'empty', got 'random'"),
    (with_("zones/0/records/www/ttl", -1),
     "zones[0].records.www.ttl: -1 is not a TTL (0-2147483647)"),
    (with_("zones/0/records/www/cname", "mail"),
     "zones[0].records.www.cname: a CNAME cannot coexist with other data (pool)"),
    (with_("zones/0/records/mail/cname", "www"),
     "zones[0].records.mail.cname: a CNAME cannot coexist with other data (a, mx)"),
    (with_("zones/0/records/@", {"cname": "www"}),
     "zones[0].records.@.cname: a CNAME cannot be at the zone apex (RFC 1912)"),
    (with_("zones/0/records/www/a", ["192.0.2.9"]),
     "zones[0].records.www: a name with a pool cannot also have static a or aaaa records"),
    (with_("zones/0/records/mail/mx", ["ten mail"]),
     "zones[0].records.mail.mx[0]: 'ten mail' is not valid MX data: "),
    (with_("zones/0/records/mail/a", ["2001:db8::1"]),
     "zones[0].records.mail.a[0]: '2001:db8::1' is not valid A data"),
    (with_("zones/0/records/empty", {}),
     "zones[0].records.empty: has no data: give a pool or static records"),
    (with_("zones/0/records/www.example.com.", {"a": ["192.0.2.1"]}),
     "zones[0].records.\"www.example.com.\": 'www.example.com.' is not inside the zone "
     "example.test."),
    (with_("zones/0/records/bad name", {"a": ["192.0.2.1"]}),
     "zones[0].records.\"bad name\": 'bad name' is not a valid DNS name: label b'bad name' "),
    (with_("zones/0/records/*", {"a": ["192.0.2.1"]}),
     "zones[0].records.\"*\": '*': wildcard names are not supported"),
    (with_("zones/0/records/ns", {"ns": ["ns1.example.net."]}),
     "zones[0].records.ns.ns: delegating a subdomain (NS below the apex) is not supported"),
    (with_("zones/0/nameservers", []),
     "zones[0].nameservers: at least one nameserver is required"),
    (with_("zones/0/nameservers", ["ns1"]),
     "zones[0].nameservers[0]: 'ns1' is not a fully qualified host name"),
    (with_("zones/0/origin", "a..b"),
     "zones[0].origin: 'a..b' is not a valid DNS name"),
    (with_("zones/0/origin", "x" * 64 + ".test"),
     "zones[0].origin: '" + "x" * 64 + ".test' is not a valid DNS name"),
    (with_("zones/0/soa/expire", 2**32),
     "zones[0].soa.expire: 4294967296 is not a TTL (0-2147483647)"),
    (with_("zones/0/aliases", ["example.test"]),
     "zones[0].aliases[0]: example.test. is already served by zones[0].origin"),
    (with_("server/listen", ["127.0.0.1:99999"]),
     "server.listen[0]: 99999 is not a port (1-65535)"),
    (with_("server/listen", ["localhost:53"]),
     "server.listen[0]: 'localhost:53': 'localhost' is not an IPv4 or IPv6 address"),
    (with_("server/responders", 0 - 1),
     "server.responders: -1 is not between 1 and 128"),
    (with_("server/udp_payload_size", 100),
     "server.udp_payload_size: 100 is not between 512 and 4096"),
    (with_("server/colour", "blue"),
     "server: object contains unknown field colour"),
    ({"zones": []}, "zones: at least one zone is required"),
    (with_("zones/0/records/_sip", {"_udp": {"srv": ["10 60 5060 sip"]}}),
     "zones[0].records._sip: '_udp' is not a record field; a name with dots must be quoted "
     "in TOML: [zones.records.\"_sip._udp\"]"),
]


@pytest.mark.parametrize("document,message", CASES, ids=[c[1].split(":")[0] for c in CASES])
def test_config_error_names_field_and_value(document: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config.from_mapping(document)
    assert str(raised.value).startswith(message), str(raised.value)


def test_valid_config_is_normalised() -> None:
    doc = with_("zones/0/records/WWW2", {"a": ["192.0.2.7"]})
    doc["zones"][0]["origin"] = "Example.TEST"
    cfg = config.from_mapping(doc)
    zone = cfg.zones[0]
    assert zone.origin == "example.test."
    assert "www2" in zone.records
    assert zone.soa.rname == "hostmaster.example.test."
    check = zone.records["www"].pool.check  # type: ignore[union-attr]
    assert (check.interval, check.timeout, check.rise, check.fall) == (5.0, 2.0, 2, 2)
    assert config.decode(config.encode(cfg)) == cfg


def test_same_check_is_one_target_across_names_and_zones() -> None:
    doc = copy.deepcopy(BASE)
    doc["zones"][0]["records"]["api"] = {
        "pool": {"addresses": ["192.0.2.1"], "check": {"port": 80}}}
    doc["zones"].append({"origin": "other.test", "nameservers": ["ns1.example.net"],
                         "records": {"x": {"pool": {"addresses": ["192.0.2.1"],
                                                    "check": {"port": 80}}}}})
    assert len(config.from_mapping(doc).checks()) == 1


def test_toml_file_errors(tmp_path: Any) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[zones]\n")
    with pytest.raises(ConfigError, match=r"bad.toml: not valid TOML"):
        config.load(bad)
    with pytest.raises(ConfigError, match=r"missing.toml: cannot read: No such file"):
        config.load(tmp_path / "missing.toml")
