"""The signer process: builds the zones from config and health, renders every answer."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection

import dns.name
import msgspec

from healthdns.shared import child, config, messages, privilege, tables
from healthdns.shared.config import Config
from healthdns.shared.errors import ConfigError
from healthdns.shared.geotable import GeoTable
from healthdns.signer import delta, filled, geo, keys, pool, render, rendercache, transferred, zone
from healthdns.signer.dnssec import ZoneSigner
from healthdns.signer.geomaps import GeoMaps
from healthdns.signer.keyrings import Keyrings
from healthdns.signer.serial import next_serial

log = logging.getLogger("healthdns.signer")


class Signer:
    """Holds the health state and publishes a snapshot whenever what is served changes."""

    def __init__(self, cfg: Config, now: Callable[[], float] = time.time) -> None:
        self.zones = zone.build(cfg)
        self.now = now
        # The zones whose keys the signer makes and rolls, from its first generation on.
        self.keyrings = Keyrings(now, served=False)
        self.keyrings.configure(cfg)
        self.signers = self._signers(cfg)
        self.caches = [rendercache.RenderCache() for _ in self.zones]
        self.previous: list[tables.ZoneTable] | None = None
        self.health = zone.Health()
        self.serials: list[int | None] = [None] * len(self.zones)
        self.prints: list[bytes | None] = [None] * len(self.zones)
        self.generation = 0
        self.inherited_renewal: float | None = None
        self.took = 0.0  # seconds the latest generation took to render and sign
        # Only with transfers configured: each zone's records for the secondaries.
        self.transfer_records = transferred.Builder(cfg.transfer.ttl == "min") \
            if cfg.transfer.enabled() else None
        # Set by `reconfigure`: the next generation waits for the health that comes with the
        # new configuration, is published even if only a zone went away (`reshaped`: other
        # origins), and is sent as a delta only if one fits (`refit`: other NSEC chains...).
        self.awaiting_health = False
        self.reshaped = False
        self.refit = False
        self.merge_next_full = False  # a failed reconfigure: old zones, new prober targets
        self.floors: dict[str, int] = {}  # see `floor`
        self.maps = GeoMaps(now)  # the location maps, compiled
        self.maps.configure(cfg)
        self.sent_maps: dict[str, GeoTable] = {}  # the tables the last `Maps` carried
        # Set by `publish` when a map changed: the `Maps` to send before its `Published`.
        self.new_maps: messages.Maps | None = None

    def floor(self, kept: Mapping[str, int]) -> None:
        """Take the highest serials served per zone (by a previous process too, see
        `Start.serials`): each zone's first serial is greater than its own (RFC 1982), even
        when they ran ahead of the clock. A `Resume` after this speaks for itself."""
        self.floors = dict(kept)
        self.serials = [s if s is not None else self.floors.get(_label(z))
                        for s, z in zip(self.serials, self.zones, strict=True)]

    def resume(self, resume: messages.Resume) -> None:
        """Continue from a predecessor's last snapshot (respawned after a crash).

        Its serials and fingerprints say what was served: a zone whose health-dependent
        answers are the same keeps its serial, and its tables are the base of the next delta,
        so responders are sent only what changes. A snapshot of another shape (other zones)
        is not resumed from.
        """
        snapshot = messages.decode_to_child(resume.snapshot)
        origins = [z.origin for z in snapshot.zones] \
            if isinstance(snapshot, messages.Snapshot) else []
        if origins != [z.key for z in self.zones] or len(resume.prints) != len(self.zones):
            log.warning("not resuming from generation %d: its zones differ", resume.generation)
            return
        assert isinstance(snapshot, messages.Snapshot)
        self.generation = resume.generation
        self.serials = list(resume.serials)
        self.prints = list(resume.prints)
        self.previous = snapshot.zones
        # A zone whose keys roll is signed anew: the predecessor may have been killed between
        # a step of its roll and the generation that served it.
        self.prints = [None if z.index in self.keyrings.rings else p
                       for z, p in zip(self.zones, self.prints, strict=True)]
        # Its signatures are served until this one signs anew (at its first publication).
        self.inherited_renewal = resume.renewal or None
        log.info("resuming from generation %d: serials %s", self.generation, self.serials)

    def update(self, states: Mapping[str, bool], full: bool,
               names: Mapping[str, bool] | None = None,
               left: Mapping[str, int] | None = None) -> messages.Published | None:
        self.merge(states, full, names or {}, left)
        return self.publish()

    def merge(self, states: Mapping[str, bool], full: bool,
              names: Mapping[str, bool] | None = None,
              left: Mapping[str, int] | None = None) -> None:
        """Take in a health report without publishing (several may make one generation);
        `names`: every name override in force; `left`: the prober's counts of checks left
        before a target could flip (see `zone.Health`)."""
        if full and not self.merge_next_full:
            self.health = zone.Health(states, self.health.forced, dict(left or {}))
        else:
            self.health.update(states)
            self.health.left.update(left or {})
        if full:
            # Only a full report speaks for the targets a new configuration added: a flip
            # relayed before it must not bring a generation where they count as down.
            self.merge_next_full = self.awaiting_health = False
        if names is not None:
            self.health.forced = self._forced(names)

    def _forced(self, names: Mapping[str, bool]) -> dict[bytes, bool]:
        """Name overrides by the owner's wire name in each zone that serves the name (a name
        of the first zone has its twin in each alias zone)."""
        out: dict[bytes, bool] = {}
        for name, state in names.items():
            absolute = dns.name.from_text(name)
            for z in self.zones:
                primary = dns.name.from_text(z.spec.origin)
                if absolute.is_subdomain(primary):
                    owner = absolute.relativize(primary).derelativize(z.origin)
                    out[zone.wire(owner)] = state
        return out

    def reconfigure(self, cfg: Config) -> None:
        """Take a new configuration; the next `publish` shows it, after a full health report.

        A zone whose spec, keys and health-dependent answers are unchanged keeps its serial,
        its signatures and its render cache; a changed zone gets the next serial; an added
        zone a first one; a removed zone vanishes. Key files are read anew: a new key is a
        changed zone. If a key cannot be loaded, nothing changes: the old zones and keys are
        served on, and the error is logged (the supervisor checked the files; one that went
        bad since must not take DNS down).
        """
        try:
            zones = zone.build(cfg)
            self.keyrings.configure(cfg)
            loaded = self._load_keys(cfg)
        except keys.KeyFileError as e:
            log.error("new configuration not applied, serving the old zones and keys: %s", e)
            # The prober checks the new targets already: the next full report must not make
            # the old zones' targets unknown, hence down.
            self.merge_next_full = True
            return
        old = {z.key: i for i, z in enumerate(self.zones)}
        kept = 0
        signers: list[ZoneSigner | None] = []
        caches: list[rendercache.RenderCache] = []
        serials: list[int | None] = []
        prints: list[bytes | None] = []
        for z in zones:
            i = old.get(z.key)
            zone_keys = loaded.get(z.index)
            if i is not None and _unchanged(self.zones[i], self.signers[i], z, zone_keys):
                signers.append(self.signers[i])
                caches.append(self.caches[i])
                prints.append(self.prints[i])
                kept += 1
            else:
                signers.append(None if zone_keys is None else self._zone_signer(z, zone_keys))
                caches.append(rendercache.RenderCache())
                prints.append(None)  # a changed zone: a new serial whatever its health
            serials.append(self.floors.get(_label(z)) if i is None else self.serials[i])
        self.reshaped = self.reshaped or [z.key for z in zones] != [z.key for z in self.zones]
        self.maps.configure(cfg)
        self.zones, self.signers, self.caches = zones, signers, caches
        self.serials, self.prints = serials, prints
        self.awaiting_health = self.refit = True
        if cfg.transfer.enabled() != (self.transfer_records is not None):
            self.transfer_records = transferred.Builder(cfg.transfer.ttl == "min") \
                if cfg.transfer.enabled() else None
        log.info("reconfigured: %d zones, %d unchanged", len(zones), kept)

    def _load_keys(self, cfg: Config) -> dict[int, list[keys.Key]]:
        """The keys of every signed zone, by zone index, read from their files now.

        After the privilege drop the signer may no longer read key files only root may read:
        a zone whose DNSSEC settings did not change then signs on with the keys it has (a
        key replaced under the same file name needs a restart); for a new or changed one
        the error stands.
        """
        held = {(z.origin.to_text(), z.spec.dnssec): s.keys
                for z, s in zip(self.zones, self.signers, strict=True) if s is not None}
        loaded: dict[int, list[keys.Key]] = {}
        for i, spec in enumerate(cfg.zones):
            if spec.dnssec is None:
                continue
            if spec.dnssec.policy is not None:
                loaded[i] = self.keyrings.rings[i].signing_keys()
                continue
            try:
                loaded[i] = keys.load_all(spec.dnssec, f"zones[{i}].dnssec")
            except keys.KeyFileError as e:
                before = held.get((dns.name.from_text(spec.origin).to_text(), spec.dnssec))
                if before is None:
                    raise
                log.warning("%s; signing on with the keys read at start (a key replaced "
                            "under the same file name needs a restart)", e)
                loaded[i] = before
        return loaded

    def _signers(self, cfg: Config) -> list[ZoneSigner | None]:
        """A signer per signed zone; an alias zone shares the keys of its zone."""
        loaded: dict[int, list[keys.Key]] = {}
        signers: list[ZoneSigner | None] = []
        for z in self.zones:
            spec = cfg.zones[z.index].dnssec
            if spec is None:
                signers.append(None)
                continue
            if z.index in self.keyrings.rings:
                loaded[z.index] = self.keyrings.rings[z.index].signing_keys()
            if z.index not in loaded:
                loaded[z.index] = keys.load_all(spec, f"zones[{z.index}].dnssec")
            signers.append(self._zone_signer(z, loaded[z.index]))
        return signers

    def _zone_signer(self, z: zone.Zone, zone_keys: list[keys.Key]) -> ZoneSigner | None:
        """The signer of zone `z` with these keys; under a policy its CDS is the keyring's."""
        spec = z.spec.dnssec
        ring = self.keyrings.rings.get(z.index)
        if spec is None or (ring is not None and ring.unsigned):
            return None
        return ZoneSigner(z.origin, zone_keys, spec, self.now,
                          cds_keys=ring.cds_keys() if ring is not None else None)

    def roll(self) -> bool:
        """Take the key rolls' steps that are due: a zone whose keys changed is signed anew
        (another DNSKEY RRset, other signers) under the next serial. Whether any changed."""
        changed = self.keyrings.step()
        for i, z in enumerate(self.zones):
            if z.index in changed:
                self.signers[i] = self._zone_signer(
                    z, self.keyrings.rings[z.index].signing_keys())
                self.caches[i] = rendercache.RenderCache()
                self.prints[i] = None
        return bool(changed)

    def next_wakeup(self) -> float | None:
        """When a signature falls due for renewal or a key roll for its next step."""
        times = [t for t in (self.next_renewal(), self.keyrings.due(), self.maps.due())
                 if t is not None]
        return min(times, default=None)

    def next_renewal(self) -> float | None:
        """When the first signature falls due for renewal (None in unsigned zones)."""
        return min((r for s in self.signers if s is not None
                    if (r := s.next_renewal()) is not None), default=self.inherited_renewal)

    def publish(self) -> messages.Published | None:
        """A new snapshot when what is served changed or signatures fall due, else None."""
        if self.awaiting_health:
            return None  # a new configuration is never shown with the old one's health
        renewal = self.next_renewal()
        due = renewal is not None and renewal <= self.now()
        changed = False
        maps = self.maps.tables()
        moved = {name for name, table in maps.items() if self.sent_maps.get(name) is not table}
        for i, z in enumerate(self.zones):
            print_ = zone.fingerprint(z, self.health)
            remapped = bool(moved) and any(o.geo is not None and o.geo.map in moved
                                           for o in z.owners.values())
            if print_ != self.prints[i] or (due and self.signers[i] is not None) or remapped:
                self.prints[i] = print_
                self.serials[i] = next_serial(self.serials[i], self.now())
                changed = True
        if not changed and not self.reshaped:  # a removed zone is a change of its own
            return None
        if due:
            for cache in self.caches:
                cache.clear()  # renewed signatures: render everything again
            if self.transfer_records is not None:
                self.transfer_records.clear()
            for signer in self.signers:
                if signer is not None:
                    signer.horizon = self.now() + signer.spec.refresh / 4
        self.generation += 1
        serials = [s for s in self.serials if s is not None]
        began = time.perf_counter()
        filled_zones = filled.fill_zones(self.zones, self.health, serials, self.signers,
                                         self.caches, self.maps.orders())
        tables = render.tables_of(filled_zones)
        # Before the signature cache is pruned: the records reuse what was just signed.
        listed = (b"", b"") if self.transfer_records is None \
            else self.transfer_records.publish(self.generation, filled_zones)
        self.took = time.perf_counter() - began
        self.inherited_renewal = None  # every answer was rendered (and signed) here
        for signer in self.signers:
            if signer is not None:
                signer.prune()
                signer.horizon = 0.0
        step = b""  # the encoded `Delta`, when one carries the step
        if self.previous is not None and (not self.refit or delta.fits(self.previous, tables)):
            changes = [delta.changes(old, new)
                       for old, new in zip(self.previous, tables, strict=True)]
            step = messages.encode(messages.Delta(self.generation, self.generation - 1, changes))
        self.previous, self.reshaped, self.refit = tables, False, False
        self.new_maps = messages.Maps(maps) if moved or maps.keys() != self.sent_maps.keys() \
            else None
        self.sent_maps = maps
        snapshot = messages.encode(messages.Snapshot(self.generation, tables))
        prints = [p or b"" for p in self.prints]
        return messages.Published(self.generation, serials, prints, snapshot, step,
                                  self.next_renewal() or 0.0, *listed)

    def choices(self) -> messages.Choices:
        """What each pooled name of each zone (not the aliases) answers now, and why."""
        self.maps.restated = False
        return _choices(self)


