"""What the supervisor keeps for the operator, and what the operator changes: the supervisor's
second job, beside running the children (`arbiter`).

`Steering` records what the children report (the prober's health and detail, the signer's
choices), applies the admin overrides to the health the signer is given, and builds the
immutable `Readout` the control endpoint shows, with the `counters`. It runs in the supervisor
loop only; the control thread sees nothing but the readouts it is handed.

A readout is built about once a second (each responder's counters come that often), so what it
holds per target is kept up to date as reports and overrides change it, and shared between
readouts until it changes (`cow`): a readout costs what changed since the last one, not what is
configured.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass

from healthdns.shared import messages
from healthdns.shared.config import Config
from healthdns.shared.keystate import RollState
from healthdns.supervisor import catalog, overrides, readout, warm
from healthdns.supervisor.control import Request
from healthdns.supervisor.counters import Counters
from healthdns.supervisor.cow import CowDict
from healthdns.supervisor.overrides import Overrides
from healthdns.supervisor.readout import Readout, Responder
from healthdns.supervisor.state import Kept, StateFile, Unbelieved

log = logging.getLogger("healthdns.supervisor")

PUBLISHED_KEPT = 64  # generations whose publication time is kept (responders' snapshot age)
# /readyz fails when a change of health has waited longer than this to reach the answers, or
# than twice `server.hung_after` (the signer is killed after one, and takes a while to start)
# or three times the latest signing run, whichever is longest.
HEALTH_WAIT_FLOOR = 5.0


@dataclass(frozen=True)
class Child:
    """What the view shows of one responder slot."""

    index: int
    state: str
    pid: int | None


class Steering:
    def __init__(self, cfg: Config, renames: dict[str, str],
                 state: StateFile | None = None) -> None:
        self.cfg = cfg
        self.state = state  # where the overrides, health and serials are kept (`state`)
        self.kept_health: warm.Health | None = None  # the state file's, for the warm start
        self.cold = ""  # why the state file holds no health for it, when it holds none
        self.save_failed = False  # the last write of the state file failed (said once)
        self.renames = renames  # prober target ids -> the signer's (see `views`)
        self.targets = catalog.catalog(cfg)
        self.serving = _serving(self.targets)
        self.zones = catalog.zone_names(cfg)
        self.overrides = Overrides({a for t in self.targets.values() for a in t.served},
                                   {n for t in self.targets.values() for n in t.names})
        self.probed: dict[str, bool] = {}  # the prober's health, by its target ids
        self.since: dict[str, float] = {}
        self.changes: Counter[str] = Counter()
        # What the view shows of each probed target, and the address overrides (address ->
        # action) it was worked out with.
        self.states: CowDict[str, readout.TargetState] = CowDict()
        self.held: dict[str, str] = {}
        # Each target's detail, totals across prober processes; the ended ones' part.
        self.probes: CowDict[str, messages.Probe] = CowDict()
        self.probes_gone: dict[str, messages.Probe] = {}
        self.zone_labels: dict[bytes, str] = {}  # origins as responders count them -> labels
        self.choices: tuple[tuple[str, int, int, str, list[str]], ...] = ()
        self.ttls: dict[str, tuple[int, str]] = {}  # the TTLs that follow health, and why
        self.serials: list[int] = []
        # Per zone (lower case), the latest serial served, here or by a previous process (the
        # state file): a new signer's first serials go above them.
        self.kept_serials: dict[str, int] = {}
        self.published_at: float | None = None
        self.published_times: dict[int, float] = {}  # recent generations -> when (wall)
        self.health_at: float | None = None  # when the signer was last sent a change
        # When each `Health` sent to the signer process and not yet taken in was sent (the
        # signer counts those it took in: `messages.Alive`), and how many it took in.
        self.unpublished: deque[float] = deque()
        self.taken = 0
        self.publish_seconds: float | None = None
        self.sign_seconds: float | None = None  # the signer's own time for the latest
        self.rolls: tuple[tuple[str, float, bool], ...] = ()  # see messages.Choices
        self.keys: tuple[RollState, ...] = ()  # see messages.Choices
        self.routing = readout.Routing()  # geo pools and their maps (messages.Choices)
        self.dirty = True  # a new view is due

    # --- health and overrides -------------------------------------------------------------------

    def report(self, states: dict[str, bool], full: bool) -> dict[str, bool]:
        """Record a prober's report; the health to send the signer for it (renamed, with the
        overrides applied)."""
        wall = time.time()
        moved = []
        for target, up in states.items():
            before = self.probed.get(target)
            if before is None or before != up:
                self.since[target] = wall
                self.changes[target] += before is not None
                moved.append(target)
        if full:
            moved += self.probed.keys() - states.keys()  # no longer checked: left out
            self.probed = dict(states)
        else:
            self.probed.update(states)
        self._restate(moved)
        return {self.renames[t]: self._effective(t, up) for t, up in states.items()}

    def health(self) -> dict[str, bool] | None:
        """The whole health for the signer as the overrides now make it; None before the
        prober's first report (which brings the overrides with it)."""
        if not self.probed:
            return None
        return {self.renames[t]: self._effective(t, up) for t, up in self.probed.items()}

    def warm(self, states: dict[str, tuple[bool, float | None]]) -> None:
        """Take the health a previous process kept (see `warm`) as if probed."""
        self.probed = {t: up for t, (up, _) in states.items()}
        self.since = {t: since for t, (_, since) in states.items() if since is not None}
        self._restate_all()
        self.dirty = True

    def reconfigure(self, cfg: Config, renames: dict[str, str]) -> None:
        """A reload: the targets `renames` names from now on (while the prober settles into
        the new configuration, those of both)."""
        self.cfg, self.renames, self.zones = cfg, renames, catalog.zone_names(cfg)
        merged = {**self.targets, **catalog.catalog(cfg)}
        self.targets = {t: row for t, row in merged.items() if t in renames}
        self.serving = _serving(self.targets)
        self.overrides.known = {a for t in self.targets.values() for a in t.served}
        self.overrides.known_names = {n for t in self.targets.values() for n in t.names}
        self._restate_all()
        self.dirty = True

    def _effective(self, target: str, probed: bool) -> bool:
        return self.overrides.effective(probed, self.targets[target].served)

    def _restate(self, targets: Iterable[str]) -> None:
        """Work out again what the view shows of `targets` (their health changed), after the
        targets of the addresses whose override changed: every state is then worked out with
        the overrides `held` says."""
        self._follow_overrides()
        self._rebuild(targets)

    def _rebuild(self, targets: Iterable[str]) -> None:
        for target in targets:
            up, row = self.probed.get(target), self.targets.get(target)
            if up is None or row is None:  # not probed, or left by a reload
                self.states.pop(target)
                continue
            served = row.served
            self.states[target] = readout.TargetState(
                up, self.overrides.effective(up, served), self.since.get(target),
                self.changes[target], self.overrides.action(served))

    def _restate_all(self) -> None:
        self.states = CowDict()
        self.held = _held(self.overrides)
        self._rebuild(self.probed)

    def _follow_overrides(self) -> None:
        """Restate the targets of the addresses whose override changed since the last view
        (set, removed, expired or restored): a look at each override, nothing per target."""
        held = _held(self.overrides)
        if held == self.held:
            return
        moved = {a for a in held.keys() | self.held.keys() if held.get(a) != self.held.get(a)}
        self.held = held
        self._rebuild({t for a in moved for t in self.serving.get(a, ())})

    def restore(self) -> None:
        """Take what the state file keeps, if it is believed (see `state`): the overrides and
        the serials now, the health for the warm start (`kept_health`)."""
        if self.state is None:
            return
        now = time.time()
        try:
            kept = self.state.load(now)
        except Unbelieved as e:
            log.warning("%s; starting cold: no override, health or serial is taken from it", e)
            self.cold = f"{self.state.path} is not believed (see above)"
            return
        if kept is None:
            self.cold = f"{self.state.path} does not exist yet"
            return
        for trouble in self.overrides.restore(kept.overrides, now):
            log.warning("%s: %s", self.state.path, trouble)
        self.kept_serials = dict(kept.serials)
        self.kept_health = kept.health
        self.cold = f"{self.state.path} holds no health"
        for o in self.overrides.listing():
            log.info("override restored: %s %s (%s)", o.action, o.name or o.address,
                     o.reason or "-")

    def apply(self, request: Request) -> dict[str, object]:
        """Carry out one write call; its answer (`status` other than 200 on an error)."""
        return overrides.write(self.overrides, request.op, request.fields, time.time())

    def expire(self) -> bool:
        """Drop the overrides whose time has come; True if any was."""
        gone = self.overrides.expire(time.time())
        for override in gone:
            log.info("override expired: %s %s", override.action,
                     override.name or override.address)
        return bool(gone)

    def save(self) -> None:
        """Write the overrides, the health and the serials to the state file; a failure is
        logged once, until a write succeeds again (writes come every second)."""
        self.dirty = True
        if self.state is None:
            return
        health = warm.encode(self.probed, self.since, time.time()) if self.probed else None
        try:
            self.state.save(Kept(self.overrides.listing(), health, self.kept_serials))
        except OSError as e:
            if not self.save_failed:
                log.error("cannot write the state file %s: %s (the overrides hold until a "
                          "restart; health and serials are not kept for the next process)",
                          self.state.path, e.strerror or e)
            self.save_failed = True
            return
        if self.save_failed:
            log.info("the state file %s is written again", self.state.path)
        self.save_failed = False

    # --- what the children report ---------------------------------------------------------------

    def health_sent(self, now: float) -> None:
        self.health_at = now
        self.unpublished.append(now)
        self.dirty = True

    def health_taken(self, taken: int) -> None:
        """The signer has taken in (and published) `taken` `Health` messages, all told."""
        while self.taken < taken and self.unpublished:
            self.unpublished.popleft()
            self.taken += 1
        self.dirty = True

    def signer_started(self, now: float, sent_health: bool) -> None:
        """A new signer process counts from nought. It is sent the whole health at once when
        there is any: what waited for its predecessor waits for it now, since the oldest wait
        began."""
        oldest = self.unpublished[0] if self.unpublished else now
        self.unpublished = deque([oldest] if sent_health else [])
        self.taken = 0

    def health_waiting(self, now: float) -> float:
        """Seconds the oldest change of health sent to the signer has waited to be taken in
        (0 when none waits)."""
        return now - self.unpublished[0] if self.unpublished else 0.0

    def published(self, generation: int, serials: list[int], now: float) -> None:
        self.published_at = time.time()
        self.published_times[generation] = self.published_at
        self.published_times.pop(generation - PUBLISHED_KEPT, None)
        if self.health_at is not None:
            self.publish_seconds = now - self.health_at
            self.health_at = None
        self.serials = serials
        # Serials never go back within a process, so the latest is the highest.
        self.kept_serials.update((z.lower(), s)
                                 for z, s in zip(self.zones, serials, strict=False))
        self.dirty = True

    def chosen(self, names: list[tuple[str, int, int, str, list[str]]], seconds: float,
               ttls: dict[str, tuple[int, str]] | None = None,
               rolls: list[tuple[str, float, bool]] | None = None) -> None:
        self.choices = tuple(names)
        self.ttls = ttls or {}
        self.sign_seconds = seconds
        self.rolls = tuple(rolls or ())
        self.dirty = True

    def routed(self, choices: messages.Choices) -> None:
        """The geo pools' sites and choices, and the maps."""
        _log_maps(self.routing.maps, choices.maps)
        self.routing = readout.Routing(tuple(choices.sites), tuple(choices.geo),
                                       tuple(choices.maps))
        self.keys = tuple(choices.keys)
        self.dirty = True

    def detail(self, rows: list[messages.Probe]) -> str | None:
        """Take the prober's detail; the problem if it names a target it does not check."""
        unknown = next((row.target for row in rows if row.target not in self.targets), None)
        if unknown is not None:
            return f"detail of an unknown target {unknown[:100]!r}"
        for row in rows:
            gone = self.probes_gone.get(row.target)
            self.probes[row.target] = row if gone is None else _sum(gone, row)
        self.dirty = True
        return None

    def prober_ended(self) -> None:
        """A new prober counts from nought: its detail rows add to the ended ones'."""
        self.probes_gone = self.probes.hand()  # unchanged from now on (`cow`)
        self.dirty = True

    # --- the view -------------------------------------------------------------------------------

    def readout(self, generation: int, children: list[Child], counters: Counters,
                now: float) -> Readout:
        counts, truncated, errors = counters.queries(self._zone)
        responders = tuple(self._responder(child, counters, now) for child in children)
        current = generation > 0 and all(
            r.state == "running" and r.generation == generation for r in responders)
        self._follow_overrides()
        peers, short, unknown = counters.peers()
        split, split_total = counters.split()
        return Readout(
            peers=tuple(peers), peers_short=short, peers_unknown=unknown, split=split,
            split_total=split_total, peers_refused=counters.refused_connections(),
            generation=generation, published_at=self.published_at,
            publish_seconds=self.publish_seconds, sign_seconds=self.sign_seconds,
            serials=tuple(zip(self.zones, self.serials, strict=False)),
            responders=responders, targets=self.states.hand(), counts=dict(counts),
            truncated=truncated, errors=errors, restarts=dict(counters.restarts),
            rejected=dict(counters.rejected), reloads=dict(counters.reloads),
            hung=dict(counters.hung), transfers=counters.transfers(),
            overrides=tuple(self.overrides.listing()), keys=self.keys, routing=self.routing,
            site_answers=counters.sites(self._zone, set(self.cfg.sites)),
            choices=self.choices, ttls=self.ttls, rolls=self.rolls, probes=self.probes.hand(),
            current=current, health_waiting=self.health_waiting(now),
            health_limit=max(HEALTH_WAIT_FLOOR, 2 * self.cfg.server.hung_after,
                             3 * (self.sign_seconds or 0.0)))

    def _zone(self, origin: bytes) -> str:
        """The `zone` label of an origin as responders count it (see `catalog.zone_label`),
        worked out once per origin: a view is built about once a second per responder."""
        label = self.zone_labels.get(origin)
        if label is None:
            label = self.zone_labels[origin] = catalog.zone_label(origin, self.zones)
        return label

    def _responder(self, child: Child, counters: Counters, now: float) -> Responder:
        stats, at = counters.stats.get(child.index, (None, 0.0))
        generation = stats.generation if stats is not None else 0
        published = self.published_times.get(generation)
        return Responder(child.index, child.state, child.pid, generation,
                                now - at if stats is not None else None,
                                time.time() - published if published is not None else None)


