"""`[zones.dnssec.policy]`: keys the signer makes and rolls. Each bad input and its message."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from healthdns.shared import config
from healthdns.shared.errors import ConfigError

ZONE: dict[str, Any] = {
    "origin": "example.test",
    "nameservers": ["ns1.example.net"],
    "records": {"www": {"a": ["192.0.2.1"]}},
    "dnssec": {"key_dir": "/var/lib/healthdns/keys", "policy": {}},
}


def with_(**changes: Any) -> dict[str, Any]:
    """A document whose zone's dnssec table has `changes` (`policy` ones merged)."""
    zone = copy.deepcopy(ZONE)
    for key, value in changes.items():
        if key == "policy" and isinstance(value, dict):
            zone["dnssec"]["policy"].update(value)
        elif value is None:
            zone["dnssec"].pop(key, None)
        else:
            zone["dnssec"][key] = value
    return {"zones": [zone]}


CASES = [
    (with_(policy=None),
     ("zones[0].dnssec.key_dir: is only for keys the signer makes: add [zones.dnssec.policy], "
     "or name the key files (csk, or ksk and zsk)")),
    (with_(key_dir=None),
     ("zones[0].dnssec.key_dir: is required with a policy: the folder where the signer keeps "
     "the keys it makes and the state of their rolls")),
    (with_(csk="/k.pem"),
     ("zones[0].dnssec.csk: names a key file, but under a policy the signer makes its keys in "
     "key_dir: remove one or the other")),
    (with_(publish=["/k.pem"]),
     ("zones[0].dnssec.publish: is for rolling keys by hand; under a policy the signer "
     "publishes the keys of its rolls itself")),
    (with_(policy={"zsk_lifetime": 5}),
     ("zones[0].dnssec.policy.zsk_lifetime: 5 is not between 10 and 316224000 s (0: never "
     "rolled)")),
    (with_(policy={"csk": True, "ksk_lifetime": 86400 * 30}),
     ("zones[0].dnssec.policy.ksk_lifetime: is for another kind of key (csk = true: one "
     "combined key)")),
    (with_(policy={"csk_lifetime": 86400 * 30}),
     ("zones[0].dnssec.policy.csk_lifetime: is for another kind of key (csk = false: a KSK "
     "and ZSK)")),
    (with_(policy={"check_interval": 0}),
     "zones[0].dnssec.policy.check_interval: 0 is not between 1 and 86400 s"),
    (with_(policy={"ds_ttl": -1}),
     "zones[0].dnssec.policy.ds_ttl: -1 is not a TTL (0-2147483647)"),
    (with_(policy={"parent_nameservers": ["ns.example.net"]}),
     ("zones[0].dnssec.policy.parent_nameservers[0]: 'ns.example.net': 'ns.example.net' is "
     "not an IPv4 or IPv6 address")),
    (with_(policy={"zsk_lifetime": 7000}),
     ("zones[0].dnssec.policy.zsk_lifetime: 7000 s is not longer than one roll takes (7800 s "
     "from propagation, the TTLs): keys would roll over each other")),
    (with_(policy={"ksk_lifetime": 90000}),
     ("zones[0].dnssec.policy.ksk_lifetime: 90000 s is not longer than one roll takes "
     "(97800 s from propagation, the TTLs and the parent): keys would roll over each other")),
    (with_(policy={"lifetime": 3}),
     "zones[0].dnssec.policy.lifetime"),
]


@pytest.mark.parametrize("document,message", CASES, ids=[c[1].split(":")[0] + str(i)
                                                         for i, c in enumerate(CASES)])
def test_policy_errors_name_the_field(document: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.from_mapping(document)
    assert str(caught.value).startswith(message)


def test_a_policy_names_no_key_file_and_keeps_the_defaults() -> None:
    cfg = config.from_mapping(with_())
    spec = cfg.zones[0].dnssec
    assert spec is not None and spec.policy is not None
    assert spec.key_files() == []
    assert spec.policy.roles() == ("ksk", "zsk")
    assert (spec.policy.zsk_lifetime, spec.policy.ksk_lifetime) == (90 * 86400, 0)
    decoded = config.decode(config.encode(cfg))  # as the signer receives it
    assert decoded.zones[0].dnssec == spec


def test_the_zone_max_ttl_counts_every_signed_rrset() -> None:
    doc = with_()
    doc["zones"][0]["records"]["slow"] = {"a": ["192.0.2.2"], "ttl": 9000}
    assert config.from_mapping(doc).zones[0].max_ttl() == 9000
    assert config.from_mapping(with_()).zones[0].max_ttl() == 3600  # ns_ttl and SOA


def test_manual_keys_are_unchanged_without_a_policy() -> None:
    doc = with_(policy=None, key_dir=None, csk="/k.pem")
    spec = config.from_mapping(doc).zones[0].dnssec
    assert spec is not None and spec.policy is None and spec.key_files() == [("csk", "/k.pem")]
