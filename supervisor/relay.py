"""Relaying between the roles: what each child says is checked against its role's protocol, then
handed on (a publication to the responders and the transfer process, the prober's health to
the signer); what a child that starts takes up from is kept here (the latest snapshot and
records, compressed, and the last publication).

Children are not trusted to keep to the protocol (see "Security model" in docs/operations.md):
each role's pipe is decoded with that role's own message union and read without blocking, with
a size limit per role; a child that sends anything else is killed and respawned, and nothing it
sent is relayed.
"""

from __future__ import annotations

import logging
import zlib
from typing import TYPE_CHECKING

import msgspec

from healthdns.shared import heap, messages
from healthdns.shared.config import format_endpoint
from healthdns.supervisor import notify
from healthdns.supervisor.channel import FrameTooLarge
from healthdns.supervisor.roles import SIGNER_FRAME_LIMIT
from healthdns.supervisor.slot import Slot

if TYPE_CHECKING:
    from healthdns.supervisor.arbiter import Supervisor

log = logging.getLogger("healthdns.supervisor")

SNAPSHOT_COMPRESSION = 1  # zlib level: signed data (random signatures) gains little above it
# A child that leaves more than this unread is stuck (or refuses to read): killed, respawned.
# Two of the largest snapshots: a responder that starts is sent the snapshot at once, and may
# fall one generation behind while it loads it.
UNREAD_LIMIT = 2 * SIGNER_FRAME_LIMIT


