"""What a reload may change, and what it changed: the supervisor's half of a reload.

The supervisor validates the new file completely (what `--check-config` checks) before any of
it reaches a child; `fixed` then refuses what only a restart can change, so a reload either
applies whole or not at all (CoreDNS's reload works the same way: parse all, swap on success).
"""

from __future__ import annotations

import hashlib

import msgspec

from healthdns.shared.config import Config

# Settings a running server cannot take: the processes already run as the user, the control
# endpoint is bound, the RRL table shared by the responders was sized at start, and the
# transfer process was started (or not) with its listeners, secondaries and keys.
_RESTART_ONLY = (
    ("server.user", lambda c: c.server.user),
    ("server.group", lambda c: c.server.group),
    ("control.listen", lambda c: c.control.listen),
    ("control.state_file", lambda c: c.control.state_file),
    ("rrl (on or off)", lambda c: c.rrl.active()),
    ("rrl.table_size", lambda c: c.rrl.table_size),
    # The transfer process is spawned (or not) at start with its listeners and secondaries.
    ("transfer", lambda c: c.transfer),
    ("tsig (with transfers on)", lambda c: _keys(c) if c.transfer.enabled() else ()),
)


def _keys(config: Config) -> tuple[tuple[str, str, str], ...]:
    """The keys as a reload error may show them: a digest stands for each secret."""
    return tuple((k.name, k.algorithm,
                  "sha256:" + hashlib.sha256(k.secret.encode()).hexdigest()[:12])
                 for k in config.tsig)


class RestartNeeded(Exception):
    """The new configuration changes a setting that only a restart applies."""


def check_fixed(old: Config, new: Config) -> None:
    """Raise `RestartNeeded` naming the first setting a reload cannot change."""
    for field, get in _RESTART_ONLY:
        before, after = get(old), get(new)
        if before != after:
            raise RestartNeeded(f"{field} changed from {before!r} to {after!r}: that takes a "
                                "restart (see \"Changing a running server\" in "
                                "docs/operations.md)")


def changes(old: Config, new: Config) -> list[str]:
    """What the new configuration changes, for the "reloaded:" log line."""
    found = []
    before = {z.origin: z for z in old.zones}
    after = {z.origin: z for z in new.zones}
    for verb, names in (("added", after.keys() - before.keys()),
                        ("removed", before.keys() - after.keys()),
                        ("changed", {o for o in before.keys() & after.keys()
                                     if before[o] != after[o]})):
        if names:
            found.append(f"zones {verb}: {', '.join(sorted(names))}")
    if old.server.responders != new.server.responders:
        found.append(f"responders {old.server.responders} -> {new.server.responders}")
    fields = [f"server.{f}" for f in msgspec.structs.asdict(old.server)
              if f != "responders" and getattr(old.server, f) != getattr(new.server, f)]
    fields += [s for s in ("rrl", "cookies", "prober", "control", "transfer", "tsig")
               if getattr(old, s) != getattr(new, s)]
    if fields:
        found.append(f"settings: {', '.join(fields)}")
    return found or ["nothing"]
