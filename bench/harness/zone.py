"""The zone every server serves, in each server's own format."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

from harness import HOST

ZONE = "example.test"
NS = "ns1.example.net"
BASE_A = {
    "www": ("192.0.2.10", "192.0.2.11"),
    "mail": ("192.0.2.25",),
    "api": ("192.0.2.30",),
    "db": ("192.0.2.40",),
}


@dataclasses.dataclass(frozen=True)
class Zone:
    extra: int  # n00001..nNNNNN

    def width(self) -> int:
        return max(5, len(str(self.extra)))

    def extra_names(self) -> Iterator[tuple[str, str]]:
        for i in range(1, self.extra + 1):
            yield f"n{i:0{self.width()}d}", f"192.0.2.{(i - 1) % 254 + 1}"

    def a_records(self) -> Iterator[tuple[str, tuple[str, ...]]]:
        yield from BASE_A.items()
        for name, address in self.extra_names():
            yield name, (address,)

    def zone_file(self) -> str:
        lines = [
            f"$ORIGIN {ZONE}.",
            "$TTL 60",
            f"@ 3600 SOA {NS}. hostmaster.{ZONE}. 1 7200 3600 1209600 60",
            f"@ 3600 NS {NS}.",
            f"@ MX 10 mail.{ZONE}.",
        ]
        for name, addresses in self.a_records():
            lines.extend(f"{name} A {address}" for address in addresses)
        return "\n".join(lines) + "\n"

    def healthdns_toml(self, port: int, responders: int, packet_cache: int | None = None) -> str:
        lines = [
            "[server]",
            f'listen = ["{HOST}:{port}"]',
            f"responders = {responders}",
            *([f"packet_cache = {packet_cache}"] if packet_cache is not None else []),
            'log_level = "warning"',
            "",
            "[[zones]]",
            f'origin = "{ZONE}"',
            f'nameservers = ["{NS}"]',
            "ttl = 60",
            "ns_ttl = 3600",
            "",
            "[zones.soa]",
            "ttl = 3600",
            "refresh = 7200",
            "retry = 3600",
            "expire = 1209600",
            "minimum = 60",
            "",
            "[zones.records]",
            '"@" = { mx = ["10 mail"] }',
        ]
        for name, addresses in self.a_records():
            lines.append(f"{name} = {{ a = {json.dumps(list(addresses))} }}")
        return "\n".join(lines) + "\n"