def _choices(signer: Signer) -> messages.Choices:
    rows: list[tuple[str, int, int, str, list[str]]] = []
    ttls: dict[str, tuple[int, str]] = {}
    sites: list[messages.SiteState] = []
    geo_rows: list[messages.GeoChoice] = []
    orders = signer.maps.orders()
    for z in signer.zones:
        if z.origin != dns.name.from_text(z.spec.origin):
            continue  # an alias zone: its names answer as the zone's own
        for owner in z.owners.values():
            if owner.plan is None:
                continue
            name = dns.name.from_wire(owner.name, 0)[0].to_text(omit_final_dot=True)
            health = zone.owner_health(owner, signer.health)
            served = zone.served_ttl(owner, signer.health)
            if served is not None:
                ttls[name] = served
            if owner.geo is not None:  # per site, and per order of its map
                made = geo.choices(name, owner.geo, orders.get(owner.geo.map, ()), health)
                sites += made[0]
                geo_rows += made[1]
                continue
            for rdtype, (group, rule, addresses) in pool.explain(owner.plan, health).items():
                rows.append((name, rdtype, group, rule, addresses))
    return messages.Choices(signer.generation, rows, signer.took, ttls=ttls,
                            rolls=signer.keyrings.rolls(), keys=signer.keyrings.states(),
                            sites=sites, geo=geo_rows,
                            maps=signer.maps.states())


