"""Admin overrides, like gdnsd's admin_state: an operator drains (down) or forces (up) a served
address, or a whole name, whatever the checks say, optionally until a time and with a reason.

Pure bookkeeping (the state file is `state`'s): the supervisor applies `Overrides.effective` to
the health it forwards to the signer, and sends the name overrides (`Overrides.names`) along with
it, so an override changes the answers in the next generation. Times are wall-clock seconds (they
are kept in a file across restarts) and passed in, so tests are exact.

A name override decides the whole pool of that name, above the overrides of its addresses (the
signer judges every address of the name as drained or forced).

When one check judges several served addresses (a pool's `check.address`), a drain of any of
them drains the check, and a drain beats a force: taking an address out is the safe side.
"""

from __future__ import annotations

import msgspec

ACTIONS = ("drain", "force")
MAX_REASON = 200  # characters: a note for the operator, not a document


class OverrideError(ValueError):
    """An override request that cannot be applied; the text says which field and why."""


class Override(msgspec.Struct, frozen=True, kw_only=True):
    """One override of one served address, or of one name (exactly one of them is set)."""

    address: str = ""
    name: str = ""
    action: str  # one of ACTIONS
    reason: str = ""
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
        if override.expires is not None and override.expires <= now:
            raise OverrideError("expires: the time has already passed")
        if len(override.reason) > MAX_REASON:
            raise OverrideError(f"reason: longer than {MAX_REASON} characters")
        if override.name:
            self.by_name[override.name] = override
        else:
            self.by_address[override.address] = override

    def remove(self, key: str) -> bool:
        """Drop the override of an address or a name; False if it had none."""
        return (self.by_address.pop(key, None) or self.by_name.pop(key, None)) is not None

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
        actions = {self.by_address[a].action for a in addresses if a in self.by_address}
        if "drain" in actions:
            return False
        return probed or "force" in actions

    def action(self, addresses: tuple[str, ...]) -> str | None:
        """The override that decides a check of `addresses`, if any."""
        actions = {self.by_address[a].action for a in addresses if a in self.by_address}
        return "drain" if "drain" in actions else ("force" if actions else None)

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
