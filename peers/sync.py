"""Keeping a peer's copy of this instance's view in step without sending it whole each time.

A view (target id -> up) has a *digest*: the sum, modulo 2^128, of a BLAKE2b-128 hash of each
(target, state) entry. A sum can be kept up to date entry by entry (take the old entry's hash
away, add the new one's), so neither end hashes the whole view for a change of one target;
and it does not depend on the order the entries are held in. It detects copies that went
apart (a lost report, a restarted peer); it is not what authenticates a report: the HMAC over
the body is.

The sender keeps, for each peer, the digest of the view that peer is known to hold (`Outbox`:
its last report answered 204) and the changes made since. A report is then:

* *whole*: the view, with its digest: the first one, and whenever the peer's copy is unknown
  (it asked for the whole view: status 409) or the changes would be most of the view;
* *changes*: the entries changed since, the digest they apply to (`base`) and the digest after
  them. The heartbeat is one with no changes: about 100 bytes, whatever the view's size.

The receiver (`Tally.apply`) takes changes only onto a copy whose digest is `base`, and keeps
the result only if its digest is the report's: anything else answers 409, and the sender sends
the view whole at once. A copy is thus either the sender's view or known to be out of step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from healthdns.peers import wire

MOD = 1 << 128
RESYNC = 409  # the receiver's answer when its copy is not the one changes apply to


def entry(target: str, up: bool) -> int:
    data = target.encode() + (b"\x00\x01" if up else b"\x00\x00")
    return int.from_bytes(hashlib.blake2b(data, digest_size=16).digest(), "big")


def digest(states: Mapping[str, bool]) -> int:
    return sum(entry(t, up) for t, up in states.items()) % MOD


def to_bytes(value: int) -> bytes:
    return value.to_bytes(16, "big")


class OutOfStep(Exception):
    """Changes that do not apply to the copy held: the sender is to send the view whole."""


@dataclass
class Tally:
    """A view and its digest, kept in step entry by entry."""

    states: dict[str, bool] = field(default_factory=dict)
    sum: int = 0

    @classmethod
    def of(cls, states: Mapping[str, bool]) -> Tally:
        return cls(dict(states), digest(states))

    def update(self, changes: Mapping[str, bool]) -> dict[str, bool]:
        """Apply `changes`; the ones that changed an entry (a new target counts)."""
        done: dict[str, bool] = {}
        states, total = self.states, self.sum
        for target, up in changes.items():
            old = states.get(target)
            if old is up:
                continue
            if old is not None:
                total -= entry(target, old)
            total += entry(target, up)
            states[target] = up
            done[target] = up
        self.sum = total % MOD
        return done

    def apply(self, changes: Mapping[str, bool], base: bytes, after: bytes) -> Tally:
        """The copy `changes` make of this one, which must have digest `base`, and must end
        with digest `after`; `OutOfStep` otherwise. This one is left as it was."""
        if to_bytes(self.sum) != base:
            raise OutOfStep("changes to a view this instance does not hold")
        if not changes:
            if base != after:
                raise OutOfStep("no changes, yet another digest")
            return self
        copy = Tally(dict(self.states), self.sum)
        copy.update(changes)
        if to_bytes(copy.sum) != after:
            raise OutOfStep("the changes do not make the sender's view")
        return copy


@dataclass
class Outbox:
    """What one peer is known to hold of this instance's view, and what changed since."""

    synced: bytes | None = None  # the digest of its copy; None: unknown, send it whole
    pending: dict[str, bool] = field(default_factory=dict)

    def changed(self, changes: Mapping[str, bool]) -> None:
        """Kept while a whole view is on its way too: they may have missed it."""
        self.pending.update(changes)

    def resync(self) -> None:
        self.synced, self.pending = None, {}

    def whole(self, size: int) -> bool:
        """Send the view whole: the peer's copy is unknown, or the changes are most of it
        (a quarter of the entries already costs about as much as all of them)."""
        return self.synced is None or len(self.pending) * 4 > size

    def report(self, sender: str, sent: float, mine: Tally, fenced: bool,
               secret: bytes) -> tuple[wire.Report, bytes, dict[str, bool]]:
        """What the peer is sent now: the view whole, or what changed since the copy it
        holds (nothing: the heartbeat); the report, its body, and the changes it takes."""
        digest, base = to_bytes(mine.sum), self.synced
        whole = base is None or self.whole(len(mine.states))
        taken, self.pending = self.pending, {}
        if whole or base is None:
            report = wire.Report(sender, sent, mine.states, fenced, digest=digest)
            taken = {}
        else:
            report = wire.Report(sender, sent, taken, fenced, whole=False, base=base,
                                 digest=digest)
        return report, wire.encode(report, secret)[0], taken

    def answered(self, report: wire.Report, taken: dict[str, bool], status: int) -> bool:
        """Keep in step with what the peer answered `report`: taken (204), out of step
        (409: True, the view is to go whole now), or not known (0 or another status). Not
        known, the peer is taken to hold what it was sent if that was whole (a whole view
        that timed out here was often taken there; if not, the next report is answered 409
        and the view goes whole again), and not to hold changes, which go again with the
        next report (if they were applied after all, that one is answered 409)."""
        if status == 204 or (report.whole and status != RESYNC):
            self.synced = report.digest
        elif status == RESYNC:
            self.resync()
            return True
        else:
            self.pending = {**taken, **self.pending}
        return False
