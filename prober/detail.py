"""What the operator sees of each target beyond up or down: the latest reason, how long checks
take (histogram buckets) and why they fail (counts by kind of failure).

Kept as totals since the prober started and sent to the supervisor periodically for the targets
that were checked since the last time (`Detail.changed`), in chunks that stay well under the
prober's frame limit.
"""

from __future__ import annotations

import bisect

from healthdns.shared.messages import PROBE_BUCKETS, Probe

CHUNK = 100  # targets per message: a row is at most about 450 bytes, the frame limit 64 KiB
MAX_REASON = 200  # characters of a reason kept (a body_regex may be long)
# Kinds of failure, recognised from the reason a check gives (see `prober.checks`).
_KINDS = (("timeout", "timeout"), ("refused", "refused"), ("status", "status"),
          ("body mismatch", "body"), ("tls", "tls"), ("certificate", "tls"))


def kind(reason: str) -> str:
    """The kind of a failure: timeout, refused, status, body, tls, or other."""
    lowered = reason.lower()
    return next((k for text, k in _KINDS if lowered.startswith(text) or text in lowered),
                "other")


class _Target:
    __slots__ = ("buckets", "failures", "reason", "total")

    def __init__(self) -> None:
        self.buckets = [0] * (len(PROBE_BUCKETS) + 1)  # the last one: above every bound
        self.total = 0.0
        self.failures: dict[str, int] = {}
        self.reason = ""


class Detail:
    def __init__(self) -> None:
        self._targets: dict[str, _Target] = {}
        self._changed: set[str] = set()

    def record(self, target: str, ok: bool, reason: str, seconds: float) -> None:
        found = self._targets.get(target)
        if found is None:
            found = self._targets[target] = _Target()
        found.buckets[bisect.bisect_left(PROBE_BUCKETS, seconds)] += 1
        found.total += seconds
        found.reason = reason[:MAX_REASON]
        if not ok:
            why = kind(reason)
            found.failures[why] = found.failures.get(why, 0) + 1
        self._changed.add(target)

    def changed(self) -> list[list[Probe]]:
        """The rows of the targets checked since the last call, in chunks."""
        rows = [Probe(t, self._targets[t].reason, list(self._targets[t].buckets),
                      self._targets[t].total, dict(self._targets[t].failures))
                for t in sorted(self._changed)]
        self._changed.clear()
        return [rows[i:i + CHUNK] for i in range(0, len(rows), CHUNK)]
