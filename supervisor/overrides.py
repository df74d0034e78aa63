"""Admin overrides, like gdnsd's admin_state: an operator drains (down) or forces (up) a served
address, or a whole name, whatever the checks say, optionally until a time and with a reason.

Bookkeeping, and the control endpoint's write calls (`write`); the state file is `state`'s.
The supervisor applies `Overrides.effective` to the health it forwards to the signer, and sends
the name overrides (`Overrides.names`) along with it, so an override changes the answers in the
next generation. Times are wall-clock seconds (they are kept in a file across restarts) and
passed in, so tests are exact.

A name override decides the whole pool of that name, above the overrides of its addresses (the
signer judges every address of the name as drained or forced).

When one check judges several served addresses (a pool's `check.address`), a drain of any of
them drains the check, and a drain beats a force: taking an address out is the safe side.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import msgspec

log = logging.getLogger("healthdns.supervisor")

ACTIONS = ("drain", "force")
MAX_REASON = 200  # characters: a note for the operator, not a document
MAX_BY = 64  # characters of who set an override ("alice@bastion")
# The longest an override may be asked to last: a year. A hold meant to be longer is meant to
# be permanent (no `expires_in`) or a change of the configuration.
MAX_EXPIRES_IN = 365 * 86400


class OverrideError(ValueError):
    """An override request that cannot be applied; the text says which field and why."""


class Override(msgspec.Struct, frozen=True, kw_only=True):
    """One override of one served address, or of one name (exactly one of them is set)."""

    address: str = ""
    name: str = ""
    action: str  # one of ACTIONS
    reason: str = ""
    by: str = ""  # who set it, as the client says (the token is one for everyone)
    expires: float | None = None  # wall-clock seconds; None: until removed
    created: float = 0.0


class Overrides:
    """The overrides in force, by served address and by name."""

    def __init__(self, known: set[str], names: set[str] | None = None) -> None:
        self.known = known  # the served addresses an override may name
        self.known_names = names or set()  # the names with a checked pool
        self.by_address: dict[str, Override] = {}
        self.by_name: dict[str, Override] = {}

    def set(self, override: Override, now: float) -> None:
        """Add or replace the override of an address or a name; an OverrideError says what
        is wrong."""
        if bool(override.address) == bool(override.name):
            raise OverrideError("address, name: give one of them")
        if override.name and override.name not in self.known_names:
            raise OverrideError(f"name: {override.name!r} is not a name with a checked pool")
        if override.address and override.address not in self.known:
            raise OverrideError(f"address: {override.address!r} is not an address of any "
                                "checked pool")
        if override.action not in ACTIONS:
            raise OverrideError(f"action: expected one of {', '.join(ACTIONS)}, got "
                                f"{override.action!r}")
        _check_times(override, now)
        if len(override.reason) > MAX_REASON:
            raise OverrideError(f"reason: longer than {MAX_REASON} characters")
        if len(override.by) > MAX_BY:
            raise OverrideError(f"by: longer than {MAX_BY} characters")
        if override.name:
            self.by_name[override.name] = override
        else:
            self.by_address[override.address] = override

    def remove(self, key: str, action: str | None = None) -> bool:
        """Drop the override of an address or a name (only if it is an `action`, when given);
        False if it had none. An OverrideError when it holds the other action."""
        held = self.by_address.get(key) or self.by_name.get(key)
        if held is None:
            return False
        if action is not None and held.action != action:
            raise OverrideError(f"{key!r} is held by a {held.action}, not a {action}")
        (self.by_address if held.address else self.by_name).pop(key)
        return True

    def expire(self, now: float) -> list[Override]:
        """Drop the overrides whose time has come; the dropped ones."""
        gone = [o for o in self.listing() if o.expires is not None and o.expires <= now]
        for override in gone:
            self.remove(override.name or override.address)
        return gone

    def next_expiry(self) -> float | None:
        return min((o.expires for o in self.listing() if o.expires is not None), default=None)

    def names(self) -> dict[str, bool]:
        """Every name override, as the signer takes them: name -> forced up."""
        return {name: o.action == "force" for name, o in self.by_name.items()}

    def effective(self, probed: bool, addresses: tuple[str, ...]) -> bool:
        """The health the signer is given for a check whose probe says `probed` and that
        judges the served `addresses`."""
        action = self.action(addresses)
        return action != "drain" and (probed or action == "force")

    def action(self, addresses: tuple[str, ...]) -> str | None:
        """The override that decides a check of `addresses`, if any. Asked for every target
        whose health changes: with no address held it costs one test."""
        if not self.by_address:
            return None
        held = [self.by_address[a].action for a in addresses if a in self.by_address]
        return "drain" if "drain" in held else (held[0] if held else None)

    def listing(self) -> list[Override]:
        return sorted([*self.by_address.values(), *self.by_name.values()],
                      key=lambda o: (o.name, o.address))

    def restore(self, kept: list[Override], now: float) -> list[str]:
        """Take the overrides a previous process kept (see `state`); the problems met, one
        line each (an override that no longer applies is dropped, not fatal)."""
        problems = []
        for override in kept:
            try:
                self.set(override, now)
            except OverrideError as e:
                problems.append(f"override of {override.name or override.address!r} "
                                f"dropped: {e}")
        return problems


def expiry(expires_in: object, now: float) -> float | None:
    """When an override asked to last `expires_in` seconds (a request's field) ends; None
    when it is not given (until removed). An OverrideError names the field: a time that is
    not a finite number within (0, MAX_EXPIRES_IN] would never end, or make the status
    document invalid JSON (NaN)."""
    if expires_in is None:
        return None
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        raise OverrideError(f"expires_in: {_shown(expires_in)} is not a number of seconds")
    # An int is compared as it is: one too large for a float must not raise OverflowError.
    finite = isinstance(expires_in, int) or math.isfinite(expires_in)
    if not (finite and 0 < expires_in <= MAX_EXPIRES_IN):
        raise OverrideError(f"expires_in: {_shown(expires_in)} is not between 0 and "
                            f"{MAX_EXPIRES_IN} seconds (365 days); leave it out for an "
                            "override that holds until removed")
    return now + expires_in


def _check_times(override: Override, now: float) -> None:
    """Times that can be kept and shown: finite, an expiry in the future and within reach
    (a state file is read back through here too)."""
    if not math.isfinite(override.created):
        raise OverrideError("created: not a finite time")
    if override.expires is None:
        return
    if not math.isfinite(override.expires):
        raise OverrideError("expires: not a finite time")
    if override.expires <= now:
        raise OverrideError("expires: the time has already passed")
    if override.expires > now + MAX_EXPIRES_IN:
        raise OverrideError(f"expires: more than {MAX_EXPIRES_IN} seconds (365 days) ahead")


def _shown(value: object) -> str:
    """A bad value as the error shows it: short, whatever the client sent."""
    text = json.dumps(value) if isinstance(value, str | int | float | bool) else \
        type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def write(overrides: Overrides, op: str, fields: dict[str, Any],
      now: float) -> dict[str, object]:
    """Carry out one write call of the control endpoint ("set" or "remove"); its answer
    (`status` other than 200 on an error)."""
    if op == "remove":
        key, action = str(fields.get("key")), fields.get("action")
        if action is not None and action not in ACTIONS:
            return {"status": 400, "error": f"action: expected one of "
                    f"{', '.join(ACTIONS)}, got {str(action)[:20]!r}"}
        try:
            if not overrides.remove(key, None if action is None else str(action)):
                return {"status": 404, "error": f"no override of {key!r}"}
        except OverrideError as e:
            return {"status": 409, "error": str(e)}
        log.info("override removed: %s", key)
        return {"removed": key}
    try:
        override = Override(
            address=str(fields.get("address", "")), name=_name(fields.get("name", "")),
            action=str(fields.get("action", "")), reason=str(fields.get("reason", "")),
            by=str(fields.get("by", "")), created=now,
            expires=expiry(fields.get("expires_in"), now))
        overrides.set(override, now)
    except (OverrideError, TypeError, ValueError) as e:
        return {"status": 400, "error": str(e)}
    log.info("override set: %s %s (%s)%s", override.action,
             override.name or override.address, override.reason or "no reason given",
             f" by {override.by}" if override.by else "")
    return {"address": override.address, "name": override.name,
            "action": override.action, "expires": override.expires}


def _name(value: object) -> str:
    """A name as an operator types it: any case, with or without the final dot."""
    return str(value).lower().rstrip(".") if value else ""
