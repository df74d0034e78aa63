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


def with_(path: str, value: Any, base: dict[str, Any] = BASE) -> dict[str, Any]:
    """`base` with the value at a path set (`zones/0/records/www/ttl`)."""
    doc = copy.deepcopy(base)
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
     ("zones[0].records.www.pool.check.port: '80' must be a port number, 1-65535 (write 80, "
     "without quotes)")),
    (with_("zones/0/records/www/pool/check/bogus", 1),
     "zones[0].records.www.pool.check.bogus: unknown key"),
    (with_("zones/0/records/www/pool/addresses", ["192.0.2.300"]),
     "zones[0].records.www.pool.addresses[0]: '192.0.2.300' is not an IPv4 or IPv6 address"),
    (with_("zones/0/records/www/pool/addresses", ["192.0.2.1", "192.0.2.1"]),
     "zones[0].records.www.pool.addresses[1]: 192.0.2.1 is given twice"),
    (with_("zones/0/records/www/pool/addresses", []),
     "zones[0].records.www.pool.addresses: at least one address is required"),
    (with_("zones/0/records/www/pool/check/timeout", 9),
     ("zones[0].records.www.pool.check.timeout: 9 must be positive and at most the interval "
     "(5 s)")),
    (with_("zones/0/records/www/pool/check/rise", 0),
     "zones[0].records.www.pool.check.rise: 0 is not between 1 and 100"),
    (with_("zones/0/records/www/pool/policy", "random"),
     "zones[0].records.www.pool.policy: 'random' is not one of 'serve-all', 'empty', 'backup'"),
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
     ("zones[0].records.\"www.example.com.\": 'www.example.com.' is not inside the zone "
     "example.test.")),
    (with_("zones/0/records/bad name", {"a": ["192.0.2.1"]}),
     ("zones[0].records.\"bad name\": 'bad name' is not a valid DNS name: label 'bad name' "
     "may only hold ")),
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
    (with_("server/log_format", "xml"),
     "server.log_format: 'xml' is not one of 'text', 'json'"),
    (with_("server/instance", "edge one"),
     "server.instance: 'edge one' is not 1-32 letters, digits, '.', '_' or '-'"),
    (with_("server/tcp_backlog", 0),
     "server.tcp_backlog: 0 is not between 1 and 65535"),
    (with_("server/tcp_max_per_client", 0),
     "server.tcp_max_per_client: 0 is not positive"),
    (with_("server/tcp_max_connections", 0),
     "server.tcp_max_connections: 0 is not between 1 and 1000000"),
    (with_("server/hung_after", 1.0),
     ("server.hung_after: 1 is less than 3 seconds: children report every 1 s, so a healthy "
     "one a little late would be killed as hung (0 turns the watch off)")),
    (with_("server/colour", "blue"),
     "server.colour: unknown key"),
    (with_("server/user", "bad user"), "server.user: 'bad user' is not a user or group name"),
    (with_("server/group", "wheel"), "server.group: needs server.user (the group of which user?)"),
    (with_("server/signer_user", "healthdns-signer"),
     "server.signer_user: needs server.user (the other processes' user)"),
    (with_("server/signer_user", "a b"), "server.signer_user: 'a b' is not a user or group name"),
    ({"zones": []}, "zones: at least one zone is required"),
    (with_("zones/0/records/_sip", {"_udp": {"srv": ["10 60 5060 sip"]}}),
     ("zones[0].records._sip: '_udp' is not a record field; a name with dots must be quoted "
     "in TOML: [zones.records.\"_sip._udp\"]")),
    # The parsed forms normalisation stores beside the text are never the file's to give.
    (with_("server/listeners", [["192.0.2.1", 53, True]]),
     "server.listeners: unknown key (healthdns sets it, the file may not)"),
    (with_("control/listener", ["192.0.2.1", 8053]),
     "control.listener: unknown key (healthdns sets it, the file may not)"),
    (with_("transfer/listeners", [["192.0.2.1", 53]]),
     "transfer.listeners: unknown key (healthdns sets it, the file may not)"),
    (with_("transfer", {"listen": ["192.0.2.1"], "require_tsig": False, "secondaries": [
        {"address": "192.0.2.2", "endpoint": ["192.0.2.3", 53]}]}),
     "transfer.secondaries[0].endpoint: unknown key (healthdns sets it, the file may not)"),
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


