"""Who may transfer: a secondary's address or an allow rule's network, each with the key (if
any) its queries must be signed with."""

from __future__ import annotations

import ipaddress

from healthdns.shared.config import TransferSpec


class Access:
    """Who may transfer: a secondary's address or an allow rule's network, each with the key
    (if any) its queries must be signed with."""

    def __init__(self, spec: TransferSpec) -> None:
        self.rules: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = []
        self.secondaries: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        for secondary in spec.secondaries:
            host = secondary.address.rsplit(":", 1)[0].strip("[]")
            self.rules.append((ipaddress.ip_network(host), secondary.key))
            self.secondaries.add(ipaddress.ip_address(host))
        for rule in spec.allow:
            self.rules += [(ipaddress.ip_network(n), rule.key) for n in rule.networks]

    def keys(self, host: str) -> set[str]:
        """The keys a client at `host` may sign with ("": unsigned allowed); empty: none."""
        address = _address(host)
        if address is None:
            return set()
        return {key for network, key in self.rules if address in network}

    def admits(self, host: str) -> bool:
        """Whether any secondary entry or allow rule admits the address `host`."""
        return bool(self.keys(host))

    def is_secondary(self, host: str) -> bool:
        """Whether `host` is the address of a configured secondary."""
        return _address(host) in self.secondaries


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A peer's address; an IPv4-mapped IPv6 one as the IPv4 address; None if not one."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
