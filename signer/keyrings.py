"""The keyrings of every zone under a policy, as the signer's loop drives them.

The loop asks `due` for the earliest moment something is to be done (a roll's step, or asking
the parent again while a roll waits for it), and calls `step` then: the keyrings whose keys
changed are returned, and their zones are signed anew with the keys they serve now.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import dns.name

from healthdns.shared.config import Config, DnssecSpec
from healthdns.signer import parent, rollover
from healthdns.signer.keyring import Keyring
from healthdns.signer.keys import KeyFileError

log = logging.getLogger("healthdns.signer.keys")
RETRY = 60.0  # after a step failed (a key file gone, a full disk): seconds until it is retried


class Keyrings:
    """By zone index, the keyring of each zone whose keys the signer makes and rolls."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self.now = now
        self.rings: dict[int, Keyring] = {}
        self.failed: dict[int, float] = {}  # zone index -> when a failed step is tried again

    def configure(self, cfg: Config) -> None:
        """Take a configuration: a zone whose DNSSEC settings are the same keeps its keyring,
        others are opened anew from their folder (state and keys read back, or made)."""
        rings: dict[int, Keyring] = {}
        held = {(r.zone, r.spec): r for r in self.rings.values()}
        for index, zone in enumerate(cfg.zones):
            spec = zone.dnssec
            if spec is None or spec.policy is None:
                continue
            kept = held.get((zone.origin, spec))
            rings[index] = kept if kept is not None else self._opened(zone.origin, spec,
                                                                      zone.max_ttl())
        self.rings = rings

    def _opened(self, origin: str, spec: DnssecSpec, max_ttl: int) -> Keyring:
        assert spec.policy is not None
        t = rollover.timings(spec.policy, spec.dnskey_ttl, max_ttl)
        return Keyring(origin, spec, t, self.now())

    def due(self) -> float | None:
        """When `step` has something to do next (None: nothing by time)."""
        times = []
        for index, ring in self.rings.items():
            if index in self.failed:
                times.append(self.failed[index])
                continue
            step = ring.next_step()
            if step.when is not None:
                times.append(step.when)
            if ring.waits_for_parent():
                asked = ring.parent_asked
                assert ring.spec.policy is not None
                times.append(self.now() if asked is None
                             else asked + ring.spec.policy.check_interval)
        return min(times, default=None)

    def rolls(self) -> list[tuple[str, float, bool]]:
        """Per zone: its name, its next step's time (0: not by time), whether it waits for
        the parent (see `messages.Choices`)."""
        out = []
        for ring in self.rings.values():
            step = ring.next_step()
            out.append((ring.label, step.when or 0.0, step.parent))
        return out

    def step(self) -> set[int]:
        """Ask the parent where a roll waits for it, take every step due; the indexes of the
        zones whose keys changed."""
        changed = set()
        for index, ring in self.rings.items():
            now = self.now()
            if now < self.failed.get(index, now):
                continue
            assert ring.spec.policy is not None
            waiting = ring.waits_for_parent()
            if waiting and (ring.parent_asked is None
                            or now >= ring.parent_asked + ring.spec.policy.check_interval):
                self._ask(ring, now)
            try:
                if ring.step(now):
                    changed.add(index)
                self.failed.pop(index, None)
            except (KeyFileError, OSError) as e:
                # The zone stays at the step it was, signed with the keys it has.
                log.error("%s: a key roll's step failed, trying again in %.0f s: %s",
                          ring.label, RETRY, e)
                self.failed[index] = now + RETRY
        return changed

    def _ask(self, ring: Keyring, now: float) -> None:
        zone = dns.name.from_text(ring.zone)
        assert ring.spec.policy is not None
        try:
            addresses = parent.servers(zone, ring.spec.policy)
        except Exception as e:  # noqa: BLE001  # any failure to find them: wait and say so
            log.warning("%s: the parent's name servers cannot be found: %s", ring.label, e)
            ring.heard({}, now)
            return
        cds = {k.tag for k in rollover.cds(ring.state)}
        sep = [k for k in ring.signing_keys() if k.tag in cds]
        gone = [k.tag for k in ring.waits_for_parent() if k.removed is not None]
        answer = parent.ask(zone, sep, gone, addresses)
        ring.heard(answer.served, now, answer.missing)
        for tag, why in answer.missing.items():
            log.info("%s: DS %d: %s", ring.label, tag, why)