def _log_maps(before: tuple[messages.MapState, ...], after: list[messages.MapState]) -> None:
    """A map whose database stopped (or started again) loading, logged once, when it does."""
    errors = {m.name: m.error for m in before}
    for state in after:
        if state.error and state.error != errors.get(state.name, ""):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(state.compiled))
            log.error("map %s: the database does not load, the map compiled at %s stays in "
                      "service: %s", state.name, when, state.error)
        elif errors.get(state.name) and not state.error:
            log.info("map %s: the database loads again (%d networks)", state.name,
                     state.networks)


def _serving(targets: dict[str, catalog.Target]) -> dict[str, tuple[str, ...]]:
    """Served address -> the targets that judge it."""
    out: dict[str, list[str]] = {}
    for target in targets.values():
        for address in target.served:
            out.setdefault(address, []).append(target.id)
    return {address: tuple(ids) for address, ids in out.items()}


def _held(overrides: Overrides) -> dict[str, str]:
    return {address: o.action for address, o in overrides.by_address.items()}


def _sum(old: messages.Probe, new: messages.Probe) -> messages.Probe:
    failures = Counter(old.failures)
    failures.update(new.failures)
    return messages.Probe(new.target, new.reason,
                          [a + b for a, b in zip(old.buckets, new.buckets, strict=True)],
                          old.seconds + new.seconds, dict(failures))