def _unchanged(old: zone.Zone, signer: ZoneSigner | None, new: zone.Zone,
               new_keys: list[keys.Key] | None) -> bool:
    """The same spec (DNSSEC settings included) and, when signed, the same keys in the same
    roles, signing or only published (so the same DNSKEY RRset and signatures)."""
    if old.spec != new.spec or old.records != new.records:
        return False
    if signer is None or new_keys is None:
        return signer is None and new_keys is None
    return [(k.role, k.dnskey, k.published_only) for k in signer.keys] \
        == [(k.role, k.dnskey, k.published_only) for k in new_keys]


def _label(z: zone.Zone) -> str:
    """A zone's name as the supervisor keeps its serial (see `Start.serials`)."""
    return z.origin.to_text(omit_final_dot=True).lower()


EXIT_BAD_KEY = 2


def run(conn: Connection) -> None:
    signer = _started(conn)
    privilege.drop()  # the keys are loaded: the key files are never read again
    pulse = child.Pulse(conn)  # the supervisor watches it (server.hung_after)
    pulse.start()
    spoke = False  # whether this process has published yet: Choices are taken only after
    while True:
        # Waiting for a new configuration's health, nothing is published, renewals neither.
        wakeup = None if signer.awaiting_health else signer.next_wakeup()
        timeout = None if wakeup is None else max(0.0, wakeup - time.time())
        try:
            if not conn.poll(timeout):
                _rolled(signer, pulse if spoke else None)
                signer.maps.refresh()  # a database file replaced: published below
                if _send(pulse, signer.publish(), signer):  # or signatures fall due
                    spoke = True
                elif spoke and signer.maps.restated:  # a database that does not load: the
                    pulse.send(signer.choices())  # same answers, and /status says so now
                continue
            batch = _queued(conn)
        except (EOFError, OSError):
            return  # the supervisor is gone
        health = _take(signer, batch)
        taken = sum(isinstance(message, messages.Health) for message in batch)
        del batch  # a Resume holds its predecessor's snapshot (10 MB at 10,000 signed names)
        if health is None:
            return
        if not health:
            continue
        # Whatever health is queued when a generation starts belongs in it: a wave of flips
        # is one generation, not one per report.
        if _send(pulse, signer.publish(), signer):
            spoke = True
        elif spoke:  # the same answers, maybe chosen by another rule (a drain under
            pulse.send(signer.choices())  # serve-all): /status says which
        pulse.done += taken
        pulse.beat()  # the health taken is in the answers now (or changed none of them)


