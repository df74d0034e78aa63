"""No signature is served past its expiration: the signer renews each one in time, whether the
name it covers was rendered again since or is served from the render cache.

The model drives a signer as its process does (it publishes at `next_renewal`, and whenever
health changes) through random health schedules over weeks, with a validity three times the
refresh period; after every step, every RRSIG in what responders were last sent is checked
against the clock.
"""

from __future__ import annotations

import random
import struct

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_deltas import configs, targets

from healthdns.shared import config, messages
from healthdns.signer.main import Signer

DAY = 86400.0
RRSIG = 46


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module", params=["nsec", "nsec3"])
def cfg(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
        ) -> config.Config:
    """The pools of test_deltas, signed for 21 days and renewed when 7 are left."""
    signed = configs(str(tmp_path_factory.mktemp("keys")))["signed"]
    spec = signed.zones[0]
    assert spec.dnssec is not None
    dnssec = msgspec.structs.replace(spec.dnssec, validity=int(21 * DAY), refresh=int(7 * DAY),
                                     denial=request.param)
    return msgspec.structs.replace(signed, zones=[msgspec.structs.replace(spec, dnssec=dnssec)])


def expirations(body: bytes) -> list[int]:
    """The expiration of every RRSIG among the records of a rendered body."""
    found = []
    i = 0
    while i < len(body):
        while body[i] and body[i] < 0xC0:  # the owner: labels, then the root or a pointer
            i += body[i] + 1
        i += 2 if body[i] >= 0xC0 else 1
        rdtype, _, _, length = struct.unpack_from(">HHIH", body, i)
        i += 10
        if rdtype == RRSIG:
            found.append(struct.unpack_from(">I", body, i + 8)[0])
        i += length
    return found


def served_expirations(snapshot: bytes) -> list[int]:
    decoded = messages.decode_to_child(snapshot)
    assert isinstance(decoded, messages.Snapshot)
    found = []
    for table in decoded.zones:
        answers = [*table.answers.values(), *table.names.values(), table.nxdomain,
                   *(a for variants in table.variants.values() for a in variants)]
        bodies = [a.signed.body for a in answers if a.signed is not None]
        for body in [*bodies, *table.proofs, table.soa_signed]:
            found += expirations(body)
    assert found
    return found


def check(snapshot: bytes, now: float) -> None:
    soonest = min(served_expirations(snapshot))
    assert soonest > now, f"an RRSIG expired {(now - soonest) / DAY:.2f} days ago"


# (days to wait, then the health of every target); the first report finds everything up.
schedules = st.lists(st.tuples(st.floats(0, 9), st.lists(st.booleans(), min_size=7,
                                                         max_size=7)), min_size=1, max_size=8)
# One name (`weighted`: its only IPv6 address) changes at day 3.5, its signature is not due
# at the first renewal (day 12.6 to 14), and another name changes after it: a signature of
# day 3.5 then expires at day 24.5, before anything signed at the renewal falls due.
DOWN_6 = [True] * 6 + [False]
STORY = [(3.5, DOWN_6), (11.0, DOWN_6[:4] + [False] + DOWN_6[5:]), (10.5, DOWN_6)]


@settings(max_examples=25, deadline=None)
@example(schedule=STORY)
@given(schedule=schedules)
def test_no_signature_is_served_expired(cfg: config.Config,
                                        schedule: list[tuple[float, list[bool]]]) -> None:
    ids = targets(cfg)
    assert ids[-1] == "tcp ::1 80 5/2/2/2"  # DOWN_6 takes the IPv6 address down
    clock = Clock()
    signer = Signer(cfg, now=clock)
    for zone_signer in signer.signers:
        assert zone_signer is not None
        zone_signer.rng = random.Random(0)  # the jitter, the same in every run
    first = signer.update(dict.fromkeys(ids, True), full=True)
    assert first is not None
    snapshot = first.snapshot
    for days, health in schedule:
        until = clock.now + days * DAY
        while (renewal := signer.next_renewal()) is not None and renewal <= until:
            clock.now = max(clock.now, renewal)  # the process wakes up when one falls due
            renewed = signer.publish()
            assert renewed is not None
            snapshot = renewed.snapshot
        clock.now = until
        check(snapshot, clock.now)
        published = signer.update(dict(zip(ids, health, strict=True)), full=True)
        if published is not None:
            snapshot = published.snapshot
            check(snapshot, clock.now)
