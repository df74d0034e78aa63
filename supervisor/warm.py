"""Warm start: the health a previous supervisor knew, read back from the state file.

The supervisor keeps each target's health (up, and since when) in the control state file next to
the overrides (`Steering.save`, `state`). A restarted server that finds it young enough sends it
to the signer before the prober's first round, so its first answers already leave out the
backends the old process knew were down; the first round then corrects it. Anything doubtful
(too old, a state file that is not believed, not covering every target of this configuration)
means a cold start.
"""

from __future__ import annotations

from collections.abc import Collection

import msgspec

from healthdns.shared.config import Config


class Health(msgspec.Struct, frozen=True):
    """The state file's health: prober target id -> [up, since (wall clock)]."""

    saved: float  # wall clock
    targets: dict[str, tuple[bool, float | None]]


def max_age(cfg: Config) -> float:
    """`server.warm_start_max_age`, or three times the longest check interval: older health
    may have changed more than once since."""
    if cfg.server.warm_start_max_age is not None:
        return cfg.server.warm_start_max_age
    return 3 * max((check.interval for _, check in cfg.checks().values()), default=0.0)


def encode(probed: dict[str, bool], since: dict[str, float], now: float) -> Health:
    return Health(now, {t: (up, since.get(t)) for t, up in probed.items()})


def load(saved: Health, path: str, now: float, oldest: float,
         targets: Collection[str]) -> tuple[dict[str, tuple[bool, float | None]] | None, str]:
    """The saved health of every one of `targets`, or None; and a line that says which, why.

    `saved`: what the state file `path` keeps (see `state`), already checked.
    """
    if oldest <= 0:
        return None, "cold start: server.warm_start_max_age is 0"
    age = now - saved.saved
    if not 0 <= age <= oldest:
        return None, (f"cold start: the health in {path} is {age:.1f} s old "
                      f"(server.warm_start_max_age: {oldest:g} s)")
    missing = [t for t in targets if t not in saved.targets]
    if missing:
        return None, (f"cold start: the health in {path} lacks {len(missing)} of the "
                      f"{len(targets)} targets of this configuration")
    down = sum(not saved.targets[t][0] for t in targets)
    return ({t: saved.targets[t] for t in targets},
            (f"warm start: serving the health kept {age:.1f} s ago in {path} ({down} of "
            f"{len(targets)} targets down) until the first round of checks"))
