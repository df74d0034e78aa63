"""What this instance knows of each peer: its secret, its latest view, and its counters."""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from dataclasses import dataclass, field

from healthdns.peers.sync import Outbox, OutOfStep, Tally, to_bytes
from healthdns.peers.wire import REASONS, Refused, Report
from healthdns.shared import messages
from healthdns.shared.config import PeerSpec


@dataclass
class Bucket:
    """A token bucket: `rate` reports a second, a burst of as many."""

    rate: float
    tokens: float
    at: float = 0.0

    def take(self, now: float) -> bool:
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass
class Peer:
    """One peer: where to send, what it last said and when (monotonic), what was counted."""

    spec: PeerSpec
    secret: bytes
    bucket: Bucket
    report: Report | None = None  # its latest report (changes, or its whole view)
    view: Tally | None = None  # its whole view, as the reports taken make it
    outbox: Outbox = field(default_factory=Outbox)  # what it holds of this instance's view
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # something to send it now
    heard: float = -1.0  # monotonic time of its latest accepted report
    sent_at: float = 0.0  # its latest report's own timestamp (replays are older)
    received: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    failed: int = 0
    failing: str = ""  # why the latest send failed ("" once one succeeds)

    @classmethod
    def of(cls, spec: PeerSpec, rate: float) -> Peer:
        return cls(spec, base64.b64decode(spec.secret), Bucket(rate, rate))

    def accept(self, report: Report, view: Tally, now: float) -> None:
        self.report, self.view, self.heard, self.sent_at = report, view, now, report.sent
        self.received += 1

    def take(self, report: Report) -> Tally:
        """Its whole view once `report` is taken: the one held when nothing changed;
        `OutOfStep` when the changes do not apply to it, `Refused` when a whole view is not
        the one its digest names. The targets this instance does not have are kept (the
        digest is over them too); the verdict looks only at the ones it has."""
        held = self.view
        if not report.whole:
            if held is None:
                raise OutOfStep("changes, and no view of it held yet")
            return held.apply(report.states, report.base, report.digest)
        view = Tally.of(report.states)
        if report.digest and to_bytes(view.sum) != report.digest:
            raise Refused("malformed", f"the view from {self.spec.name} is not the one its "
                          "digest names")
        return held if held is not None and held.sum == view.sum else view

    def row(self, now: float, stale_after: float) -> messages.PeerRow:
        age = now - self.heard if self.report is not None else -1.0
        return messages.PeerRow(
            self.spec.name, 0 <= age <= stale_after, round(age, 3), self.received,
            {reason: self.rejected[reason] for reason in REASONS}, self.sent, self.failed,
            self.report is not None and self.report.fenced)
