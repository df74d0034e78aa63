"""The signer process: builds the zones from config and health, renders every answer."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection

from healthdns.shared import child, messages
from healthdns.shared.config import Config
from healthdns.signer import keys, render, zone
from healthdns.signer.dnssec import ZoneSigner
from healthdns.signer.serial import next_serial

log = logging.getLogger("healthdns.signer")


class Signer:
    """Holds the health state and publishes a snapshot whenever what is served changes."""

    def __init__(self, cfg: Config, now: Callable[[], float] = time.time) -> None:
        self.zones = zone.build(cfg)
        self.now = now
        self.signers = self._signers(cfg)
        self.caches = [render.RenderCache() for _ in self.zones]
        self.previous: list[messages.ZoneTable] | None = None
        self.health: dict[str, bool] = {}
        self.serials: list[int | None] = [None] * len(self.zones)
        self.prints: list[tuple[object, ...] | None] = [None] * len(self.zones)
        self.generation = 0

    def resume(self, generation: int, serials: list[int]) -> None:
        """Continue from a predecessor's last snapshot (respawned after a crash).

        Its tables are not known here: the first publication is a full snapshot.
        """
        if len(serials) == len(self.serials):
            self.generation = generation
            self.serials = list(serials)

    def update(self, states: Mapping[str, bool], full: bool) -> messages.Published | None:
        if full:
            self.health = dict(states)
        else:
            self.health.update(states)
        return self.publish()

    def _signers(self, cfg: Config) -> list[ZoneSigner | None]:
        """A signer per signed zone; an alias zone shares the keys of its zone."""
        loaded: dict[int, list[keys.Key]] = {}
        signers: list[ZoneSigner | None] = []
        for z in self.zones:
            spec = cfg.zones[z.index].dnssec
            if spec is None:
                signers.append(None)
                continue
            if z.index not in loaded:
                loaded[z.index] = keys.load_all(spec, f"zones[{z.index}].dnssec")
            signers.append(ZoneSigner(z.origin, loaded[z.index], spec, self.now))
        return signers

    def next_renewal(self) -> float | None:
        """When the first signature falls due for renewal (None in unsigned zones)."""
        return min((r for s in self.signers if s is not None
                    if (r := s.next_renewal()) is not None), default=None)

    def publish(self) -> messages.Published | None:
        """A new snapshot when what is served changed or signatures fall due, else None."""
        renewal = self.next_renewal()
        due = renewal is not None and renewal <= self.now()
        changed = False
        for i, z in enumerate(self.zones):
            print_ = zone.fingerprint(z, self.health)
            if print_ != self.prints[i] or (due and self.signers[i] is not None):
                self.prints[i] = print_
                self.serials[i] = next_serial(self.serials[i], self.now())
                changed = True
        if not changed:
            return None
        if due:
            for cache in self.caches:
                cache.clear()  # renewed signatures: render everything again
            for signer in self.signers:
                if signer is not None:
                    signer.horizon = self.now() + signer.spec.refresh / 4
        self.generation += 1
        serials = [s for s in self.serials if s is not None]
        tables = render.tables(self.zones, self.health, serials, self.signers, self.caches)
        for signer in self.signers:
            if signer is not None:
                signer.prune()
                signer.horizon = 0.0
        delta = b""
        if self.previous is not None:
            changes = [_changes(old, new) for old, new in zip(self.previous, tables, strict=True)]
            delta = messages.encode(messages.Delta(self.generation, self.generation - 1, changes))
        self.previous = tables
        snapshot = messages.encode(messages.Snapshot(self.generation, tables))
        return messages.Published(self.generation, serials, snapshot, delta)


EXIT_BAD_KEY = 2


def run(conn: Connection) -> None:
    start, cfg = child.start(conn, "signer")
    try:
        signer = Signer(cfg)
    except keys.KeyFileError as e:
        messages.send(conn, messages.Fatal(start.slot, str(e)))
        raise SystemExit(EXIT_BAD_KEY) from None
    while True:
        renewal = signer.next_renewal()
        timeout = None if renewal is None else max(0.0, renewal - time.time())
        try:
            if not conn.poll(timeout):
                _send(conn, signer.publish())  # signatures fall due
                continue
            message = messages.decode_to_child(conn.recv_bytes())
        except (EOFError, OSError):
            return  # the supervisor is gone
        match message:
            case messages.Health(states=states, full=full):
                _send(conn, signer.update(states, full))
            case messages.Resume(generation=generation, serials=serials):
                signer.resume(generation, serials)
            case messages.Bye():
                return
            case _:
                log.warning("ignoring unexpected %s", type(message).__name__)


def _send(conn: Connection, published: messages.Published | None) -> None:
    if published is not None:
        log.info("generation %d: serials %s", published.generation, published.serials)
        messages.send(conn, published)


def _changes(old: messages.ZoneTable, new: messages.ZoneTable) -> messages.ZoneDelta:
    """What a responder must change to go from `old` to `new`.

    Unchanged answers are the very same objects (the render cache reuses them), so an
    identity test finds what changed without comparing bytes.
    """
    return messages.ZoneDelta(
        origin=new.origin, serial=new.serial, soa=new.soa, soa_signed=new.soa_signed,
        answers={k: v for k, v in new.answers.items() if old.answers.get(k) is not v},
        names={k: v for k, v in new.names.items() if old.names.get(k) is not v},
        removed_answers=[k for k in old.answers if k not in new.answers],
        removed_names=[k for k in old.names if k not in new.names],
        variants=new.variants,
        proofs={i: p for i, p in enumerate(new.proofs)
                if i >= len(old.proofs) or old.proofs[i] is not p},
    )
