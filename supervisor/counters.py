"""Every counter the supervisor keeps, in one place: what befell the children (restarts,
protocol rejections, hangs), the reloads, and the totals the children count themselves (the
responders' queries, the transfer process's transfers).

Children send totals since they started; a child's last totals are kept when it ends, so no
counter ever goes back across respawns (Prometheus reads a drop as a reset).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from healthdns.shared import messages
from healthdns.supervisor.roles import RESPONDER, TRANSFER

# (path, proto, family, zone origin (wire), qtype, rcode) -> queries, as responders send them
QueriesByOrigin = Counter[tuple[int, int, int, bytes, int, int]]
# (path, proto, family, zone label, qtype, rcode) -> queries, as /metrics shows them
QueriesByZone = Counter[tuple[int, int, int, str, int, int]]
# The transfer process's counters (messages.TransferStats), as /metrics names them.
TRANSFER_COUNTS = ("axfr", "ixfr", "fallback", "refused", "notify_sent", "notify_answered",
                   "notify_failed")


class Counters:
    def __init__(self, transfers: bool) -> None:
        """`transfers`: a transfer process runs (`[transfer]`), and its counters are shown."""
        self.restarts: Counter[str] = Counter()  # children respawned, by role
        self.rejected: Counter[str] = Counter()  # children killed for breaking the protocol
        self.hung: Counter[str] = Counter()  # children killed for silence, by role
        self.reloads: Counter[str] = Counter()  # "ok", "failed"
        self.stats: dict[int, tuple[messages.Stats, float]] = {}  # responder -> latest, when
        self.gone: QueriesByOrigin = Counter()  # totals of ended responder processes
        self.gone_truncated = self.gone_errors = 0
        self.shows_transfers = transfers
        self.transfers_gone: Counter[str] = Counter()  # totals of ended transfer processes
        self.transfers_live: dict[str, int] = {}  # the running one's latest totals
        self.changed = True  # since the last view

    def counted(self, index: int, stats: messages.Stats, now: float) -> None:
        """A responder's totals (and its heartbeat)."""
        self.stats[index] = (stats, now)
        self.changed = True

    def transferred(self, stats: messages.TransferStats) -> None:
        self.transfers_live = {name: getattr(stats, name) for name in TRANSFER_COUNTS}
        self.changed = True

    def ended(self, role: str, index: int, restarted: bool) -> None:
        """A child ended: its totals are kept, so counters never go back."""
        if restarted:
            self.restarts[role] += 1
        last = self.stats.pop(index, None) if role == RESPONDER.name else None
        if last is not None:
            stats = last[0]
            for path, proto, family, zone, qtype, rcode, n in stats.counts:
                self.gone[(path, proto, family, zone, qtype, rcode)] += n
            self.gone_truncated += stats.truncated
            self.gone_errors += stats.errors
        if role == TRANSFER.name:
            self.transfers_gone.update(self.transfers_live)
            self.transfers_live = {}
        self.changed = True

    def queries(self, zone: Callable[[bytes], str]) -> tuple[QueriesByZone, int, int]:
        """Every responder's queries, ended processes' included, by `zone` label; the
        truncated answers and the internal errors."""
        counts: QueriesByZone = Counter()
        for (path, proto, family, origin, qtype, rcode), n in self.gone.items():
            counts[(path, proto, family, zone(origin), qtype, rcode)] += n
        truncated, errors = self.gone_truncated, self.gone_errors
        for stats, _ in self.stats.values():
            for path, proto, family, origin, qtype, rcode, n in stats.counts:
                counts[(path, proto, family, zone(origin), qtype, rcode)] += n
            truncated += stats.truncated
            errors += stats.errors
        return counts, truncated, errors

    def transfers(self) -> dict[str, int]:
        """The transfer process's totals, every one of them (none without `[transfer]`)."""
        if not self.shows_transfers:
            return {}
        totals = self.transfers_gone + Counter(self.transfers_live)
        return {name: totals[name] for name in TRANSFER_COUNTS}
