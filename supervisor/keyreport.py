"""`healthdns-ctl keys`: the keys of zones under a DNSSEC policy, read from their state files.

The signer writes each zone's state file (`shared/keystate.py`) at every step of a roll and
whenever what the parent serves changes; this reads it on the same host, with the rights of
whoever runs it (the folder is mode 700: root or the user the signer runs as). It says for
each key its role, state and dates, and for the zone the next step, its earliest time and what
it waits for, in words.
"""

from __future__ import annotations

import datetime
import json
import time
from typing import Any

import msgspec

from healthdns.shared import config, files, keystate
from healthdns.shared.errors import ConfigError


class ReportError(Exception):
    """What keeps the keys from being shown, in words."""


def report(config_path: str, zone: str | None, as_json: bool,
           now: float | None = None) -> str:
    """The text (or JSON) of every policy zone's keys, or of `zone`'s alone."""
    states = _states(config_path, zone)
    if as_json:
        return json.dumps([msgspec.to_builtins(s) for s in states], indent=2) + "\n"
    now = time.time() if now is None else now
    return "".join(_zone_text(s, now) for s in states)


def _states(config_path: str, zone: str | None) -> list[keystate.RollState]:
    try:
        cfg = config.load(config_path)
    except ConfigError as e:
        raise ReportError(f"--config: {e}") from None
    found = []
    for spec in cfg.zones:
        dnssec = spec.dnssec
        if dnssec is None or dnssec.policy is None or dnssec.key_dir is None:
            continue
        if zone is not None and keystate.label(zone) != keystate.label(spec.origin):
            continue
        path = keystate.path_of(dnssec.key_dir, spec.origin)
        try:
            found.append(keystate.read(path))
        except files.FileProblem as e:
            raise ReportError(f"{e} (the signer writes it when it starts; reading it needs "
                              "the rights of the user the signer runs as)") from None
        except msgspec.DecodeError as e:
            raise ReportError(f"{path}: not a key state file: {e}") from None
    if not found:
        which = f"zone {zone}" if zone is not None else "any zone"
        raise ReportError(f"{which}: no [zones.dnssec.policy] in {config_path}: the signer "
                          "rolls no keys of it")
    return found


def view(state: keystate.RollState, now: float) -> dict[str, Any]:
    """A zone's keys and roll as `healthdns-ctl keys` says them, as JSON-able facts (the
    /status "keys" section): times are Unix times, `waits` the lines of what it waits for."""
    parent = state.waits_for_parent or bool(state.parent_missing or state.parent_stray)
    return {
        "zone": state.zone.rstrip("."), "algorithm": state.algorithm, "phase": _kind(state),
        "keys": [{"tag": k.tag, "role": k.role, "algorithm": k.algorithm or state.algorithm,
                  "state": k.state, "created": k.created, "published": k.published,
                  "active": k.active, "retired": k.retired, "removed": k.removed,
                  "ds_seen": k.ds_seen, "ds_gone": k.ds_gone, "ds": _ds(k)}
                 for k in state.keys],
        "next": state.next_what, "next_at": state.next_when,
        "next_in": None if state.next_when is None else max(0.0, state.next_when - now),
        "waits_for_parent": state.waits_for_parent, "held": state.held,
        "parent_asked": state.parent_asked,
        "waits": _waits(state, now) if parent else []}


def _waits(state: keystate.RollState, now: float) -> list[str]:
    """What the roll waits for at the parent, in words: the header, then a line per DS."""
    asked = (f"asked {_ago(now - state.parent_asked)}" if state.parent_asked is not None
             else "not asked yet")
    return ([f"parent ({asked}):"]
            + [f"DS {tag}: {why}" for tag, why in sorted(state.parent_missing.items())]
            + [f"warning: {line}" for line in state.parent_stray])


def _zone_text(state: keystate.RollState, now: float) -> str:
    facts = view(state, now)
    lines = [f"zone {facts['zone']} ({facts['phase']})"]
    table = [("ROLE", "TAG", "STATE", "PUBLISHED", "ACTIVE", "RETIRED", "REMOVED", "DS AT PARENT")]
    for k in facts["keys"]:
        table.append((k["role"], str(k["tag"]), k["state"], _when(k["published"]),
                      _when(k["active"]), _when(k["retired"]), _when(k["removed"]), k["ds"]))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
              for row in table]
    lines.append("  next: " + state.next_what + _at(state.next_when, now))
    waits = facts["waits"]
    lines += [f"  {line}" for line in waits[:1]] + [f"    {line}" for line in waits[1:]]
    return "\n".join(lines) + "\n"


def _kind(state: keystate.RollState) -> str:
    """The zone's algorithm, and whether it rolls to it or its DNSSEC is being turned off."""
    if state.unsigned is not None:
        return f"unsigned since {_when(state.unsigned)}"
    if state.unsigning is not None:
        return (f"{state.algorithm}, DNSSEC being turned off: the delete CDS served since "
                f"{_when(state.unsigning)}")
    if state.algorithm_roll is not None:
        return (f"{state.algorithm}, an algorithm roll from {state.algorithm_roll.old} since "
                f"{_when(state.algorithm_roll.started)}")
    return state.algorithm


def _ds(k: keystate.KeyEntry) -> str:
    if k.role == "zsk":
        return ""
    if k.ds_gone is not None:
        return f"gone since {_when(k.ds_gone)}"
    if k.ds_seen is not None:
        return f"served since {_when(k.ds_seen)}"
    return "not yet seen"


def _at(when: float | None, now: float) -> str:
    if when is None:
        return ""
    if when <= now:
        return " (due now)"
    return f" (at {_when(when)}, in {_ago(when - now, ago=False)})"


def _ago(seconds: float, ago: bool = True) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            text = f"{seconds / size:.0f} {unit}"
            break
    else:
        text = f"{seconds:.0f} s"
    return text + (" ago" if ago else "")


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")