def _started(conn: Connection) -> Signer:
    """The signer of the configuration in `Start`. A function of its own so that neither the
    decoded configuration nor its encoding outlives it: the zones keep what they need."""
    start, cfg = child.start(conn, "signer")
    try:
        # Before any key is read or written: they are this user's (`server.signer_user`).
        privilege.become_signer(privilege.resolve_signer(
            privilege.resolve(cfg.server.user, cfg.server.group), cfg.server.signer_user))
    except (ConfigError, privilege.PrivilegeError) as e:
        messages.send(conn, messages.Fatal(start.slot, str(e)))
        raise SystemExit(EXIT_BAD_KEY) from None
    try:
        signer = Signer(cfg)
        signer.floor(start.serials)
    except keys.KeyFileError as e:
        messages.send(conn, messages.Fatal(start.slot, str(e)))
        raise SystemExit(EXIT_BAD_KEY) from None
    return signer


def _rolled(signer: Signer, pulse: child.Pulse | None) -> None:
    """Take the key rolls' due steps (a step that fails is logged and retried later, see
    `Keyrings.step`). A roll that starts or stops waiting without a change of keys (a step
    held, the parent's answer) is told to `pulse` at once: /metrics and /status show it."""
    before = signer.keyrings.rolls(), signer.keyrings.states()
    if not signer.roll() and pulse is not None \
            and (signer.keyrings.rolls(), signer.keyrings.states()) != before:
        pulse.send(signer.choices())


