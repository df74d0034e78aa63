"""The keyrings of every zone under a policy, as the signer's loop drives them.

The loop asks `due` for the earliest moment something is to be done (a roll's step, or asking
the parent again while a roll waits for it), and calls `step` then: the keyrings whose keys
changed are returned, and their zones are signed anew with the keys they serve now.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from healthdns.shared.config import Config, ZoneSpec
from healthdns.shared.keystate import RollState
from healthdns.signer import chain, parent, rollover
from healthdns.signer.keyring import Keyring
from healthdns.signer.keys import KeyFileError

log = logging.getLogger("healthdns.signer.keys")
RETRY = 60.0  # after a step failed (a key file gone, a full disk): seconds until it is retried


class Keyrings:
    """By zone index, the keyring of each zone whose keys the signer makes and rolls."""

    def __init__(self, now: Callable[[], float] = time.time, served: bool = True) -> None:
        self.now = now
        # Whether the signer's first generation is served: no step is taken before (see
        # `first_served`).
        self.served = served
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
            rings[index] = kept if kept is not None else self._opened(zone)
        self.rings = rings

    def _opened(self, zone: ZoneSpec) -> Keyring:
        spec = zone.dnssec
        assert spec is not None and spec.policy is not None
        t = rollover.timings(spec.policy, spec.dnskey_ttl, zone.max_ttl())
        sample = [chain.ns_sample(zone.nameservers, zone.ns_ttl)]
        return Keyring(zone.origin, spec, t, self.now(), sample, parent.fetch)

    def first_served(self) -> None:
        """The signer's first generation is served: a restarted signer's predecessor may have
        taken a step whose zone never reached the responders (killed in between), so the
        wait of every phase under way counts again from now, and steps may be taken."""
        if self.served:
            return
        self.served = True
        now = self.now()
        for ring in self.rings.values():
            ring.restart_waits(now)

    def due(self) -> float | None:
        """When `step` has something to do next (None: nothing by time)."""
        if not self.served:
            return None
        times = []
        for index, ring in self.rings.items():
            if index in self.failed:
                times.append(self.failed[index])
                continue
            assert ring.spec.policy is not None
            if ring.held is not None:  # the chain is checked again, the parent asked again
                times.append(ring.held_at + ring.spec.policy.check_interval)
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

    def states(self) -> list[RollState]:
        """Per zone: the state of its keys and roll, as last written."""
        return [ring.state for ring in self.rings.values()]

    def step(self) -> set[int]:
        """Ask the parent where a roll waits for it, take every step due; the indexes of the
        zones whose keys changed."""
        changed: set[int] = set()
        if not self.served:
            return changed
        for index, ring in self.rings.items():
            now = self.now()
            if now < self.failed.get(index, now):
                continue
            assert ring.spec.policy is not None
            interval = ring.spec.policy.check_interval
            if ring.held is not None and now < ring.held_at + interval:
                continue
            waiting = ring.waits_for_parent()
            if waiting and (ring.parent_asked is None
                            or now >= ring.parent_asked + interval):
                ring.ask_parent(now)
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
