"""Every counter the supervisor keeps, in one place: what befell the children (restarts,
protocol rejections, hangs), the reloads, and the totals the children count themselves (the
responders' queries, the transfer process's transfers, the peers process's reports).

Children send totals since they started; a child's last totals are kept when it ends, so no
counter ever goes back across respawns (Prometheus reads a drop as a reset).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from healthdns.shared import messages
from healthdns.supervisor.roles import PEERS, RESPONDER, TRANSFER

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
        self.sites_gone: Counter[tuple[bytes, str]] = Counter()  # geo answers, by zone, site
        self.shows_transfers = transfers
        self.transfers_gone: Counter[str] = Counter()  # totals of ended transfer processes
        self.transfers_live: dict[str, int] = {}  # the running one's latest totals
        # The peers process: its latest rows, and the totals of ended ones by (peer, count).
        self.peers_live: messages.PeerStats | None = None
        self.peers_gone: Counter[tuple[str, str]] = Counter()
        self.contested: dict[str, messages.Votes] = {}  # the latest sent (it sends changes)
        self.changed = True  # since the last view

    def counted(self, index: int, stats: messages.Stats, now: float) -> None:
        """A responder's totals (and its heartbeat)."""
        self.stats[index] = (stats, now)
        self.changed = True

    def peered(self, stats: messages.PeerStats) -> None:
        self.peers_live = stats
        if stats.split is not None:
            self.contested = stats.split
        self.changed = True

    def split(self) -> tuple[dict[str, messages.Votes], int]:
        """The contested targets (some of them), and how many in all."""
        live = self.peers_live
        return ({}, 0) if live is None else (self.contested, live.split_total)

    def peers(self) -> tuple[list[messages.PeerRow], bool, int]:
        """Every peer's row with totals that never go back across respawns of the peers
        process; whether too few vantages are fresh (the alert); reports from no peer."""
        live = self.peers_live
        if live is None:
            return [], False, self.peers_gone[("", "sender")]
        gone = self.peers_gone
        rows = [messages.PeerRow(
            r.name, r.fresh, r.age, r.received + gone[(r.name, "received")],
            {k: n + gone[(r.name, k)] for k, n in r.rejected.items()},
            r.sent + gone[(r.name, "sent")], r.failed + gone[(r.name, "failed")], r.fenced)
            for r in live.peers]
        return rows, live.short, live.rejected_sender + gone[("", "sender")]

    def refused_connections(self) -> int:
        """Connections the peers listener closed over its caps, across respawns."""
        live = self.peers_live
        gone = self.peers_gone[("", "connections")]
        return gone if live is None else gone + live.refused_connections

    def _peers_ended(self) -> None:
        live, self.peers_live, self.contested = self.peers_live, None, {}
        if live is None:
            return
        for row in live.peers:
            for name in ("received", "sent", "failed"):
                self.peers_gone[(row.name, name)] += getattr(row, name)
            for reason, n in row.rejected.items():
                self.peers_gone[(row.name, reason)] += n
        self.peers_gone[("", "sender")] += live.rejected_sender
        self.peers_gone[("", "connections")] += live.refused_connections

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
            self.sites_gone.update({(zone, site): n for zone, site, n in stats.sites})
            self.gone_errors += stats.errors
        if role == TRANSFER.name:
            self.transfers_gone.update(self.transfers_live)
            self.transfers_live = {}
        if role == PEERS.name:
            self._peers_ended()
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

    def sites(self, zone: Callable[[bytes], str], known: set[str]) -> dict[tuple[str, str], int]:
        """Every responder's answers of geo names, ended processes' included, by (`zone`
        label, site); a site not `known` (nor "", none) is counted as "other", so a child
        cannot grow the number of series."""
        counts: Counter[tuple[str, str]] = Counter()
        rows = [*((o, s, n) for (o, s), n in self.sites_gone.items()),
                *(row for stats, _ in self.stats.values() for row in stats.sites)]
        for origin, site, n in rows:
            counts[(zone(origin), site if not site or site in known else "other")] += n
        return dict(counts)

    def transfers(self) -> dict[str, int]:
        """The transfer process's totals, every one of them (none without `[transfer]`)."""
        if not self.shows_transfers:
            return {}
        totals = self.transfers_gone + Counter(self.transfers_live)
        return {name: totals[name] for name in TRANSFER_COUNTS}
