"""What the supervisor knows of each kind of child, in one table: how much it may send at once,
what it is sent when it starts, how it is named, watched and judged.

The loop asks the table (`ROLES`), never compares role names: a new role is a new row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from healthdns.shared import messages

# The largest frame each role may send. The signer's `Published` carries a whole snapshot and a
# delta: about 20 MB at 10,000 signed names, so 256 MiB leaves room to grow while still bounding
# what the supervisor holds. A responder sends `Bound` (its listen addresses), `Ready` or
# `Fatal`: a few hundred bytes. The prober's limit is its largest legitimate report (every
# target, see `prober_limit`), and at least the responders'.
SIGNER_FRAME_LIMIT = 256 << 20
SMALL_FRAME_LIMIT = 64 << 10


@dataclass(frozen=True)
class Role:
    """One kind of child."""

    # The role `shared.child.enter` starts, and the name its pipe's messages decode by.
    name: str
    frame_limit: int  # the largest frame it may send (the prober's grows with its targets)
    numbered: bool = False  # several run, each named by its slot: responder0, responder1...
    # It serves clients: once the server is ready, its `Fatal` (it cannot bind) is a crash like
    # any other, and one of it never stops the others. Before, the server cannot serve as
    # configured, and stops.
    serves: bool = False
    # Which addresses its `Start` names: the DNS service's, or the transfers'; the port a
    # first process bound (port 0 in the configuration) is the one a respawn is given.
    listens: Literal["server", "transfer", "peers"] | None = None
    serials: bool = False  # it is given the serials served so far: its own go above them
    cookie_secret: bool = False  # it is given the secret the responders share (DNS cookies)
    shares_rrl: bool = False  # it inherits the RRL table (shared memory)
    # What it is sent after its `Start` to take up where its predecessor was: the latest
    # snapshot (a responder), the latest records (the transfer process), the last
    # publication and the health (the signer, which then renders no older serial), or the
    # prober's latest view (the peers process).
    catches_up: Literal["snapshot", "records", "resume", "view"] | None = None
    # Its configuration changes only once the prober's full report on the new one came (see
    # `messages.Reconfigure`): a respawn is given the one it was last sent.
    held_config: bool = False
    # Watched for silence from its first word, not only once ready: its heartbeat comes from a
    # thread of its own (`child.Pulse`), so a long signing run is no silence.
    watched_starting: bool = False


PROBER = Role("prober", SMALL_FRAME_LIMIT)
SIGNER = Role("signer", SIGNER_FRAME_LIMIT, serials=True, catches_up="resume", held_config=True,
              watched_starting=True)
RESPONDER = Role("responder", SMALL_FRAME_LIMIT, numbered=True, serves=True, listens="server",
                 cookie_secret=True, shares_rrl=True, catches_up="snapshot")
TRANSFER = Role("transfer", SMALL_FRAME_LIMIT, serves=True, listens="transfer",
                catches_up="records")
# Its `Verdict` is as large as the prober's report (its limit is the prober's); it binds the
# configured `peers.listen` (its peers send there: never port 0), and is sent the latest own
# view when it starts.
PEERS = Role("peers", SMALL_FRAME_LIMIT, listens="peers", catches_up="view")
ROLES = {role.name: role for role in (PROBER, SIGNER, RESPONDER, TRANSFER, PEERS)}


def prober_limit(targets: dict[str, str]) -> int:
    """The prober's frame limit: the size of its report on every target (the largest it ever
    needs to send), and at least the responders'."""
    report = messages.HealthReport(dict.fromkeys(targets, True), full=True)
    return max(PROBER.frame_limit, len(messages.encode(report)))
