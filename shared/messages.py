"""Every message that crosses a pipe, one tagged union per direction.

Pipes carry ``send_bytes``/``recv_bytes`` of msgpack encodings, never pickles. Payloads are
primitives and bytes (pre-rendered wire data), never dnspython objects, and never key material.
Flow: prober -> supervisor -> signer -> supervisor -> every responder; with peers, the
prober's view goes through the peers process (`View`), whose `Verdict` the signer is sent. The supervisor decodes
what a child sends with the union of its role (`decode_from`), so a child can only say what its
role may say.
"""

from __future__ import annotations

from multiprocessing.connection import Connection

import msgspec

from healthdns.shared.geotable import GeoTable
from healthdns.shared.keystate import RollState
from healthdns.shared.tables import (  # what the messages below carry
    Answer,
    EncodedZoneDelta,
    EncodedZoneTable,
    ZoneDelta,
    ZoneRecords,
    ZoneRecordsDelta,
    ZoneTable,
)


class _Message(msgspec.Struct, frozen=True, tag=True, array_like=True):
    """Base of all messages: tagged, so one decoder per direction dispatches them."""


# --- supervisor -> child ------------------------------------------------------------------------


class Start(_Message, frozen=True):
    """First message to every child: its slot and the encoded configuration."""

    slot: int
    config: bytes
    listen: list[tuple[str, int, bool]] = []  # responders only: resolved (host, port, required)
    secret: bytes = b""  # responders only: the master secret of cookies and RRL accounts
    # Signer only: the highest serial served per zone (origin text, no final dot, lower case)
    # by this server or, from the state file, a previous one; each first serial goes above it.
    serials: dict[str, int] = {}


class Health(_Message, frozen=True):
    """supervisor -> signer: health of checked targets (`full` replaces, otherwise merges)."""

    states: dict[str, bool]
    full: bool
    # Admin overrides of whole names, always all of them: name (as in the first zone, no
    # final dot) -> every address of its pool down (False, drained) or up (True, forced).
    names: dict[str, bool] = {}
    # Checks in a row that would flip a target, where the prober counted otherwise than a
    # whole fall (rise when down): what the TTL that follows health counts with (`full`
    # replaces, otherwise merges).
    left: dict[str, int] = {}


class Resume(_Message, frozen=True):
    """supervisor -> respawned signer: where its predecessor left off, so that serials never
    go back, nothing unchanged gets a new serial, and the next change is sent as a delta."""

    generation: int
    serials: list[int]
    prints: list[bytes]  # per zone, the digest of what its health-dependent answers were
    snapshot: bytes  # the encoded `Snapshot` of `generation`
    renewal: float = 0.0  # when its first signature falls due for renewal (0: unsigned)


class Records(_Message, frozen=True):
    """signer -> supervisor -> transfer process: every zone's records at `generation`, complete
    (sent only when transfers are configured)."""

    generation: int
    zones: list[ZoneRecords]


class RecordsDelta(_Message, frozen=True):
    """signer -> supervisor -> transfer process: the records' changes from generation `base`;
    a transfer process that does not hold `base` is sent the full `Records` instead."""

    generation: int
    base: int
    zones: list[ZoneRecordsDelta]


class Snapshot(_Message, frozen=True):
    """signer -> supervisor -> responders: everything a responder serves, complete (the
    maps its geo names answer by come apart: `Maps`)."""

    generation: int
    zones: list[ZoneTable]


class Maps(_Message, frozen=True):
    """signer -> supervisor -> responders: every location map, compiled (`GeoAnswers.map`
    names one). Sent only when one changes (at start, a replaced database, a reload), before
    the generation that first answers by it, and to a responder that starts, before its
    snapshot: a map of 400,000 networks is megabytes, never sent per generation."""

    tables: dict[str, GeoTable]


class EncodedSnapshot(_Message, frozen=True, tag="Snapshot"):
    """A `Snapshot` as a responder decodes it (see `EncodedZoneTable`)."""

    generation: int
    zones: list[EncodedZoneTable]


class Delta(_Message, frozen=True):
    """signer -> supervisor -> responders: the changes from generation `base`; a responder
    that does not hold `base` ignores it (it is sent the full snapshot instead)."""

    generation: int
    base: int
    zones: list[ZoneDelta]


