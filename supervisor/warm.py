"""Warm start: the health a previous supervisor knew, read back from the state file.

The supervisor keeps each target's health (up, and since when) in the control state file next to
the overrides (`Steering.save`). A restarted server that finds it young enough sends it to the
signer before the prober's first round, so its first answers already leave out the backends the
old process knew were down; the first round then corrects it. Anything doubtful (too old, not
readable, not covering every target of this configuration) means a cold start, as before.
"""

from __future__ import annotations

from collections.abc import Collection

import msgspec

from healthdns.shared.config import Config

MAX_BYTES = 16 << 20  # ten thousand targets take well under 1 MB


class Health(msgspec.Struct, frozen=True):
    """The "health" member of the state file: prober target id -> [up, since (wall clock)]."""

    saved: float  # wall clock
    targets: dict[str, tuple[bool, float | None]]


class _File(msgspec.Struct, frozen=True):
    health: Health | None = None  # the overrides, the other member, are read by `overrides`
    serials: dict[str, int] = {}  # zone -> the highest serial served (see `serials`)


def max_age(cfg: Config) -> float:
    """`server.warm_start_max_age`, or three times the longest check interval: older health
    may have changed more than once since."""
    if cfg.server.warm_start_max_age is not None:
        return cfg.server.warm_start_max_age
    return 3 * max((check.interval for _, check in cfg.checks().values()), default=0.0)


def encode(probed: dict[str, bool], since: dict[str, float], now: float) -> Health:
    return Health(now, {t: (up, since.get(t)) for t, up in probed.items()})


def load(path: str | None, now: float, oldest: float,
         targets: Collection[str]) -> tuple[dict[str, tuple[bool, float | None]] | None, str]:
    """The saved health of every one of `targets`, or None; and a line that says which, why."""
    if path is None:
        return None, "cold start: no control.state_file to keep health in"
    if oldest <= 0:
        return None, "cold start: server.warm_start_max_age is 0"
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
        saved = msgspec.json.decode(data, type=_File).health if len(data) <= MAX_BYTES else None
    except FileNotFoundError:
        return None, f"cold start: {path} does not exist yet"
    except (OSError, msgspec.DecodeError) as e:
        return None, f"cold start: cannot read the health kept in {path}: {e}"
    if saved is None:
        return None, f"cold start: {path} holds no health"
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
            f"warm start: serving the health kept {age:.1f} s ago in {path} ({down} of "
            f"{len(targets)} targets down) until the first round of checks")


def serials(path: str) -> tuple[dict[str, int], str | None]:
    """The highest serial a previous process served per zone, kept in the state file whatever
    its age: serials may run ahead of the clock (several changes a second), and a new signer
    that started from the clock could go below what secondaries hold. The problem, if any."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            return {}, f"{path}: larger than {MAX_BYTES} bytes; serials start from the clock"
        return msgspec.json.decode(data, type=_File).serials, None
    except FileNotFoundError:
        return {}, None
    except (OSError, msgspec.DecodeError) as e:
        return {}, f"cannot read the serials kept in {path}: {e}; serials start from the clock"
