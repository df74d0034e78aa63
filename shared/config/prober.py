"""The prober process, and how many checks it keeps in flight."""

from __future__ import annotations

import math
import resource
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING

import msgspec

from healthdns.shared.config.checks import CheckSpec
from healthdns.shared.config.values import Frozen, canonical_address, within
from healthdns.shared.errors import ConfigError

if TYPE_CHECKING:
    from healthdns.shared.config.zones import ZoneSpec


class ProberSpec(Frozen, frozen=True):
    """The prober process."""

    # Checks in flight at once (each holds a socket); 0: sized from the targets (normalised:
    # the number, see `parallel_for`).
    parallel: int = 0
    fence_min_targets: int = 10  # self-fencing from this many targets up; 0: never
    # The addresses checks are sent from, at most one IPv4 and one IPv6 (a vantage's own
    # address on a host with several); none: the kernel's choice.
    source: tuple[str, ...] = ()
    # Set by normalisation, never in the file: this instance's `peers.name` ("" without
    # peers); the prober runs only the checks whose `vantages` name it, or name none.
    vantage: str = ""


def distinct_checks(zones: tuple[ZoneSpec, ...]) -> dict[str, tuple[str, CheckSpec]]:
    out: dict[str, tuple[str, CheckSpec]] = {}
    for zone in zones:
        for record in zone.records.values():
            for group in record.pool.groups if record.pool is not None else ():
                check = group.check
                assert check is not None  # normalised
                for address in group.addresses:
                    out[check.target(address)] = (check.checked(address), check)
    return out


# The prober's parallel checks: enough for every check to start on time when every target is
# silent, each check then holding its socket for its whole timeout.

PARALLEL_FLOOR = 2048  # the least: a first round of a few thousand targets starts at once
PARALLEL_MAX = 1 << 20  # Linux's default nr_open: no process holds more files
CHECK_SLACK = 0.05  # seconds a slot stays taken past a timeout (timer batching, loop delay)
FILES_KEPT = 64  # descriptors the prober needs besides its checks (pipe, loop, logs, HTTP)


def in_flight(checks: Mapping[str, tuple[str, CheckSpec]]) -> int:
    """Checks in flight at once when no target answers: each target holds one slot for its
    timeout once per interval (never two: a check that overruns delays the next)."""
    load = sum(min(1.0, (spec.timeout + CHECK_SLACK) / spec.interval)
               for _, spec in checks.values())
    return math.ceil(load)


def file_room() -> int:
    """The checks the prober's open files limit holds (it raises its soft limit to the hard)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    files = PARALLEL_MAX if hard == resource.RLIM_INFINITY else min(hard, PARALLEL_MAX)
    return max(1, files - FILES_KEPT)


def parallel_for(checks: Mapping[str, tuple[str, CheckSpec]]) -> int:
    """The default `prober.parallel`: every check on time with every target silent, with a
    tenth to spare, at least PARALLEL_FLOOR, at most what the open files limit holds."""
    return min(max(PARALLEL_FLOOR, math.ceil(in_flight(checks) * 1.1)), file_room())


def normalise_prober(raw: ProberSpec, zones: tuple[ZoneSpec, ...]) -> ProberSpec:
    within(raw.parallel, 0, PARALLEL_MAX, "prober.parallel")
    if raw.fence_min_targets < 0 or raw.fence_min_targets == 1:
        raise ConfigError("prober.fence_min_targets",
                          f"{raw.fence_min_targets} is neither 0 (never) nor 2 or more")
    source = _sources(raw.source)
    if raw.parallel:
        return msgspec.structs.replace(raw, source=source)
    return msgspec.structs.replace(raw, source=source,
                                   parallel=parallel_for(distinct_checks(zones)))


def _sources(raw: tuple[str, ...]) -> tuple[str, ...]:
    """Each source in canonical form, one per family; it must be this host's (bound once)."""
    found: dict[int, str] = {}
    for i, text in enumerate(raw):
        path = f"prober.source[{i}]"
        address = canonical_address(text, path)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        if family in found:
            raise ConfigError(path, f"{address}: a source of this family is already given "
                              f"({found[family]}); one per family")
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.bind((address, 0))
        except OSError as e:
            raise ConfigError(path, f"{address} is not an address of this host "
                              f"({e.strerror or e})") from None
        found[family] = address
    return tuple(found.values())
