"""The first round's summary, one line per zone: the start state an operator reads first.

Per-target lines say which backends are down; at ten thousand targets they do not say what a
zone serves. One line per zone with its up and down counts does, and stays one line per zone
however large its pools are.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from healthdns.shared.config import Config

log = logging.getLogger("healthdns.prober")

Zones = Mapping[str, Sequence[str]]  # zone origin -> the target ids its pools check


def zone_targets(cfg: Config) -> dict[str, tuple[str, ...]]:
    """Each zone's check targets, once each, in config order (aliases serve the same ones)."""
    out: dict[str, tuple[str, ...]] = {}
    for zone in cfg.zones:
        seen: dict[str, None] = {}  # an ordered set
        for record in zone.records.values():
            for group in record.pool.groups if record.pool is not None else ():
                assert group.check is not None  # normalised
                for address in group.addresses:
                    seen[group.check.target(address)] = None
        out[zone.origin.rstrip(".") or "."] = tuple(seen)  # as names are logged: no final dot
    return out


def counts(states: Mapping[str, bool], zones: Zones) -> list[tuple[str, int, int]]:
    """(zone, up, down) for every zone, in order; a target not in `states` counts as neither."""
    out = []
    for zone, targets in zones.items():
        known = [states[t] for t in targets if t in states]
        up = sum(known)
        out.append((zone, up, len(known) - up))
    return out


def log_first_round(states: Mapping[str, bool], zones: Zones) -> None:
    for zone, up, down in counts(states, zones):
        if up + down == 0:
            log.info("first round: zone %s: no health checks (static answers only)", zone,
                     extra={"zone": zone, "up": 0, "down": 0})
            continue
        log.info("first round: zone %s: %d up, %d down", zone, up, down,
                 extra={"zone": zone, "up": up, "down": down})
