"""What the control endpoint shows: an immutable `Readout` the supervisor builds and swaps in.

The supervisor loop builds a new `Readout` when something changed and assigns it to the control
server in one reference assignment; the HTTP thread only ever reads whole readouts, so it needs no
lock and can never see half an update, nor hold up the loop. Its renderings are `status` (the
/status JSON) and `metrics` (the Prometheus metrics).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from healthdns.shared.keystate import RollState
from healthdns.shared.messages import GeoChoice, MapState, PeerRow, Probe, SiteState, Votes
from healthdns.supervisor.overrides import Override


@dataclass(frozen=True)
class TargetState:
    probed: bool | None  # None: not checked yet
    up: bool | None  # after overrides: what the signer is told
    since: float | None  # wall clock of the last change seen by the supervisor
    changes: int
    override: str | None


@dataclass(frozen=True)
class Responder:
    slot: int
    state: str
    pid: int | None
    generation: int
    stats_age: float | None  # seconds since its last Stats
    snapshot_age: float | None  # seconds since the generation it serves was published


@dataclass(frozen=True)
class Routing:
    """Geo pools, as the signer reports them (messages.Choices): each site's state per
    address type, what each site order of a map is answered with, and every map as the signer
    holds it compiled."""

    sites: tuple[SiteState, ...] = ()
    geo: tuple[GeoChoice, ...] = ()
    maps: tuple[MapState, ...] = ()


@dataclass(frozen=True)
class Readout:
    """Everything the endpoint shows, at one moment."""

    generation: int = 0
    published_at: float | None = None  # wall clock
    publish_seconds: float | None = None  # from a health change to its publication
    sign_seconds: float | None = None  # the signer's time to render and sign the latest
    serials: tuple[tuple[str, int], ...] = ()
    responders: tuple[Responder, ...] = ()
    targets: dict[str, TargetState] = field(default_factory=dict)
    counts: dict[tuple[int, int, int, str, int, int], int] = field(default_factory=dict)
    truncated: int = 0
    errors: int = 0
    restarts: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    overrides: tuple[Override, ...] = ()
    current: bool = False  # every responder serves `generation`
    # What each pooled name answers and why, from the signer (see messages.Choices).
    choices: tuple[tuple[str, int, int, str, list[str]], ...] = ()
    # Pooled names whose TTL follows health: the TTL served and why (messages.Choices).
    ttls: dict[str, tuple[int, str]] = field(default_factory=dict)
    routing: Routing = field(default_factory=Routing)
    # Answers of geo names by (zone label, site), summed across responders (messages.Stats).
    site_answers: dict[tuple[str, str], int] = field(default_factory=dict)
    # Key rolls under a DNSSEC policy: zone, next step (Unix time, 0: none), waits for parent.
    rolls: tuple[tuple[str, float, bool], ...] = ()
    keys: tuple[RollState, ...] = ()  # each such zone's keys and roll (messages.Choices)
    probes: dict[str, Probe] = field(default_factory=dict)  # the prober's detail, by target
    reloads: dict[str, int] = field(default_factory=dict)  # "ok", "failed"
    hung: dict[str, int] = field(default_factory=dict)  # children killed for silence, by role
    transfers: dict[str, int] = field(default_factory=dict)  # messages.TransferStats totals
    # With [peers]: each peer's row (totals), whether too few vantages are fresh for a
    # verdict (the alert), and reports that named no configured peer.
    peers: tuple[PeerRow, ...] = ()
    peers_short: bool = False
    peers_unknown: int = 0
    peers_refused: int = 0  # connections the peers listener closed over its caps
    # The contested targets (some of them: messages.SPLIT_SHOWN, see messages.PeerStats),
    # each with every vantage's last state, the outcome, verdict and a held flip; how many.
    split: dict[str, Votes] = field(default_factory=dict)
    split_total: int = 0
    # Seconds the oldest change of health has waited to reach the answers (the signer has not
    # taken it in yet), and how long it may wait before /readyz fails.
    health_waiting: float = 0.0
    health_limit: float = 0.0