class EncodedDelta(_Message, frozen=True, tag="Delta"):
    """A `Delta` as a responder decodes it (see `EncodedZoneDelta`)."""

    generation: int
    base: int
    zones: list[EncodedZoneDelta]


class Reconfigure(_Message, frozen=True):
    """supervisor -> prober or signer: the configuration changed; `config` is the role's new
    encoded view, the same shape as `Start.config`.

    The prober keeps every unchanged target's state and schedule, checks the new ones at once,
    and sends one `HealthReport(full=True)` when they all have a first result. The signer is
    then sent this message followed by that health as a `Health(full=True)`: it publishes its
    first generation under the new configuration only once that health is in.
    """

    config: bytes


class View(_Message, frozen=True):
    """supervisor -> peers: this instance's own view, the prober's `HealthReport` relayed,
    and whether the prober is fenced (from its `Probes`; its view then does not vote)."""

    states: dict[str, bool]
    full: bool
    fenced: bool = False


class Bye(_Message, frozen=True):
    """supervisor -> child: exit now, cleanly."""


# --- child -> supervisor ------------------------------------------------------------------------


class Bound(_Message, frozen=True):
    """responder -> supervisor: its sockets are bound (port 0 resolved to the kernel's choice)."""

    slot: int
    listen: list[tuple[str, int, bool]]


class Ready(_Message, frozen=True):
    """The child serves (responder: sockets bound and a snapshot loaded)."""

    slot: int


class Fatal(_Message, frozen=True):
    """The child cannot work and a respawn would not help (bind failure, bad key)."""

    slot: int
    reason: str


class HealthReport(_Message, frozen=True):
    """prober -> supervisor: health states; the first one is full, then changes only.
    `left`: each target whose count of checks in a row that would flip it changed, and that
    count (a passed check after failures gives the whole fall back)."""

    states: dict[str, bool]
    full: bool
    left: dict[str, int] = {}


class Published(_Message, frozen=True):
    """signer -> supervisor: a new generation, as an encoded `Snapshot` (kept for responders
    that start later) and, when there is a previous one, an encoded `Delta` from it (sent to
    the running responders). Both are relayed as they are."""

    generation: int
    serials: list[int]
    prints: list[bytes]
    snapshot: bytes
    delta: bytes = b""
    renewal: float = 0.0  # when its first signature falls due for renewal (0: unsigned)
    # With transfers configured: the encoded `Records` of `generation` and, when there is a
    # previous one, the encoded `RecordsDelta` from it (relayed to the transfer process).
    records: bytes = b""
    records_delta: bytes = b""


class Stats(_Message, frozen=True):
    """responder -> supervisor, every `STATS_PERIOD` once it serves: the generation it serves
    and its counters since it started (totals, so a lost message loses nothing). It is also
    the responder's heartbeat."""

    slot: int
    generation: int
    # (path, proto, family, zone, qtype, rcode, queries): path 0 fast, 1 packet cache, 2 slow;
    # proto 0 UDP, 1 TCP; family 1 IPv4, 2 IPv6 (the listening socket's); zone the origin
    # (lower-case wire) whose data answered, b"" for a name in none of its zones. The zone
    # travels as an origin, not an index, so it means the same across generations. qtype is
    # one of COUNTED_QTYPES: OTHER_QTYPE for every type not named there.
    counts: list[tuple[int, int, int, bytes, int, int, int]]
    truncated: int
    errors: int
    # Answers of geo names by (zone origin as in `counts`, site whose addresses they carry;
    # "" when none: NODATA or a pool's backup addresses), totals since it started.
    sites: list[tuple[bytes, str, int]] = []


class TransferStats(_Message, frozen=True):
    """transfer process -> supervisor, every `STATS_PERIOD` once it serves: its counters since
    it started (totals) and the generation it holds. It is also its heartbeat."""

    slot: int
    generation: int
    axfr: int  # whole zones sent, asked for by AXFR
    ixfr: int  # IXFR answered from the journal (or with the SOA alone: up to date)
    fallback: int  # IXFR answered with the whole zone: the serial was older than the journal
    refused: int  # queries refused: address, key or type not allowed
    notify_sent: int  # NOTIFY datagrams, resends included
    notify_answered: int
    notify_failed: int  # NOTIFYs given up: no answer after every resend, or an error answer


class Verdict(_Message, frozen=True):
    """peers -> supervisor: the health the fresh views of every vantage make by the quorum
    rule (prober target ids), relayed to the signer in place of the prober's own; the first
    is full, then changes only."""

    states: dict[str, bool]
    full: bool


