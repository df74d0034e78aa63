"""The peers process's event loop: the pipe from the supervisor, the HTTPS listener peers send
their reports to, the reports this instance sends them, and the verdict.

This instance's own view comes from the supervisor (`messages.View`, the prober's report
relayed). What changed in it is sent to every peer at once, and every `peers.interval` a
heartbeat keeps it fresh there; both carry the digest that keeps the peer's copy in step, and
the view goes whole only when that copy is unknown (`sync`). Each accepted report from a peer
updates that peer's view. After either, and on every tick (a view going stale changes the
votes; a steadied flip falls due), the fresh views are combined by the quorum rule
(`verdict`) and what changed is sent to the supervisor (`messages.Verdict`), which hands it to
the signer in place of the prober's own view.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import ssl
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

import aiohttp
from aiohttp import web

from healthdns.peers import gate, sync, verdict, wire
from healthdns.peers.book import Peer
from healthdns.peers.wire import Refused
from healthdns.shared import child, messages, tls
from healthdns.shared.config import PeersSpec

log = logging.getLogger("healthdns.peers")

TICK = 0.2  # seconds between two looks at staleness, at most


class Exchange:
    """The views of every vantage, the verdict last sent, and the connections both ways."""

    def __init__(self, slot: int, spec: PeersSpec, sock: socket.socket, conn: Connection,
                 now: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.slot, self.spec, self.sock, self.conn = slot, spec, sock, conn
        self.now, self.wall = now, wall
        self.peers = {p.name: Peer.of(p, spec.max_rate) for p in spec.peers}
        self.own: dict[str, bool] | None = None  # this instance's view, once the first came
        self.mine = sync.Tally()  # the same view, with its digest
        self.fenced = False  # this instance's prober is fenced: its view does not vote
        self.last: dict[str, bool] = {}  # the verdict the supervisor holds
        self.full_due = True  # the next verdict goes whole (the first, or after a full view)
        self.short = False  # too few fresh vantages for some target: the alert
        self.unknown_sender = 0
        self.stopped: asyncio.Future[None] | None = None
        self.said: dict[str, float] = {}  # when each kind of refusal was last logged
        self.gate = gate.Gate(*gate.caps(len(spec.peers)), spec.interval)
        # What the last verdict was made of: the fresh vantages, and `version`, which counts
        # changes of any view's content. A heartbeat that changes neither costs no verdict.
        self.version = 0
        self.basis: tuple[tuple[str, ...], int] = ((), -1)
        self.shown: dict[str, messages.Votes] | None = None  # the contested targets last sent
        # What the contested targets were worked out from (the basis and the verdict), and
        # how many: looked at again only when either changed, or while a flip is held.
        self.looked: tuple[tuple[tuple[str, ...], int], dict[str, bool], int] | None = None
        self.raw: dict[str, bool | None] = {}  # the votes' outcome the basis makes
        self.steady = verdict.Steady(spec.rise, spec.fall, spec.hold_down, spec.interval)
        # The targets whose checks only other instances run: in no own view, yet judged.
        self.elsewhere = frozenset(t for t, where in spec.placed.items() if spec.name not in where)

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        self.stopped = loop.create_future()
        app = web.Application(client_max_size=self.spec.max_report)
        app.router.add_post(wire.PATH, self._receive)
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               keepalive_timeout=gate.KEEPALIVE)
        await runner.setup()
        assert runner.server is not None  # set up just above
        door = loop.create_task(self.gate.serve(self.sock, runner.server, self._server_tls()))
        host, port = self.sock.getsockname()[:2]
        messages.send(self.conn, messages.Bound(self.slot, [(host, port, True)]))
        messages.send(self.conn, messages.Ready(self.slot))
        # Only now: a verdict sent before `Bound` and `Ready` would break the protocol.
        loop.add_reader(self.conn.fileno(), self._on_pipe)
        tasks = [door, loop.create_task(self._tick()), loop.create_task(self._push())]
        try:
            await self.stopped
        finally:
            for task in tasks:
                task.cancel()
            await runner.cleanup()
            loop.remove_reader(self.conn.fileno())

    def stop(self) -> None:
        if self.stopped is not None and not self.stopped.done():
            self.stopped.set_result(None)

    def _server_tls(self) -> ssl.SSLContext | None:
        if self.spec.plain_http:
            return None
        return tls.server_context(self.spec.cert_pem, self.spec.key_pem)

    def _client_tls(self) -> ssl.SSLContext | bool:
        """Peers' certificates verified, name included: against `ca_file`'s CAs, or the
        system's."""
        if self.spec.plain_http:
            return True  # no TLS at all: the URLs are http:// on loopback
        return ssl.create_default_context(cadata=self.spec.ca_pem or None)

    # --- this instance's view ---------------------------------------------------------------

    def _on_pipe(self) -> None:
        message = child.received(self.conn, messages.decode_to_child, self.stop)
        if message is None:
            return
        match message:
            case messages.View(states=states, full=full, fenced=fenced):
                if fenced != self.fenced:
                    log.warning("this instance's prober is %s", "fenced: its view does not "
                                "vote" if fenced else "no longer fenced: its view votes")
                self.fenced = fenced
                self.version += 1
                if full or self.own is None:
                    self.mine = sync.Tally.of(states)
                    self.own, self.full_due = self.mine.states, True
                    for peer in self.peers.values():
                        peer.outbox.resync()
                else:
                    done = self.mine.update({t: up for t, up in states.items() if t in self.own})
                    for peer in self.peers.values():
                        peer.outbox.changed(done)
                for peer in self.peers.values():
                    peer.wake.set()  # the own view changed: send it now
                self.decide()
            case messages.Bye():
                self.stop()
            case _:
                log.warning("ignoring unexpected %s", type(message).__name__)

    async def _push(self) -> None:
        """Send the own view to every peer, each in a task of its own: a slow peer (or a
        whole view on its way to one) holds back no other."""
        timeout = aiohttp.ClientTimeout(total=max(1.0, self.spec.interval))
        context = self._client_tls()
        async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
            await asyncio.gather(*(self._push_to(session, context, peer)
                                   for peer in self.peers.values()))

    async def _push_to(self, session: aiohttp.ClientSession, context: ssl.SSLContext | bool,
                       peer: Peer) -> None:
        """On each change, and every interval at least; at half the rate a peer takes
        (`max_rate`) at most, so that a burst of changes is never refused there: the changes
        that come meanwhile go together in the next report."""
        gap = 2 / self.spec.max_rate
        while True:
            try:
                await asyncio.wait_for(peer.wake.wait(), self.spec.interval)
            except TimeoutError:
                pass
            peer.wake.clear()
            if self.own is not None:
                await self._send(session, context, peer, *peer.outbox.report(
                    self.spec.name, self.wall(), self.mine, self.fenced, peer.secret))
                await asyncio.sleep(gap)

    async def _send(self, session: aiohttp.ClientSession, context: ssl.SSLContext | bool,
                    peer: Peer, report: wire.Report, body: bytes,
                    taken: dict[str, bool]) -> None:
        headers = {wire.SENDER: self.spec.name, wire.SIGNATURE: wire.sign(body, peer.secret),
                   "Content-Type": "application/msgpack"}
        status = 0
        # A whole view may take longer than a heartbeat on a busy host: its own timeout.
        slow = aiohttp.ClientTimeout(total=max(10.0, 2 * self.spec.interval))
        try:
            async with session.post(peer.spec.url + wire.PATH, data=body, headers=headers,
                                    ssl=context, timeout=slow if report.whole else None
                                    ) as response:
                status = response.status
                problem = "" if status == 204 else f"status {status}"
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            problem = str(e) or type(e).__name__
        peer.sent += 1
        if peer.outbox.answered(report, taken, status):
            peer.wake.set()  # the peer holds no copy of the view in step: it goes whole now
            return
        if problem:
            peer.failed += 1
            if peer.failing != problem:
                log.warning("peer %s: sending the view failed: %s", peer.spec.name, problem)
        elif peer.failing:
            log.info("peer %s: takes the view again", peer.spec.name)
        peer.failing = problem

    # --- the peers' views -------------------------------------------------------------------

    async def _receive(self, request: web.Request) -> web.Response:
        peer = self.peers.get(request.headers.get(wire.SENDER, ""))
        if peer is None:
            self.unknown_sender += 1
            self._say("sender", "a report from %s names no configured peer", request.remote)
            return web.Response(status=403)
        if (request.content_length or 0) > self.spec.max_report:
            return self._refuse(peer, Refused("oversized", "too large"), 413)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(peer, Refused("oversized", "too large"), 413)
        try:
            report = wire.judge(body, request.headers.get(wire.SIGNATURE, ""), peer.spec.name,
                                peer.secret, self.wall(), self.spec.replay_window,
                                peer.sent_at)
        except Refused as e:
            return self._refuse(peer, e, 403 if e.reason != "malformed" else 400)
        if not peer.bucket.take(self.now()):
            return self._refuse(peer, Refused("rate", "more reports than peers.max_rate"), 429)
        try:
            view = peer.take(report)
        except sync.OutOfStep as e:
            self._say("resync", "peer %s: %s: asking for its whole view", peer.spec.name, e)
            return web.Response(status=sync.RESYNC)
        except Refused as e:
            return self._refuse(peer, e, 400)
        if report.states.keys() - (self.own or {}).keys() - self.elsewhere:
            peer.rejected["unknown"] += 1
            self._say("unknown", "peer %s reports checks this instance does not have; "
                      "taking the others", peer.spec.name)
        before = peer.report
        if view is not peer.view or before is None or before.fenced != report.fenced:
            self.version += 1
        peer.accept(report, view, self.now())
        self.decide()
        return web.Response(status=204)

    def _refuse(self, peer: Peer, refused: Refused, status: int) -> web.Response:
        peer.rejected[refused.reason] += 1
        self._say(refused.reason, "peer %s: refused a report: %s", peer.spec.name, refused)
        return web.Response(status=status)

    def _say(self, kind: str, text: str, *args: object) -> None:
        """Log each kind of refusal once per interval at most: a flood costs no log storm."""
        now = self.now()
        if now - self.said.get(kind, -1e9) >= max(1.0, self.spec.interval):
            self.said[kind] = now
            log.warning(text, *args)

    # --- the verdict ------------------------------------------------------------------------

    def vantages(self, now: float) -> dict[str, verdict.Vantage]:
        views = {name: verdict.Vantage(p.view.states, p.heard, p.report.fenced)
                 for name, p in self.peers.items()
                 if p.report is not None and p.view is not None}
        if self.own is not None:
            views[self.spec.name] = verdict.Vantage(self.own, now, self.fenced)
        return views

    def decide(self) -> None:
        """Combine the fresh views, steady the outcome; send the supervisor what changed (all
        of it when due). The votes are counted again only when what they are made of
        changed; the outcome is steadied again then, and when a flip that waits falls due."""
        if self.own is None:
            return
        now, spec = self.now(), self.spec
        vantages = self.vantages(now)
        basis = (tuple(verdict.fresh(vantages, now, spec.stale_seconds())), self.version)
        if basis == self.basis and not self.full_due and now < self.steady.due:
            return
        if basis != self.basis:
            self.basis = basis
            targets = [*self.own, *(self.elsewhere - self.own.keys())]
            self.raw = verdict.combine(vantages, targets, now, spec.stale_seconds(),
                                       spec.quorum, spec.min_vantages, spec.placed)
            self._alert(any(v is None for v in self.raw.values()), now)
        steadied = self.steady.step(self.raw, now)
        decided = verdict.settle(steadied, self.last, self.own, spec.cut_off)
        full = self.full_due
        changes = decided if full else {
            t: up for t, up in decided.items() if self.last.get(t) != up}
        for target, up in changes.items() if not full else ():
            log.info("verdict: %s %s", target, "up" if up else "DOWN")
        self.last, self.full_due = decided, False
        if full or changes:
            messages.send(self.conn, messages.Verdict(changes, full))

    def _alert(self, short: bool, now: float) -> None:
        if short != self.short:
            fresh = len(verdict.fresh(self.vantages(now), now, self.spec.stale_seconds()))
            if short:
                log.error("too few fresh vantages: %d of the %d needed; %s", fresh,
                          self.spec.min_vantages, "keeping the last verdict"
                          if self.spec.cut_off == "keep" else "following this instance's "
                          "own checks")
            else:
                log.warning("enough fresh vantages again (%d): deciding by quorum", fresh)
        self.short = short

    def _contested(self, now: float) -> tuple[dict[str, messages.Votes] | None, int]:
        """The contested targets (`verdict.contested`), SPLIT_SHOWN of them at most, and how
        many in all; None in place of the ones shown when they are the ones last sent."""
        waiting = self.steady.waiting(now)
        looked = self.looked
        if looked is not None and not waiting and looked[0] == self.basis \
                and looked[1] is self.last:
            return None, looked[2]
        vantages = self.vantages(now)
        found = verdict.contested(vantages, self.raw, self.last, waiting, self.spec.placed)
        self.looked = (self.basis, self.last, len(found))
        shown = {t: messages.Votes(*row)
                 for t, row in itertools.islice(found.items(), messages.SPLIT_SHOWN)}
        if shown == self.shown:
            return None, len(found)
        self.shown = shown
        return shown, len(found)

    async def _tick(self) -> None:
        """Staleness, looked at every tick; the counters and heartbeat every STATS_PERIOD."""
        reported = -1e9
        while True:
            self.decide()
            now = self.now()
            if now - reported >= messages.STATS_PERIOD:
                reported = now
                stale = self.spec.stale_seconds()
                shown, total = self._contested(now)
                messages.send(self.conn, messages.PeerStats(
                    self.slot, [p.row(now, stale) for p in self.peers.values()], self.short,
                    self.unknown_sender, shown, total, self.gate.refused))
            await asyncio.sleep(min(TICK, self.spec.interval))
