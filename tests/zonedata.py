"""Zones as the signer hands them to the transfer process (`tables.ZoneRecords`), built from
zone text with dnspython, for the transfer tests."""

from __future__ import annotations

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.zone

from healthdns.shared import tables


def rr_wire(name: dns.name.Name, ttl: int, rdata: dns.rdata.Rdata) -> bytes:
    """One RR, uncompressed, owner in lower case (as `ZoneRecords` holds it)."""
    data = rdata.to_digestable()
    return (name.canonicalize().to_wire() + rdata.rdtype.to_bytes(2, "big")
            + rdata.rdclass.to_bytes(2, "big") + ttl.to_bytes(4, "big")
            + len(data).to_bytes(2, "big") + data)


def zone_records(text: str, origin: str) -> tables.ZoneRecords:
    zone = dns.zone.from_text(text, origin, relativize=False)
    soa = b""
    owners: dict[bytes, list[bytes]] = {}
    serial = 0
    for name, node in zone.nodes.items():
        for rdataset in node.rdatasets:
            for rdata in rdataset:
                wire = rr_wire(name, rdataset.ttl, rdata)
                if rdataset.rdtype == dns.rdatatype.SOA:
                    soa, serial = wire, rdata.serial  # type: ignore[attr-defined]
                else:
                    owners.setdefault(name.canonicalize().to_wire(), []).append(wire)
    return tables.ZoneRecords(zone.origin.to_wire(), serial, soa, owners)  # type: ignore[union-attr]


def zone_text(serial: int, names: int = 3, down: frozenset[int] = frozenset()) -> str:
    """example. with `names` hosts of two addresses each; hosts in `down` have one."""
    lines = [f"@ 300 IN SOA ns1 hostmaster {serial} 3600 600 86400 60",
             "@ 300 IN NS ns1", "ns1 300 IN A 192.0.2.1"]
    for i in range(names):
        lines.append(f"host{i} 30 IN A 198.51.{i // 250}.{i % 250 + 1}")
        if i not in down:
            lines.append(f"host{i} 30 IN A 203.0.{i // 250}.{i % 250 + 1}")
        lines.append(f'host{i} 30 IN TXT "{"x" * 100}"')
    return "\n".join(lines) + "\n"