class PeerRow(msgspec.Struct, frozen=True, array_like=True):
    """One peer as the peers process sees it: totals since it started."""

    name: str
    fresh: bool  # its latest report is within `peers.stale_after`
    age: float  # seconds since its latest accepted report; -1: none yet
    received: int  # reports accepted
    rejected: dict[str, int]  # by reason: signature, replay, unknown, oversized, malformed, rate
    sent: int  # reports this instance sent it
    failed: int  # sends that failed (no connection, TLS, an error status)
    fenced: bool = False  # its latest report says its prober is fenced: it does not vote


class Votes(msgspec.Struct, frozen=True, array_like=True):
    """One contested target as the peers process sees it: each vantage's last state (fresh,
    stale or fenced alike; a vantage that does not check it is absent), the votes' outcome
    (None: too few fresh vantages vote), the verdict served, and the seconds until a flip the
    steadying (rise, fall, hold-down) holds back falls due (-1: none is held)."""

    states: dict[str, bool]
    outcome: bool | None
    verdict: bool
    due: float = -1.0


class PeerStats(_Message, frozen=True):
    """peers -> supervisor, every `STATS_PERIOD` once it serves: every peer's row, and whether
    too few views are fresh for a verdict (the alert). It is also its heartbeat."""

    slot: int
    peers: list[PeerRow]
    short: bool  # fewer fresh vantages than `peers.min_vantages`: the last verdict is kept
    rejected_sender: int = 0  # reports naming no configured peer
    # The contested targets (at most SPLIT_SHOWN of them), and how many there are in all: the
    # fresh vantages disagree, a vantage's last state is not the verdict, there is no
    # outcome, or the steadying holds a flip. Every other target's vantages all say its
    # verdict. Sent when it changed (None: as the last one).
    split: dict[str, Votes] | None = None
    split_total: int = 0
    refused_connections: int = 0  # connections over the listener's caps, closed at accept


class Alive(_Message, frozen=True):
    """signer -> supervisor, every `ALIVE_PERIOD` from a thread of its own and after each
    batch of health it takes: its heartbeat (a signer that is stopped or frozen cannot send
    it; one that signs for a long time keeps sending it), and how many `Health` messages this
    process has taken in and published, all told (the supervisor's measure of health that has
    not reached the answers yet)."""

    taken: int


class SiteState(msgspec.Struct, frozen=True, array_like=True):
    """One site of a geo pool in one address family, as a generation judges it."""

    name: str  # the pooled name, without the final dot
    site: str
    rdtype: int  # 1 (A) or 28 (AAAA)
    up: int  # its addresses of the family that are up
    total: int
    qualifies: bool  # a group of it has `min_healthy` up: it serves whom it comes first for


class GeoChoice(msgspec.Struct, frozen=True, array_like=True):
    """What a geo pool answers, in one address family, the clients whose site order is
    `order` (an order id of the map's compiled table: `MapState.orders`)."""

    name: str  # the pooled name, without the final dot
    rdtype: int
    map: str
    order: int
    site: str  # the site whose addresses are served; "" for none (NODATA, backup addresses)
    rule: str  # "healthy", "degraded", "policy serve-all", "policy empty", "policy backup"
    # The sites of the order passed over before `site`, each with why ("no AAAA addresses",
    # "0 of 2 up, 1 needed"); all of the order under a policy.
    skipped: list[tuple[str, str]]
    addresses: list[str]


class MapState(msgspec.Struct, frozen=True, array_like=True):
    """A location map as the signer holds it compiled."""

    name: str
    orders: list[list[str]]  # order id -> its sites, most preferred first
    database: str  # the database file ("" for a map of networks alone)
    database_type: str
    database_epoch: int  # its build time (Unix seconds)
    networks: int  # networks read from it
    blocks: int  # merged blocks of the compiled tables, IPv4 and IPv6
    compiled: float  # when (Unix time)
    # Why the latest compile failed ("" when it did not): the previous tables are kept.
    error: str = ""


