"""The signer process: builds the zones from config and health, renders every answer."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection

from healthdns.shared import child, messages
from healthdns.shared.config import Config
from healthdns.signer import render, zone
from healthdns.signer.serial import next_serial

log = logging.getLogger("healthdns.signer")


class Signer:
    """Holds the health state and publishes a snapshot whenever what is served changes."""

    def __init__(self, cfg: Config, now: Callable[[], float] = time.time) -> None:
        self.zones = zone.build(cfg)
        self.now = now
        self.health: dict[str, bool] = {}
        self.serials: list[int | None] = [None] * len(self.zones)
        self.prints: list[tuple[object, ...] | None] = [None] * len(self.zones)
        self.generation = 0

    def resume(self, generation: int, serials: list[int]) -> None:
        """Continue from a predecessor's last snapshot (respawned after a crash)."""
        if len(serials) == len(self.serials):
            self.generation = generation
            self.serials = list(serials)

    def update(self, states: Mapping[str, bool], full: bool) -> messages.Published | None:
        if full:
            self.health = dict(states)
        else:
            self.health.update(states)
        return self.publish()

    def publish(self) -> messages.Published | None:
        changed = False
        for i, z in enumerate(self.zones):
            print_ = zone.fingerprint(z, self.health)
            if print_ != self.prints[i]:
                self.prints[i] = print_
                self.serials[i] = next_serial(self.serials[i], self.now())
                changed = True
        if not changed:
            return None
        self.generation += 1
        serials = [s for s in self.serials if s is not None]
        snapshot = messages.Snapshot(self.generation, render.tables(self.zones, self.health,
                                                                    serials))
        return messages.Published(self.generation, serials, messages.encode(snapshot))


def run(conn: Connection) -> None:
    _, cfg = child.start(conn, "signer")
    signer = Signer(cfg)
    while True:
        try:
            message = messages.decode_to_child(conn.recv_bytes())
        except (EOFError, OSError):
            return  # the supervisor is gone
        match message:
            case messages.Health(states=states, full=full):
                published = signer.update(states, full)
                if published is not None:
                    log.info("generation %d: serials %s", published.generation,
                             published.serials)
                    messages.send(conn, published)
            case messages.Resume(generation=generation, serials=serials):
                signer.resume(generation, serials)
            case messages.Bye():
                return
            case _:
                log.warning("ignoring unexpected %s", type(message).__name__)
