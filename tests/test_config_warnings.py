"""Settings that start but are most likely mistakes: warned about, by path, not refused."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from harness import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from healthdns.shared import config
from healthdns.supervisor import cli

BASE: dict[str, Any] = {
    "zones": [{
        "origin": "example.test",
        "nameservers": ["ns1.example.net"],
        "records": {"www": {"a": ["192.0.2.1"]}},
    }],
}


def with_soa(**soa: int) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["zones"][0]["soa"] = soa
    return doc


SOA_CASES = [
    (with_soa(refresh=600, retry=60, expire=300),
     [("zones[0].soa.expire: 300 is not more than refresh + retry (600 + 60 s): a secondary "
      "would drop the zone before it retries a failed refresh")]),
    (with_soa(refresh=7200, retry=3600, expire=10800),
     ["zones[0].soa.expire: 10800 is not more than refresh + retry (7200 + 3600 s)"]),
    (with_soa(refresh=7200, retry=3600, expire=10801), []),
    (with_soa(), []),  # the defaults are clean
]


@pytest.mark.parametrize("document,expected", SOA_CASES)
def test_soa_timers_are_checked(document: dict[str, Any], expected: list[str]) -> None:
    found = [f"{path}: {message}" for path, message in
             config.warnings(config.from_mapping(document))]
    assert len(found) == len(expected), found
    for text, start in zip(found, expected, strict=True):
        assert text.startswith(start), text


def with_records(**records: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["zones"][0]["aliases"] = ["example.org"]
    doc["zones"][0]["records"].update(records)
    return doc


CNAME_CASES = [
    (with_records(loop1={"cname": "loop2"}, loop2={"cname": "loop1"}),
     [("zones[0].records.loop1.cname: 'loop2' is part of a CNAME loop (loop1 -> loop2 -> loop1): "
      "resolvers fail on these names")]),
    # Through the alias zone, which serves the same owners; a chain into the loop is one loop.
    (with_records(a={"cname": "b.example.org."}, b={"cname": "c"}, c={"cname": "a"},
                  d={"cname": "a"}),
     ["zones[0].records.a.cname: 'b.example.org.' is part of a CNAME loop (a -> b -> c -> a)"]),
    (with_records(a={"cname": "b"}, b={"cname": "www"}, c={"cname": "www.example.net."}), []),
]


@pytest.mark.parametrize("document,expected", CNAME_CASES)
def test_cname_loops_are_warned_about(document: dict[str, Any], expected: list[str]) -> None:
    test_soa_timers_are_checked(document, expected)


@settings(max_examples=60, deadline=None)
@given(interval=st.floats(min_value=0.05, max_value=86400), timeout=st.floats(0.01, 60))
def test_a_healthy_dns_flags_give_clean_soa_timers(interval: float, timeout: float) -> None:
    args = cli.parser().parse_args([
        "--hosted-zone", "example.test", "--ns", '["ns1.example.net"]',
        "--zone-resolutions", '{"www": {"ips": ["192.0.2.1"], "health_port": 80}}',
        "--test-min-interval", repr(interval), "--test-timeout", repr(timeout)])
    warned: list[str] = []
    soa = cli.load(args, warned.append).zones[0].soa
    assert warned == []
    assert soa.expire > soa.refresh + soa.retry
    # Secondaries' timers do not follow the check interval: RFC 1912's ranges, the defaults.
    default = config.SoaSpec()
    assert (soa.refresh, soa.retry, soa.expire) == (default.refresh, default.retry,
                                                    default.expire)


def test_check_config_prints_warnings_and_passes(tmp_path: Path) -> None:
    path = tmp_path / "soa.toml"
    path.write_text('[[zones]]\norigin = "example.test"\nnameservers = ["ns1.example.net"]\n'
                    'soa = { refresh = 600, retry = 60, expire = 300 }\n'
                    '[zones.records.www]\na = ["192.0.2.1"]\n')
    result = run_cli(["--check-config", "--config", str(path)])
    assert result.returncode == 0, result.stderr
    assert ("healthdns-supervisor: configuration warning: zones[0].soa.expire: 300 is not "
            "more than refresh + retry") in result.stderr


def signed(soa: dict[str, int] | None, dnssec: dict[str, int], transfer: bool) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["zones"][0]["dnssec"] = {"csk": "/etc/healthdns/csk.pem", **dnssec}
    if soa is not None:
        doc["zones"][0]["soa"] = soa
    if transfer:
        doc["transfer"] = {"listen": ["127.0.0.1:8053"], "require_tsig": False,
                           "allow": [{"networks": ["127.0.0.1/32"]}]}
    return doc


def expire_warnings(document: dict[str, Any]) -> list[str]:
    return [f"{path}: {message}" for path, message in
            config.warnings(config.from_mapping(document)) if "dnssec.refresh" in message]


# The signer renews a signature once less than dnssec.refresh is left (signer/dnssec.py), so just
# before a renewal the signatures a secondary holds have that long to live: an expire above it
# lets a cut-off secondary serve them expired.
@settings(max_examples=80, deadline=None)
@given(validity=st.integers(3600, 31622400), share=st.floats(0.01, 0.99),
       expire=st.integers(0, 2**31 - 1), transfer=st.booleans())
def test_an_expire_past_the_signatures_life_is_warned_about(validity: int, share: float,
                                                            expire: int, transfer: bool) -> None:
    refresh = max(1, min(validity - 1, int(validity * share)))
    found = expire_warnings(signed({"expire": expire}, {"validity": validity,
                                                        "refresh": refresh}, transfer))
    if transfer and expire > refresh:  # without transfers no secondary holds the zone
        assert found == [(f"zones[0].soa.expire: {expire} is longer than dnssec.refresh "
                         f"({refresh} s), the least life the signatures a secondary last "
                         "transferred may have left: a secondary cut off from this primary "
                         "would serve expired signatures (validating resolvers answer SERVFAIL) "
                         f"instead of dropping the zone; set expire to at most {refresh}")]
    else:
        assert found == []


def test_the_default_expire_is_too_long_for_a_signed_zone_fed_to_secondaries() -> None:
    assert expire_warnings(signed(None, {}, True))[0].startswith(
        "zones[0].soa.expire: 1209600 is longer than dnssec.refresh (604800 s)")
    assert expire_warnings(signed({"expire": 432000}, {}, True)) == []  # the guide's 5 days
    unsigned = copy.deepcopy(BASE) | {"transfer": signed(None, {}, True)["transfer"]}
    assert expire_warnings(unsigned) == []