class Choices(_Message, frozen=True):
    """signer -> supervisor, after each `Published`: for every pooled name of the first zone
    (aliases answer the same), per address type, what it answers and which rule chose it."""

    generation: int
    # (name without the final dot, rdtype, group index or -1, rule, addresses served)
    names: list[tuple[str, int, int, str, list[str]]]
    seconds: float = 0.0  # how long rendering and signing the generation took
    # Each pooled name whose TTL follows health: the TTL its addresses are served with, and
    # why ("TTL 32: 192.0.2.10 is 2 failed checks from down").
    ttls: dict[str, tuple[int, str]] = {}
    # Per zone under a DNSSEC policy: its name, when its key roll takes its next step (Unix
    # time; 0: not by time) and whether that step waits for the parent's name servers.
    rolls: list[tuple[str, float, bool]] = []
    # Per zone under a DNSSEC policy: the state of its keys and roll, as last written to its
    # state file (what `healthdns-ctl keys` reads).
    keys: list[RollState] = []
    # Geo pools (names of the first zone): each site's state per family, and per order id
    # of its map what is served; every map compiled.
    sites: list[SiteState] = []
    geo: list[GeoChoice] = []
    maps: list[MapState] = []


class Probe(msgspec.Struct, frozen=True, array_like=True):
    """One target's detail, totals since the prober started."""

    target: str
    reason: str  # why the latest check passed or failed
    buckets: list[int]  # checks by duration: one per PROBE_BUCKETS bound, then the rest
    seconds: float  # the sum of their durations
    failures: dict[str, int]  # by kind: timeout, refused, status, body, tls, other


class Probes(_Message, frozen=True):
    """prober -> supervisor, periodically after its first report: the detail of the targets
    checked since the previous one."""

    rows: list[Probe]
    fenced: bool = False  # the prober is fenced (every target failing: its network at fault)


PROBE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PROBES_PERIOD = 1.0
SPLIT_SHOWN = 200  # contested targets, sent with `PeerStats` (the pipe's bound)
STATS_PERIOD = 1.0  # seconds between two `Stats` of one responder
ALIVE_PERIOD = 1.0  # seconds between two `Alive` of the signer


ToChild = Start | Health | Resume | Snapshot | Delta | Records | RecordsDelta | Reconfigure | View \
    | Bye | Maps
FromChild = Bound | Ready | Fatal | HealthReport | Published | Stats | Choices | Probes \
    | TransferStats | Alive | Verdict | PeerStats | Maps

# What each role may send: the supervisor decodes a child's pipe with its role's decoder, so a
# responder's `Published` or `HealthReport` is a decode error there, never a message to obey.
FromProber = HealthReport | Probes
FromSigner = Published | Fatal | Choices | Alive | Maps
FromResponder = Bound | Ready | Fatal | Stats
FromTransfer = Bound | Ready | Fatal | TransferStats
FromPeers = Bound | Ready | Fatal | Verdict | PeerStats

# What a responder is sent, decoded as it needs: snapshots answer by answer (`EncodedZoneTable`).
ToResponder = Start | EncodedSnapshot | EncodedDelta | Bye | Maps

_to_child = msgspec.msgpack.Decoder(ToChild)
_to_responder = msgspec.msgpack.Decoder(ToResponder)
_answer = msgspec.msgpack.Decoder(Answer)
_from_child = msgspec.msgpack.Decoder(FromChild)
_from_role: dict[str, msgspec.msgpack.Decoder[FromChild]] = {
    "prober": msgspec.msgpack.Decoder(FromProber),
    "signer": msgspec.msgpack.Decoder(FromSigner),
    "responder": msgspec.msgpack.Decoder(FromResponder),
    "transfer": msgspec.msgpack.Decoder(FromTransfer),
    "peers": msgspec.msgpack.Decoder(FromPeers),
}
_encoder = msgspec.msgpack.Encoder()


def encode(message: _Message) -> bytes:
    return _encoder.encode(message)


def decode_to_child(data: bytes) -> ToChild:
    return _to_child.decode(data)


def decode_to_responder(data: bytes) -> ToResponder:
    return _to_responder.decode(data)


def decode_answer(raw: msgspec.Raw) -> Answer:
    """One answer of an `EncodedZoneTable`."""
    return _answer.decode(raw)


def decode_from_child(data: bytes) -> FromChild:
    return _from_child.decode(data)


def decode_from(role: str, data: bytes) -> FromChild:
    """A message from a child of `role`; `msgspec.DecodeError` if that role may not send it."""
    return _from_role[role].decode(data)


def send(conn: Connection, message: _Message) -> None:
    conn.send_bytes(_encoder.encode(message))