class Relay:
    def __init__(self, supervisor: Supervisor) -> None:
        """`supervisor`: whose children are relayed between."""
        self.sup = supervisor
        self.health: dict[str, bool] | None = None  # the latest, as the signer was sent it
        self.own: dict[str, bool] | None = None  # the prober's latest view (with peers)
        self.fenced = False  # the prober says it is fenced (with peers: its view does not vote)
        self.left: dict[str, int] = {}  # the prober's counts of checks left, renamed
        self.packed = b""  # the latest snapshot, compressed (see `snapshot`)
        self.maps = b""  # the latest `Maps` (compiled location maps), compressed
        self.records: bytes | None = None  # the latest full `Records`, compressed
        self.published: messages.Resume | None = None  # without its snapshot (see `resume`)
        self.generation = 0  # the last one relayed: a signer may only publish the next one
        self.announced = False  # every child is ready, and the log and systemd were told

    def receive(self, slot: Slot) -> None:
        assert slot.channel is not None
        before = slot.channel.received
        try:
            frames = slot.channel.receive()
        except EOFError:
            slot.close()  # its sentinel follows
            return
        except FrameTooLarge as e:
            self.reject(slot, str(e))
            return
        if slot.channel.received != before:
            slot.heard = self.sup.now()  # part of a large frame counts: it is being sent
        for frame in frames:
            try:
                message = messages.decode_from(slot.role.name, frame)
            except msgspec.DecodeError as e:
                self.reject(slot, f"a message a {slot.role.name} may not send ({e})")
                return
            problem = self.dispatch(slot, message)
            if problem is not None:
                self.reject(slot, problem)
                return
            slot.spoke = True

    def dispatch(self, slot: Slot, message: messages.FromChild) -> str | None:
        """Act on one message that decoded for the slot's role; the problem if it breaks the
        protocol, and then nothing of it has been done."""
        if isinstance(message, messages.Bound | messages.Ready | messages.Fatal) \
                and message.slot != slot.index:
            return f"{type(message).__name__} names slot {message.slot}"
        match message:
            case messages.HealthReport(states=states, full=full, left=left):
                return self._on_report(states, full or not slot.spoke, left)
            case messages.Verdict(states=states, full=full):
                self._on_verdict(states, full)
            case messages.PeerStats() if slot.state == "running":
                self.sup.counters.peered(message)
            case messages.Published() if message.generation != self.generation + 1:
                return f"generation {message.generation} published after {self.generation}"
            case messages.Published():
                self._on_published(message)
            case messages.Maps():
                self._on_maps(message)
            case messages.Bound(listen=listen) if not slot.spoke:
                self._on_bound(slot, listen)
            case messages.Ready() if slot.spoke and slot.state == "starting":
                slot.mark_running()
                if slot is self.sup.rolling.successor:
                    self.sup.rolling.promote(slot)
                self.announce()
            case messages.Fatal(reason=reason) if not slot.spoke:
                self._on_fatal(slot, reason)
            case messages.Choices(generation=generation, names=names, seconds=seconds,
                                  ttls=ttls, rolls=rolls) \
                    if generation == self.generation and slot.spoke:
                self.sup.steering.chosen(names, seconds, ttls, rolls)
            case messages.Probes(rows=rows, fenced=fenced) if slot.spoke:
                self._on_fence(fenced)
                return self.sup.steering.detail(rows)
            case messages.Stats() if slot.state == "retiring":
                pass  # its totals were kept when it was replaced
            case messages.Stats() if slot.state == "running":
                self.sup.counters.counted(slot.index, message, self.sup.now())
            case messages.TransferStats() if slot.state == "running":
                self.sup.counters.transferred(message)
            case messages.Alive(taken=taken):
                self.sup.steering.health_taken(taken)
            case _:
                return f"{type(message).__name__} out of turn"
        return None

    def _on_maps(self, message: messages.Maps) -> None:
        """New location maps: every responder takes them for the generation that follows;
        one that starts later is sent them before its snapshot. Sent only when a map
        changes, never per generation (megabytes each)."""
        encoded = messages.encode(message)
        for responder in self.sup.responders:
            self.send(responder, encoded)
        self.maps = zlib.compress(encoded, SNAPSHOT_COMPRESSION)

    def _on_published(self, message: messages.Published) -> None:
        """Responders hold the previous generation (or were sent it before anything newer):
        the delta brings them up to date; a responder started later is sent the full snapshot
        kept here."""
        generation, snapshot = message.generation, message.snapshot
        self.sup.signer.mark_running()
        self.published = messages.Resume(generation, message.serials, message.prints, b"",
                                         message.renewal)
        for responder in self.sup.responders:
            self.send(responder, message.delta or snapshot)
        self.packed = zlib.compress(snapshot, SNAPSHOT_COMPRESSION)  # once it is sent
        log.debug("generation %d sent to responders; its snapshot (%d bytes) kept in %d",
                  generation, len(snapshot), len(self.packed))
        self._relay_records(message)
        heap.trim()  # zlib's buffers and the decoded message's blocks (0.8 MiB)
        self.generation = generation
        self.sup.steering.published(generation, message.serials, self.sup.now())
        self.sup.keeping.keep_serials(message.serials)

    def _on_report(self, states: dict[str, bool], full: bool,
                   left: dict[str, int]) -> str | None:
        """A prober's report, its ids renamed for the signer (see `views`); the first report of
        a prober process replaces the state, whatever it says."""
        renames = self.sup.steering.renames  # both configurations' while a reload settles
        unknown = next((target for target in states if target not in renames), None)
        if unknown is not None:
            return f"health of an unknown target {unknown[:100]!r}"
        self.sup.prober.mark_running()  # its first report is its readiness
        if full and self.sup.reloading.reconfiguring:
            self.sup.reloading.settle()
        if self.sup.peers is not None:  # the signer is sent the verdict instead
            # and no counts of checks left: they are this prober's alone, and instances that
            # share a verdict must give the same TTLs (a target is then taken as a whole
            # `fall` from flipping: see docs/sites.md)
            self._on_own_view(states, full)
            return None
        # Counts of a target a reload dropped mean nothing: left out, not a protocol error.
        counts = {renames[t]: n for t, n in left.items() if t in renames}
        self.send_health(self.sup.steering.report(states, full), full, counts)
        return None

    def _on_own_view(self, states: dict[str, bool], full: bool) -> None:
        """Kept for a peers process that starts later, and relayed to the running one."""
        if full or self.own is None:
            self.own = dict(states)
        else:
            self.own.update(states)
        if self.sup.peers is not None:
            self.send(self.sup.peers, messages.encode(messages.View(states, full, self.fenced)))

    def _on_fence(self, fenced: bool) -> None:
        """The peers process learns of the prober's fence with its next heartbeat."""
        if fenced != self.fenced and self.own is not None and self.sup.peers is not None:
            self.send(self.sup.peers, messages.encode(messages.View({}, False, fenced)))
        self.fenced = fenced

    def _on_verdict(self, states: dict[str, bool], full: bool) -> None:
        """The peers' verdict, in place of the prober's report. Targets a reload just removed
        may still be in one sent before it: those are left out, as the prober's would be."""
        renames = self.sup.steering.renames
        known = {t: up for t, up in states.items() if t in renames}
        if full or known:
            self.send_health(self.sup.steering.report(known, full), full)

    def send_health(self, states: dict[str, bool], full: bool,
                    left: dict[str, int] | None = None) -> None:
        if full or self.health is None:
            self.health = dict(states)
        else:
            self.health.update(states)
        self.left.update(left or {})
        if full:  # a target no longer checked has no count
            self.left = {t: n for t, n in self.left.items() if t in self.health}
        self.sup.steering.health_sent(self.sup.now())
        self.send(self.sup.signer, messages.encode(messages.Health(
            states, full, self.sup.steering.overrides.names(),
            dict(self.left) if full else left or {})))

    def _relay_records(self, message: messages.Published) -> None:
        """The transfer process holds the previous generation's records (or was sent them
        when it started): the delta brings it up to date; the full ones are kept for a
        transfer process that starts later."""
        if self.sup.transfer is not None and (message.records_delta or message.records):
            self.send(self.sup.transfer, message.records_delta or message.records)
        if message.records:  # compressed like the snapshot, once it is sent
            self.records = zlib.compress(message.records, SNAPSHOT_COMPRESSION)

    def _on_fatal(self, slot: Slot, reason: str) -> None:
        """A child that cannot work says so first, before anything else.

        A responder's only reason is a bind failure: at start-up the server cannot serve as
        configured and stops. Once it has served, a respawned responder that cannot bind is a
        crash like any other (backoff, crash budget): one responder never stops the others.
        """
        if slot.role.serves and self.announced:
            log.error("%s: %s", slot.name, reason)  # it exits; its sentinel brings the respawn
            return
        self.sup.fatal(f"{slot.name}: {reason}")

    def _on_bound(self, slot: Slot, listen: list[tuple[str, int, bool]]) -> None:
        if slot.role.listens == "transfer":
            self.sup.transfer_listen = listen  # port 0 resolved: a respawn binds the same
            return
        if slot.role.listens == "peers":
            return  # its configured address: its peers send there
        if slot.index == 0 and self.sup.listen != listen:
            self.sup.listen = listen
        if all(r.state == "new" for r in self.sup.responders[1:]):
            for responder in self.sup.responders[1:]:
                self.sup.spawn(responder)

    def announce(self) -> None:
        if self.announced or not all(r.state == "running" for r in self.sup.responders):
            return
        if self.sup.transfer is not None and self.sup.transfer.state != "running":
            return  # configured transfers are part of being ready: it holds the records
        self.announced = True
        where = ", ".join(format_endpoint(h, p) for h, p, _ in self.sup.listen)
        zones = sum(1 + len(z.aliases) for z in self.sup.cfg.zones)
        transfers = "" if self.sup.transfer is None else ", transfers on " + ", ".join(
            format_endpoint(h, p) for h, p, _ in self.sup.transfer_listen)
        log.info("ready: serving %d zone(s) on %s (udp, tcp) with %d responder(s)%s",
                 zones, where, len(self.sup.responders), transfers)
        notify.notify("READY=1", f"STATUS=serving on {where}")  # systemd's Type=notify

    def catch_up(self, slot: Slot) -> None:
        """Send a child that starts what it takes up from (see `Role.catches_up`)."""
        match slot.role.catches_up:
            case "resume":
                if self.published is not None:
                    self.send(slot, messages.encode(self.resume(self.published)))
                self.sup.steering.signer_started(self.sup.now(), self.health is not None)
                if self.health is not None:
                    self.send(slot, messages.encode(messages.Health(
                        self.health, True, self.sup.steering.overrides.names(),
                        dict(self.left))))
            case "snapshot" if self.packed:
                if self.maps:  # the maps its snapshot's geo names answer by, first
                    self.send(slot, zlib.decompress(self.maps))
                self.send(slot, zlib.decompress(self.packed))  # the latest before it serves
            case "records" if self.records is not None:
                self.send(slot, zlib.decompress(self.records))  # deltas follow from them
            case "view" if self.own is not None:
                self.send(slot, messages.encode(messages.View(self.own, True, self.fenced)))

    @property
    def snapshot(self) -> bytes | None:
        """The latest encoded snapshot: what a responder that starts is sent first.

        Kept compressed: at 10,000 signed names a snapshot is 10 MB, and 3.3 MB compressed
        (zlib level 1: 85 ms once per generation, 33 ms to expand once per start).
        """
        return zlib.decompress(self.packed) if self.packed else None

    def resume(self, published: messages.Resume) -> messages.Resume:
        return msgspec.structs.replace(published, snapshot=self.snapshot or b"")

    def send(self, slot: Slot, data: bytes) -> None:
        if slot.channel is None:
            return
        try:
            slot.channel.send(data)
        except OSError:
            slot.channel.discard_output()  # it died: its sentinel tells us and it is respawned
            return
        if slot.channel.pending > UNREAD_LIMIT:
            self.reject(slot, f"{slot.channel.pending} bytes sent to it left unread")

    def flush(self, slot: Slot) -> None:
        assert slot.channel is not None
        try:
            slot.channel.flush()
        except OSError:
            slot.channel.discard_output()  # as in `send`

    def reject(self, slot: Slot, problem: str) -> None:
        """Kill a child that broke the protocol; its sentinel brings the respawn."""
        self.sup.counters.rejected[slot.role.name] += 1
        self.sup.counters.changed = True
        log.warning("%s (pid %s) broke the protocol: %s; killing it", slot.name, slot.pid,
                    problem)
        slot.kill()