# ---------------------------------------------------------------------------------------------
# Pools and checks: failover groups, weights, policies, HTTP(S) checks, the prober section.

P = "zones[0].records.www.pool"


def pool_(**fields: Any) -> dict[str, Any]:
    """BASE with the www pool replaced by `fields`."""
    doc = copy.deepcopy(BASE)
    doc["zones"][0]["records"]["www"] = {"pool": fields}
    return doc


def check_(**fields: Any) -> dict[str, Any]:
    return pool_(addresses=["192.0.2.1"], check=fields)


TWO_GROUPS = [{"addresses": ["192.0.2.1"]}, {"addresses": ["192.0.2.2"]}]

POOL_CASES = [
    (check_(), f"{P}.check.port: a tcp check needs a port"),
    (check_(kind="udp", port=53), f"{P}.check.kind: 'udp' is not one of 'http', 'https', 'tcp'"),
    (check_(port=80, path="/health"),
     f"{P}.check.path: is for http and https checks, and this one is tcp"),
    (check_(kind="http", verify=False),
     f"{P}.check.verify: is for https checks, and this one is http"),
    (check_(kind="http", status="399-200"),
     f"{P}.check.status: '399-200': the range 399-200 is empty"),
    (check_(kind="http", status="2xx"),
     f"{P}.check.status: '2xx' is not a list of status codes and ranges (like \"200-399\""),
    (check_(kind="http", body="ok", body_regex="ok"),
     f"{P}.check.body_regex: give body or body_regex, not both"),
    (check_(kind="http", body_regex="("),
     f"{P}.check.body_regex: '(' is not a valid regular expression: missing )"),
    (check_(kind="http", body=""), f"{P}.check.body: is empty: leave it out to accept any body"),
    (check_(kind="http", method="get"),
     f"{P}.check.method: 'get' is not an HTTP method (like GET or HEAD)"),
    (check_(kind="http", method="HEAD", body="ok"),
     f"{P}.check.method: a HEAD response has no body to match"),
    (check_(kind="http", path="health"),
     f"{P}.check.path: 'health' must start with / and hold no spaces"),
    (check_(kind="http", headers={"Host": "example.com"}),
     f"{P}.check.headers.Host: set the Host header with `host`"),
    (check_(kind="http", headers={"bad name": "x"}),
     f"{P}.check.headers: 'bad name' is not a header name"),
    (check_(kind="http", headers={"X-A": "a\r\nX-B: b"}),  # the value may be a secret
     f"{P}.check.headers.X-A: the value holds a line break or NUL"),
    (check_(kind="http", variant=1),
     f"{P}.check.variant: unknown key (healthdns sets it, the file may not)"),
    (check_(kind="http", ranges=[[200, 200]]),
     f"{P}.check.ranges: unknown key (healthdns sets it, the file may not)"),
    (check_(kind="https", host="bad host"), f"{P}.check.host: 'bad host' is not a valid DNS name"),
    (check_(kind="https", ca_file="/nonexistent/ca.pem"),
     f"{P}.check.ca_file: cannot read '/nonexistent/ca.pem': No such file or directory"),
    (check_(kind="https", ca_pem="not a certificate"),
     f"{P}.check.ca_pem: holds no usable PEM certificate"),
    (check_(kind="https", verify=False, ca_pem="x"),
     f"{P}.check.ca_pem: is pointless with verify = false"),
    (check_(port=80, hold_down=-1), f"{P}.check.hold_down: -1 is not between 0 and 86400 s"),
    (check_(port=80, address="backend"),
     f"{P}.check.address: 'backend' is not an IPv4 or IPv6 address"),
    (pool_(addresses=["192.0.2.1"], groups=TWO_GROUPS, check={"port": 80}),
     f"{P}.addresses: give either addresses (one group) or groups, not both"),
    (pool_(groups=[{"addresses": ["192.0.2.1"]}, {"addresses": []}], check={"port": 80}),
     f"{P}.groups[1].addresses: at least one address is required"),
    (pool_(groups=[{"addresses": ["192.0.2.1"]}, {"addresses": ["192.0.2.01"]}],
           check={"port": 80}),
     f"{P}.groups[1].addresses[0]: '192.0.2.01' is not an IPv4 or IPv6 address"),
    (pool_(groups=[{"addresses": ["192.0.2.1"]}, {"addresses": ["192.0.2.1"]}],
           check={"port": 80}),
     f"{P}.groups[1].addresses[0]: 192.0.2.1 is given twice"),
    (pool_(groups=[{"addresses": ["192.0.2.1"], "bogus": 1}], check={"port": 80}),
     f"{P}.groups[0].bogus: unknown key"),
    (pool_(groups=TWO_GROUPS),
     f"{P}.groups[0].check: is required, for the group or the whole pool"),
    (pool_(addresses=["192.0.2.1"]), f"{P}.check: is required, for the group or the whole pool"),
    (pool_(groups=[{"addresses": ["192.0.2.1"], "check": {"port": 80, "timeout": 9}}]),
     f"{P}.groups[0].check.timeout: 9 must be positive and at most the interval (5 s)"),
    (pool_(addresses=["192.0.2.1"], weights=[1, 2], check={"port": 80}),
     f"{P}.weights: 2 given for 1 address(es): one weight per address"),
    (pool_(addresses=["192.0.2.1"], weights=[0], check={"port": 80}),
     f"{P}.weights[0]: 0 is not between 1 and 100"),
    (pool_(addresses=["192.0.2.1"], check={"port": 80}, min_healthy=3),
     f"{P}.min_healthy: 3 is not between 1 and the size of the largest group (1)"),
    (pool_(addresses=["192.0.2.1"], check={"port": 80}, max_answers=100),
     f"{P}.max_answers: 100 is not between 0 (all) and 64"),
    (pool_(addresses=["192.0.2.1"], check={"port": 80}, policy="backup"),
     f"{P}.backup: policy \"backup\" needs at least one backup address"),
    (pool_(addresses=["192.0.2.1"], check={"port": 80}, backup=["192.0.2.9"]),
     f"{P}.backup: is served only with policy = \"backup\", not 'serve-all'"),
    (pool_(addresses=["192.0.2.1"], check={"port": 80}, policy="backup", backup=["192.0.2.1"]),
     f"{P}.backup[0]: 192.0.2.1 is given twice"),
    (with_("prober/parallel", -1), "prober.parallel: -1 is not between 0 and 1048576"),
    (with_("prober/fence_min_targets", 1),
     "prober.fence_min_targets: 1 is neither 0 (never) nor 2 or more"),
    (with_("prober/fence", True), "prober.fence: unknown key; did you mean 'fence_min_targets'?"),
]


