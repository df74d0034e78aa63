"""Guards against abuse of the responders: Response Rate Limiting and DNS cookies."""

from __future__ import annotations

import msgspec

from healthdns.shared.config.values import Frozen, ip_networks, within
from healthdns.shared.errors import ConfigError

RRL_DEFAULT_RATE = 5  # responses per second: BIND's and Knot's documented starting point


class RrlSpec(Frozen, frozen=True):
    """Response Rate Limiting of UDP answers per client prefix (docs: `[rrl]`).

    Off unless `enabled = true` or a rate is given; a rate of 0 leaves that class unlimited.
    """

    # Normalised, the four below are set: `enabled` to `active()`, the rates to `rates()`.
    enabled: bool | None = None  # None: on exactly when responses_per_second is given
    responses_per_second: int | None = None  # positive answers per prefix and name
    nxdomains_per_second: int | None = None  # None: as responses_per_second
    errors_per_second: int | None = None  # None: as responses_per_second
    window: int = 15  # seconds of excess a flooding prefix must wait out (BIND's window)
    slip: int = 2  # every Nth limited answer goes out truncated (TC=1); 0: drop every one
    dry_run: bool = False  # count what would be limited, limit nothing
    ipv4_prefix: int = 24
    ipv6_prefix: int = 56
    exempt: tuple[str, ...] = ()  # networks never limited, e.g. "192.0.2.0/24"
    table_size: int = 65536  # accounts in the table shared by the responders

    def active(self) -> bool:
        return self.enabled if self.enabled is not None else self.responses_per_second is not None

    def rates(self) -> tuple[int, int, int]:
        """Responses per second for (positive and large, NXDOMAIN, error) answers."""
        base = RRL_DEFAULT_RATE if self.responses_per_second is None \
            else self.responses_per_second
        nxdomain = base if self.nxdomains_per_second is None else self.nxdomains_per_second
        error = base if self.errors_per_second is None else self.errors_per_second
        return base, nxdomain, error


class CookieSpec(Frozen, frozen=True):
    """DNS cookies (RFC 7873) with interoperable server cookies (RFC 9018)."""

    enabled: bool = True
    rotation: int = 3600  # seconds each secret is used to mint cookies; the previous one
    # is still accepted for as long again


def normalise_rrl(raw: RrlSpec) -> RrlSpec:
    for name in ("responses_per_second", "nxdomains_per_second", "errors_per_second"):
        rate = getattr(raw, name)
        if rate is not None and not 0 <= rate <= 1_000_000:
            raise ConfigError(f"rrl.{name}", f"{rate} is not between 0 and 1000000")
    within(raw.window, 1, 3600, "rrl.window", " seconds")
    within(raw.slip, 0, 10, "rrl.slip")
    within(raw.ipv4_prefix, 8, 32, "rrl.ipv4_prefix")
    within(raw.ipv6_prefix, 16, 128, "rrl.ipv6_prefix")
    within(raw.table_size, 1024, 16_777_216, "rrl.table_size")
    exempt = ip_networks(raw.exempt, "rrl.exempt")
    base, nxdomain, error = raw.rates()
    return msgspec.structs.replace(raw, enabled=raw.active(), responses_per_second=base,
                                   nxdomains_per_second=nxdomain, errors_per_second=error,
                                   exempt=exempt)


def normalise_cookies(raw: CookieSpec) -> CookieSpec:
    # RFC 9018 4.3: a cookie is good for an hour; a shorter rotation ends it sooner.
    within(raw.rotation, 60, 86400, "cookies.rotation", " seconds")
    return raw
