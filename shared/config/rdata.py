"""Static record data in zone-file syntax, checked as the signer will parse it."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from healthdns.shared import lazy
from healthdns.shared.config.names import dns_reason, name_problem
from healthdns.shared.errors import ConfigError

if TYPE_CHECKING:
    import dns.exception
    import dns.name
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype
else:  # only validation needs them, and a responder only decodes (see shared/lazy.py)
    for _module in ("exception", "name", "rdata", "rdataclass", "rdatatype"):
        lazy.module(f"dns.{_module}")
    dns = lazy.module("dns")


STATIC_TYPES = ("a", "aaaa", "cname", "mx", "txt", "srv", "caa", "ptr")
# What each static type's data looks like, for the error message.
_SYNTAX = {
    "a": "an IPv4 address",
    "aaaa": "an IPv6 address",
    "cname": "a host name",
    "mx": 'PREFERENCE HOST, like "10 mail"',
    "txt": "one or more quoted strings, like '\"v=spf1 -all\"'",
    "srv": 'PRIORITY WEIGHT PORT TARGET, like "10 60 5060 sip"',
    "caa": "FLAGS TAG \"VALUE\", like '0 issue \"letsencrypt.org\"'",
    "ptr": "a host name",
}
# The types whose data ends with a host name, and what the message calls it.
_HOST_FIELDS = {"cname": "a CNAME target", "mx": "an MX host", "srv": "an SRV target",
                "ptr": "a PTR target"}


def checked_rdata(rtype: str, texts: tuple[str, ...], origin: dns.name.Name,
            path: str) -> tuple[str, ...]:
    """Check rdata in zone-file syntax; keep the text so alias zones re-root relative names."""
    seen: list[dns.rdata.Rdata] = []
    for i, text in enumerate(texts):
        where = f"{path}[{i}]" if rtype != "cname" else path
        rdata = _rdata(rtype, text, origin, where)
        if rdata in seen:
            raise ConfigError(where, f"{text!r} is given twice")
        seen.append(rdata)
    return tuple(texts)


def _rdata(rtype: str, text: str, origin: dns.name.Name, path: str) -> dns.rdata.Rdata:
    def bad(reason: str) -> ConfigError:
        return ConfigError(path, f"{text!r} is not valid {rtype.upper()} data: {reason}; "
                           f"expected {_SYNTAX[rtype]}")

    if rtype in ("a", "aaaa"):
        try:
            kind = ipaddress.IPv4Address if rtype == "a" else ipaddress.IPv6Address
            kind(text)
        except ValueError:
            raise bad(f"not an {'IPv4' if rtype == 'a' else 'IPv6'} address") from None
    if rtype in _HOST_FIELDS:
        _check_host(rtype, text, origin, path)
    try:
        return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rtype), text,
                                   origin=origin)
    except (dns.exception.DNSException, ValueError) as e:
        raise bad(dns_reason(e)) from e


def _check_host(rtype: str, text: str, origin: dns.name.Name, path: str) -> None:
    """The host name that ends CNAME, MX, SRV and PTR data: a name, never an address."""
    words = text.split()
    host = words[-1] if words else ""
    if host in ("", "."):  # "." is RFC 7505's null MX, and SRV's "no such service"
        return
    try:
        ipaddress.ip_address(host.rstrip("."))
    except ValueError:
        problem = name_problem(host)
        if problem:
            raise ConfigError(path, f"{text!r}: {_HOST_FIELDS[rtype]} must be a valid host "
                              f"name: {problem}") from None
        return
    served = host if host.endswith(".") else f"{host}.{origin.to_text()}"
    raise ConfigError(path, f"{text!r}: {_HOST_FIELDS[rtype]} must be a host name, not an "
                      f"address ({host} would be served as the name {served}); give the name "
                      "of a host that has the address")
