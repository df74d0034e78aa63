"""Names and record data: every rejection is a sentence that names the field and the value."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from healthdns.shared import config
from healthdns.shared.errors import ConfigError

BASE: dict[str, Any] = {
    "zones": [{
        "origin": "example.test",
        "aliases": ["example.org"],
        "nameservers": ["ns1.example.net"],
        "records": {"www": {"a": ["192.0.2.1"]}},
    }],
}
R = "zones[0].records"
LONG = "x" * 70


def zone_(**fields: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["zones"][0].update(fields)
    return doc


def record_(name: str, **fields: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["zones"][0]["records"][name] = fields
    return doc


CASES = [
    # A host name is not an address: "10 192.0.2.1" would be served as 192.0.2.1.example.test.
    (record_("@", mx=["10 192.0.2.1"]),
     (f"{R}.@.mx[0]: '10 192.0.2.1': an MX host must be a host name, not an address "
     "(192.0.2.1 would be served as the name 192.0.2.1.example.test.)")),
    (record_("@", mx=["10 192.0.2.1."]),
     f"{R}.@.mx[0]: '10 192.0.2.1.': an MX host must be a host name, not an address"),
    (record_("_sip._udp", srv=["10 60 5060 2001:db8::5"]),
     (f"{R}.\"_sip._udp\".srv[0]: '10 60 5060 2001:db8::5': an SRV target must be a host name, "
     "not an address")),
    (record_("alias", cname="192.0.2.1"),
     f"{R}.alias.cname: '192.0.2.1': a CNAME target must be a host name, not an address"),
    (record_("rev", ptr=["192.0.2.1"]),
     f"{R}.rev.ptr[0]: '192.0.2.1': a PTR target must be a host name, not an address"),
    (zone_(nameservers=["192.0.2.53"]),
     ("zones[0].nameservers[0]: '192.0.2.53' is an address: a nameserver is given by its host "
     "name")),
    # CNAMEs that point to their own owner, also through an alias zone (same owners).
    (record_("self", cname="self"),
     f"{R}.self.cname: 'self' is the name itself: a CNAME cannot point to its own owner"),
    (record_("self", cname="SELF.example.test."),
     f"{R}.self.cname: 'SELF.example.test.' is the name itself"),
    (record_("self", cname="self.example.org."),
     f"{R}.self.cname: 'self.example.org.' is the name itself"),
    # Labels are shown as text, and an over-long one gets a reason.
    (zone_(origin="my host.test"),
     ("zones[0].origin: 'my host.test' is not a valid DNS name: label 'my host' may only hold "
     "letters, digits, '-' and '_'")),
    (zone_(origin=f"{LONG}.test"),
     (f"zones[0].origin: '{LONG}.test' is not a valid DNS name: label '{LONG}' is 70 "
     "characters long, more than 63")),
    (record_(LONG, a=["192.0.2.1"]),
     f"{R}.{LONG}: '{LONG}' is not a valid DNS name: label '{LONG}' is 70 characters long"),
    (zone_(nameservers=[f"ns1.{LONG}.net"]),
     (f"zones[0].nameservers[0]: 'ns1.{LONG}.net' is not a valid DNS name: label '{LONG}' is "
     "70 characters long")),
    (zone_(soa={"rname": "web master"}),
     "zones[0].soa.rname: 'web master' is not a valid DNS name: label 'web master' may only"),
    (zone_(origin=".".join(["a" * 60] * 4) + ".test"),
     "zones[0].soa.rname: 'hostmaster' is not a valid DNS name: hostmaster.aaaa"),
    (record_("m", mx=[f"10 {LONG}"]),
     (f"{R}.m.mx[0]: '10 {LONG}': an MX host must be a valid host name: label '{LONG}' is 70 "
     "characters long")),
    (zone_(origin="."), "zones[0].origin: the root zone is not supported"),
    (record_("m", cname="a..b"),
     f"{R}.m.cname: 'a..b': a CNAME target must be a valid host name: it has an empty label"),
    # Record data: what is wrong, in words, and what was expected.
    (record_("m", a=["192.0.2.1 192.0.2.2"]),
     (f"{R}.m.a[0]: '192.0.2.1 192.0.2.2' is not valid A data: not an IPv4 address; expected "
     "an IPv4 address")),
    (record_("m", aaaa=["192.0.2.1"]),
     f"{R}.m.aaaa[0]: '192.0.2.1' is not valid AAAA data: not an IPv6 address"),
    (record_("m", ptr=["my host"]),
     (f"{R}.m.ptr[0]: 'my host' is not valid PTR data: unexpected 'host' after the last field; "
     "expected a host name")),
    (record_("m", mx=["10"]),
     (f"{R}.m.mx[0]: '10' is not valid MX data: a field is missing or has the wrong kind of "
     "value; expected PREFERENCE HOST, like \"10 mail\"")),
    (record_("m", txt=['"unclosed']),
     (f"{R}.m.txt[0]: '\"unclosed' is not valid TXT data: it ends too early (a field is "
     "missing, or a quote is not closed)")),
    (record_("m", txt=['"' + "x" * 256 + '"']),
     f"{R}.m.txt[0]: '\"" + "x" * 256 + "\"' is not valid TXT data: a string is longer than "
     "255 characters (split it into several quoted strings)"),
    (record_("m", caa=["0 issue"]),
     f"{R}.m.caa[0]: '0 issue' is not valid CAA data: a field is missing"),
]


@pytest.mark.parametrize("document,message", CASES,
                         ids=[c[1].split(": ")[0][:60] for c in CASES])
def test_bad_names_and_data_get_a_sentence(document: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config.from_mapping(document)
    assert str(raised.value).startswith(message), str(raised.value)


def test_names_that_are_fine_stay_fine() -> None:
    doc = record_("@", mx=["10 mail", "20 mail.example.net.", "0 ."])
    doc["zones"][0]["records"].update({
        "_sip._udp": {"srv": ["10 60 5060 sip", "0 0 0 ."]},
        "web": {"cname": "www.example.org."},  # another owner, through the alias zone
        "rev": {"ptr": ["host-1.example.net."]},
    })
    zone = config.from_mapping(doc).zones[0]
    assert zone.records["web"].cname == "www.example.org."


# Internals that a message must not show: bytes reprs, dnspython's token types, an empty
# reason. The letters of these never occur in the generated values.
LEAKS = re.compile(r"(^|[\s(])b['\"]|got \d+ |EOL|identifier|:\s*$|None")
TEXT = st.text(st.sampled_from("ac1-_.: \"'\\*@x"), max_size=80) | st.just("x" * 64)


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(["origin", "ns", "owner", "cname", "mx", "srv", "ptr", "txt",
                              "caa", "rname"]),
       text=TEXT)
@example(field="cname", text=". ")  # rdata text with a space: once an EmptyLabel escaped
def test_every_rejection_is_a_sentence(field: str, text: str) -> None:
    documents = {
        "origin": lambda: zone_(origin=text),
        "ns": lambda: zone_(nameservers=[text]),
        "owner": lambda: record_(text, a=["192.0.2.1"]),
        "cname": lambda: record_("m", cname=text),
        "mx": lambda: record_("m", mx=[f"10 {text}"]),
        "srv": lambda: record_("m", srv=[f"1 1 80 {text}"]),
        "ptr": lambda: record_("m", ptr=[text]),
        "txt": lambda: record_("m", txt=[text]),
        "caa": lambda: record_("m", caa=[f"0 issue {text}"]),
        "rname": lambda: zone_(soa={"rname": text}),
    }
    try:
        config.from_mapping(documents[field]())
    except ConfigError as e:
        assert e.path and e.message, str(e)
        assert not LEAKS.search(e.message), str(e)