@pytest.mark.parametrize("document,message", POOL_CASES,
                         ids=[c[1].split(": ")[0] for c in POOL_CASES])
def test_pool_and_check_errors_name_field_and_value(document: dict[str, Any],
                                                    message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config.from_mapping(document)
    assert str(raised.value).startswith(message), str(raised.value)


def _pool(document: dict[str, Any]) -> config.PoolSpec:
    pool = config.from_mapping(document).zones[0].records["www"].pool
    assert pool is not None
    return pool


def test_the_short_form_is_one_group() -> None:
    pool = _pool(pool_(addresses=["192.0.2.1", "2001:DB8::1"], check={"port": 80}))
    assert pool.addresses == () and len(pool.groups) == 1
    group = pool.groups[0]
    assert group.addresses == ("192.0.2.1", "2001:db8::1")
    assert group.weights == (1, 1)
    assert group.check == pool.check == config.CheckSpec(port=80)
    assert (pool.min_healthy, pool.max_answers, pool.policy) == (1, 0, "serve-all")


def test_groups_take_the_pool_check_unless_they_have_their_own() -> None:
    pool = _pool(pool_(check={"port": 80}, groups=[
        {"addresses": ["192.0.2.1", "192.0.2.2"], "weights": [3, 1]},
        {"addresses": ["198.51.100.1"], "check": {"kind": "https", "path": "/up"}},
    ], min_healthy=2, max_answers=1, policy="backup", backup=["203.0.113.1"]))
    first, second = pool.groups
    assert first.check == config.CheckSpec(port=80) and first.weights == (3, 1)
    assert second.check is not None and second.check.port == 443  # the kind's default port
    assert pool.backup == ("203.0.113.1",)


def test_http_checks_are_normalised() -> None:
    spec = _pool(check_(kind="http", host="WWW.Example.TEST.", status="200, 301-302"))
    check = spec.groups[0].check
    assert check is not None
    assert (check.port, check.host, check.status) == (80, "www.example.test", "200,301-302")
    assert check.ranges == ((200, 200), (301, 302))


def test_endpoints_are_stored_parsed() -> None:
    doc = with_("server", {"listen": ["192.0.2.1", "[2001:DB8::1]:5300"], "port": 5353})
    doc["control"] = {"listen": "[::1]:8999"}
    doc["transfer"] = {"listen": ["192.0.2.1:53"], "require_tsig": False,
                       "secondaries": [{"address": "192.0.2.9"}]}
    cfg = config.decode(config.encode(config.from_mapping(doc)))  # as a child receives it
    assert cfg.server.listeners == (("192.0.2.1", 5353, True), ("2001:db8::1", 5300, True))
    assert cfg.control.listener == ("::1", 8999)
    assert cfg.transfer.listeners == (("192.0.2.1", 53),)
    assert cfg.transfer.secondaries[0].endpoint == ("192.0.2.9", 53)
    plain = config.from_mapping(BASE)  # without listen: every interface, the default control
    assert plain.server.listeners == (("0.0.0.0", 53053, True), ("::", 53053, False))
    assert plain.control.listener == ("127.0.0.1", 8053)
    off = config.from_mapping(with_("control/listen", ""))
    assert off.control.listener is None and off.control.listen == ""


def test_target_ids_tell_checks_apart() -> None:
    tcp = config.CheckSpec(port=80)
    assert tcp.target("192.0.2.1") == "tcp 192.0.2.1 80 5/2/2/2"  # as before HTTP checks
    http = config.CheckSpec(kind="http", port=80, path="/a")
    assert http.target("192.0.2.1").startswith("http 192.0.2.1 80 5/2/2/2 ")
    same = config.CheckSpec(kind="http", port=80, path="/a")
    other = config.CheckSpec(kind="http", port=80, path="/b")
    assert http.target("192.0.2.1") == same.target("192.0.2.1") != other.target("192.0.2.1")
    held = config.CheckSpec(port=80, hold_down=30)
    assert held.target("192.0.2.1") != tcp.target("192.0.2.1")
    via = config.CheckSpec(port=80, address="127.0.0.1")
    assert via.target("192.0.2.1") == via.target("192.0.2.2")  # one check judges both


def test_target_ids_hold_no_header_value_but_tell_such_checks_apart() -> None:
    """An id is shown to anyone who reads /status: nothing in it may come from a header
    value (before, its digest covered them, and a guessable value was found by trying)."""
    def spec(token: str, variant: int = 0) -> config.CheckSpec:
        return config.CheckSpec(kind="http", port=80, headers={"Authorization": token},
                                variant=variant)

    assert spec("Bearer a").target("192.0.2.1") == spec("Bearer b").target("192.0.2.1")
    assert spec("Bearer a").target("192.0.2.1") != spec("Bearer a", 1).target("192.0.2.1")
    other = config.CheckSpec(kind="http", port=80, headers={"X-Other": "Bearer a"})
    assert other.target("192.0.2.1") != spec("Bearer a").target("192.0.2.1")  # names count

    def document(first: str, second: str) -> dict[str, Any]:
        doc = check_(kind="http", headers={"Authorization": first})
        doc["zones"][0]["records"]["api"] = {"pool": {"addresses": ["192.0.2.1"], "check": {
            "kind": "http", "headers": {"Authorization": second}}}}
        return doc

    ids = config.from_mapping(document("Bearer a", "Bearer b")).checks()
    assert len(ids) == 2  # two checks, each with its own state
    assert ids.keys() == config.from_mapping(document("guess 1", "guess 2")).checks().keys()
    assert len(config.from_mapping(document("Bearer a", "Bearer a")).checks()) == 1


def test_prober_defaults() -> None:
    cfg = config.from_mapping(BASE)
    assert (cfg.prober.parallel, cfg.prober.fence_min_targets) == (2048, 10)