def _take(signer: Signer, batch: list[messages.ToChild]) -> bool | None:
    """Apply a batch of messages: whether it held health, None on `Bye`."""
    health = False
    for message in batch:
        match message:
            case messages.Health(states=states, full=full, names=names, left=left):
                signer.merge(states, full, names, left)
                health = True
            case messages.Resume():
                signer.resume(message)
            case messages.Reconfigure(config=encoded):
                _reconfigure(signer, encoded)
            case messages.Bye():
                return None
            case _:
                log.warning("ignoring unexpected %s", type(message).__name__)
    return health


def _reconfigure(signer: Signer, encoded: bytes) -> None:
    try:
        cfg = config.decode(encoded)
    except msgspec.DecodeError as e:  # the supervisor's bug: keep serving what we have
        log.error("ignoring a new configuration that does not decode, keeping the old: %s", e)
        return
    signer.reconfigure(cfg)


def _queued(conn: Connection) -> list[messages.ToChild]:
    """The next message, and every one already queued behind it."""
    batch = [messages.decode_to_child(conn.recv_bytes())]
    while conn.poll(0):
        batch.append(messages.decode_to_child(conn.recv_bytes()))
    return batch


def _send(pulse: child.Pulse, published: messages.Published | None, signer: Signer) -> bool:
    """A new generation, and then what each pooled name answers in it and why (/status);
    whether there was one."""
    if published is None:
        return False
    log.info("generation %d: serials %s", published.generation, published.serials)
    if signer.new_maps is not None:  # before the generation that answers by them
        pulse.send(signer.new_maps)
        signer.new_maps = None
    pulse.send(published)
    signer.keyrings.first_served()
    pulse.send(signer.choices())
    return True
