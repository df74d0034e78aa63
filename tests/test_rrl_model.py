"""RRL accounts against a simple model, config of [rrl] and [cookies], and the cookie maths."""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_config import BASE, with_

from healthdns.responder import cookies, rrl
from healthdns.shared import config
from healthdns.shared.errors import ConfigError

KEY = bytes(range(32))
CLIENTS = [bytes([192, 0, 2, 1]), bytes([192, 0, 2, 200]),  # one /24: one account
           bytes([198, 51, 100, 7]), bytes.fromhex("20010db8000000aa0000000000000001"),
           bytes.fromhex("20010db80000003f0000000000000002")]  # the same /56 as the one above
NAMES = [b"\x03www\x07example\x04test\x00", b"\x03WwW\x07example\x04test\x00",
         b"\x04mail\x07example\x04test\x00"]
START = 10**15  # nanoseconds: a monotonic clock well past zero
US = 1000


def response(rcode: int, name: bytes, size: int = 0, qtype: int = 1) -> bytes:
    header = struct.pack(">HHHHHH", 0x1234, 0x8400 | rcode, 1, 1 if rcode == 0 else 0, 0, 0)
    body = header + name + struct.pack(">HH", qtype, 1)
    return body + b"\x00" * max(0, size - len(body))


@dataclass
class Model:
    """The limit as BIND states it: a credit of at most one second's worth of responses, one
    response costs one, the debt goes no lower than `window` seconds' worth."""

    rates: dict[int, int]
    window: int
    slip: int
    credit: dict[tuple[Any, ...], float] = field(default_factory=dict)
    last: dict[tuple[Any, ...], int] = field(default_factory=dict)
    limited: int = 0

    def verdict(self, account: tuple[Any, ...], cls: int, now: int) -> int:
        rate = self.rates[cls]
        if rate == 0:
            return rrl.SEND
        interval = rrl.SECOND // rate
        burst = interval * rate
        credit = self.credit.get(account, burst) + now - self.last.get(account, now)
        credit = min(burst, credit)
        allowed = credit >= interval
        self.credit[account] = max(credit - interval, -self.window * rrl.SECOND)
        self.last[account] = now
        if allowed:
            return rrl.SEND
        self.limited += 1
        return rrl.SLIP if self.slip and self.limited % self.slip == 0 else rrl.DROP


def account(client: bytes, kind: int, name: bytes) -> tuple[Any, ...]:
    prefix = client[:3] if len(client) == 4 else client[:7]
    if kind == 3:
        return (prefix, "nx")
    if kind == 2:
        return (prefix, "err")
    if kind == 1:
        return (prefix, "large")
    return (prefix, "ok", name.lower())


KINDS = {0: (0, 0), 1: (0, 1500), 2: (5, 0), 3: (3, 0)}  # kind -> (rcode, size)
CLASS_OF = {0: rrl.POSITIVE, 1: rrl.LARGE, 2: rrl.ERROR, 3: rrl.NXDOMAIN}


@settings(max_examples=150, deadline=None)
@given(rate=st.integers(1, 20), nx_rate=st.integers(0, 20), window=st.integers(1, 5),
       slip=st.integers(0, 3),
       arrivals=st.lists(st.tuples(st.integers(0, 400_000), st.integers(0, len(CLIENTS) - 1),
                                   st.sampled_from(sorted(KINDS)),
                                   st.integers(0, len(NAMES) - 1)), max_size=300))
def test_accounts_follow_the_model(rate: int, nx_rate: int, window: int, slip: int,
                                   arrivals: list[tuple[int, int, int, int]]) -> None:
    spec = config.RrlSpec(responses_per_second=rate, nxdomains_per_second=nx_rate,
                          window=window, slip=slip)
    now = START
    limiter = rrl.Limiter(spec, memoryview(bytearray(8 * 65536)), KEY, clock=lambda: now)
    model = Model({rrl.POSITIVE: rate, rrl.LARGE: rate, rrl.ERROR: rate,
                   rrl.NXDOMAIN: nx_rate}, window, slip)
    for gap, who, kind, name in arrivals:
        now += gap * US
        rcode, size = KINDS[kind]
        got = limiter.verdict(response(rcode, NAMES[name], size), CLIENTS[who])
        want = model.verdict(account(CLIENTS[who], kind, NAMES[name]), CLASS_OF[kind], now)
        assert got == want, (gap, who, kind, name)


def test_the_accounts_of_the_model_test_do_not_collide() -> None:
    """The model has no collisions: check that its accounts land in distinct slots."""
    spec = config.RrlSpec(responses_per_second=1, window=1, slip=0)
    slots: dict[tuple[Any, ...], set[int]] = {}
    for client in CLIENTS:
        for kind, (rcode, size) in KINDS.items():
            for name in NAMES:
                table = memoryview(bytearray(8 * 65536))
                limiter = rrl.Limiter(spec, table, KEY, clock=lambda: START)
                limiter.verdict(response(rcode, name, size), client)
                slot = next(i for i, v in enumerate(table.cast("q")) if v)
                slots.setdefault(account(client, kind, name), set()).add(slot)
    assert all(len(s) == 1 for s in slots.values())
    assert len({next(iter(s)) for s in slots.values()}) == len(slots)


META = frozenset({0, 41, *range(249, 256)})  # types a responder never simply looks up


def crc_aimed(name: bytes, qtype: int, victim: bytes, attackers: list[bytes],
              size: int) -> tuple[bytes, int]:
    """The attack on accounts placed by a seeded CRC of (name, type, prefix): a prefix of the
    attacker's and a query type whose positive account for `name` lands in the slot of the
    victim's (`name`, `qtype`) account whatever the seed. A CRC is affine: for two keys of one
    length, crc(a) ^ crc(b) = crc(a ^ b) ^ crc(zeros), the seed gone; and that is linear in
    the differing bits, so the type is found from the CRCs of its 16 bits alone."""
    length = len(name) + 2 + len(victim)
    zero = zlib.crc32(bytes(length))

    def linear(at: int, delta: bytes) -> int:
        flipped = bytes(at) + delta + bytes(length - at - len(delta))
        return zlib.crc32(flipped) ^ zero

    bits = [linear(len(name), (1 << i).to_bytes(2, "big")) for i in range(16)]
    by_type = [0] * 65536
    for t in range(1, 65536):
        low = t & -t
        by_type[t] = by_type[t ^ low] ^ bits[low.bit_length() - 1]
    for prefix in attackers:
        moved = linear(len(name) + 2, bytes(a ^ b for a, b in zip(victim, prefix, strict=True)))
        for t in range(65536):
            same = (by_type[t ^ qtype] ^ moved) % size == 0
            if same and t not in META and t != qtype:
                return prefix, t
    raise AssertionError("no type aims at the victim from these prefixes")


def test_an_account_cannot_be_aimed_at_another_ones_slot() -> None:
    """The attack that worked on CRC-placed accounts: from another /24, a query type chosen so
    that its NODATA answers land in the victim's slot, flooded, then the victim's own answers
    (within its rate) were limited. Slots are a keyed SipHash now, and the type is in no key."""
    victim, name = CLIENTS[0], NAMES[0]
    prefix, qtype = crc_aimed(name, 1, victim[:3], [bytes([198, 51, n]) for n in range(256)],
                              65536)
    now = START
    spec = config.RrlSpec(responses_per_second=5, window=1, slip=2)
    limiter = rrl.Limiter(spec, memoryview(bytearray(8 * 65536)), KEY, clock=lambda: now)
    attacker = prefix + b"\x07"
    for _ in range(100):
        now += 100 * US
        limiter.verdict(response(0, name, qtype=qtype), attacker)
    for _ in range(5):  # the victim's rate: one answer every 200 ms
        now += 200_000 * US
        limiter.verdict(response(0, name, qtype=qtype), attacker)  # the flood goes on
        assert limiter.verdict(response(0, name), victim) == rrl.SEND


def test_the_query_type_is_in_no_account() -> None:
    """A client's answers for one name share an account whatever the types it asks."""
    now = START
    spec = config.RrlSpec(responses_per_second=3, window=1, slip=0)
    limiter = rrl.Limiter(spec, memoryview(bytearray(8 * 65536)), KEY, clock=lambda: now)
    verdicts = [limiter.verdict(response(0, NAMES[0], qtype=t), CLIENTS[0])
                for t in (1, 28, 16, 61943, 99)]
    assert verdicts == [rrl.SEND] * 3 + [rrl.DROP] * 2


def test_a_flood_is_cut_to_the_rate_and_slips_every_nth() -> None:
    now = START
    spec = config.RrlSpec(responses_per_second=10, slip=3, window=2)
    limiter = rrl.Limiter(spec, memoryview(bytearray(8 * 4096)), KEY, clock=lambda: now)
    verdicts = []
    for _ in range(1000):  # 1000 queries a second for one second
        now += 1000 * US
        verdicts.append(limiter.verdict(response(0, NAMES[0]), CLIENTS[0]))
    # The burst only: dropped answers cost too (as in BIND), so a steady flood earns nothing.
    assert verdicts.count(rrl.SEND) == 10
    assert verdicts.count(rrl.SLIP) == (1000 - verdicts.count(rrl.SEND)) // 3
    now += 2 * rrl.SECOND  # quiet for less than burst + window: still in debt
    assert limiter.verdict(response(0, NAMES[0]), CLIENTS[0]) != rrl.SEND
    now += 3 * rrl.SECOND  # now past it
    assert limiter.verdict(response(0, NAMES[0]), CLIENTS[0]) == rrl.SEND


def test_dry_run_counts_but_sends_and_exempt_prefixes_go_free() -> None:
    now = START
    spec = config.RrlSpec(responses_per_second=1, dry_run=True)
    dry = rrl.Limiter(spec, memoryview(bytearray(8 * 4096)), KEY, clock=lambda: now)
    assert {dry.verdict(response(3, NAMES[0]), CLIENTS[0]) for _ in range(50)} == {rrl.SEND}
    assert dry.would[rrl.DROP] + dry.would[rrl.SLIP] == 49
    spec = config.from_mapping({**BASE, "rrl": {"responses_per_second": 1,
                                                "exempt": ["192.0.2.128/25"]}}).rrl
    exempt = rrl.Limiter(spec, memoryview(bytearray(8 * 4096)), KEY, clock=lambda: now)
    assert {exempt.verdict(response(0, NAMES[0]), CLIENTS[1]) for _ in range(50)} == {rrl.SEND}
    assert rrl.DROP in {exempt.verdict(response(0, NAMES[2]), CLIENTS[0]) for _ in range(5)}


def test_odd_prefix_lengths_mask_the_last_octet() -> None:
    spec = config.RrlSpec(responses_per_second=1, ipv4_prefix=20, slip=0)
    limiter = rrl.Limiter(spec, memoryview(bytearray(8 * 4096)), KEY, clock=lambda: START)
    assert limiter.verdict(response(3, NAMES[0]), bytes([10, 1, 0x10, 1])) == rrl.SEND
    # 10.1.31.0 is in 10.1.16.0/20 too: the same account, now empty
    assert limiter.verdict(response(3, NAMES[0]), bytes([10, 1, 0x1F, 9])) == rrl.DROP
    assert limiter.verdict(response(3, NAMES[0]), bytes([10, 1, 0x20, 1])) == rrl.SEND


# --- config ----------------------------------------------------------------------------------

def test_rrl_is_off_by_default_and_one_line_turns_it_on() -> None:
    assert not config.from_mapping(BASE).rrl.active()
    assert config.from_mapping(with_("rrl/enabled", True)).rrl.rates() == (5, 5, 5)
    on = config.from_mapping(with_("rrl/responses_per_second", 20)).rrl
    assert on.active() and on.rates() == (20, 20, 20)
    off = config.from_mapping({**BASE, "rrl": {"responses_per_second": 20, "enabled": False}})
    assert not off.rrl.active()
    assert config.from_mapping(BASE).cookies.enabled


RRL_CASES = [
    (with_("rrl/responses_per_second", -1), "rrl.responses_per_second: -1 is not between"),
    (with_("rrl/nxdomains_per_second", 10**7), "rrl.nxdomains_per_second: 10000000 is not"),
    (with_("rrl/window", 0), "rrl.window: 0 is not between 1 and 3600 seconds"),
    (with_("rrl/slip", 11), "rrl.slip: 11 is not between 0 and 10"),
    (with_("rrl/ipv4_prefix", 33), "rrl.ipv4_prefix: 33 is not between 8 and 32"),
    (with_("rrl/ipv6_prefix", 8), "rrl.ipv6_prefix: 8 is not between 16 and 128"),
    (with_("rrl/table_size", 10), "rrl.table_size: 10 is not between 1024 and 16777216"),
    (with_("rrl/exempt", ["192.0.2.0/24", "nonsense"]),
     "rrl.exempt[1]: 'nonsense' is not an IP network"),
    (with_("rrl/rate", 5), "rrl.rate: unknown key"),
    (with_("cookies/rotation", 10), "cookies.rotation: 10 is not between 60 and 86400"),
]


@pytest.mark.parametrize("document,message", RRL_CASES, ids=[c[1] for c in RRL_CASES])
def test_rrl_and_cookie_errors_name_the_field(document: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config.from_mapping(document)
    assert str(raised.value).startswith(message), str(raised.value)


# --- cookies -------------------------------------------------------------------------------

def test_rfc9018_test_vector() -> None:
    """RFC 9018 appendix A.1: the first response's server cookie."""
    jar = cookies.Cookies(b"unused", 3600)
    jar.secret = lambda timestamp: bytes.fromhex(  # type: ignore[method-assign]
        "e5e973e5a6b2a43f48e7dc849e37bfcf")
    made = jar.make(bytes.fromhex("2464c4abcf10c957"), bytes([198, 51, 100, 100]), 1559731985)
    assert made.hex() == "010000005cf79f111f8130c3eee29480"


@settings(max_examples=100, deadline=None)
@given(client_cookie=st.binary(min_size=8, max_size=8), client=st.sampled_from(CLIENTS),
       minted=st.integers(1_700_000_000, 1_900_000_000), later=st.integers(-400, 4000),
       rotation=st.integers(60, 7200))
def test_any_responder_validates_another_ones_cookie(client_cookie: bytes, client: bytes,
                                                     minted: int, later: int,
                                                     rotation: int) -> None:
    now = [minted]
    one = cookies.Cookies(KEY[:16], rotation, clock=lambda: now[0])
    other = cookies.Cookies(KEY[:16], rotation, clock=lambda: now[0])  # another responder
    status, option = one.check(client_cookie, client)
    assert status == cookies.FRESH and option[:4] == b"\x00\x0a\x00\x18"
    assert option[4:12] == client_cookie and option[12] == 1
    now[0] = minted + later
    status, _ = other.check(option[4:], client)
    assert status == (cookies.VALID if -300 <= later <= 3600 else cookies.FRESH)
    elsewhere = CLIENTS[(CLIENTS.index(client) + 1) % len(CLIENTS)]
    assert other.check(option[4:], elsewhere)[0] == cookies.FRESH  # bound to the address
    tampered = bytearray(option[4:])
    tampered[-1] ^= 1
    assert other.check(bytes(tampered), client)[0] == cookies.FRESH
    stranger = cookies.Cookies(KEY[16:], rotation, clock=lambda: now[0])
    assert stranger.check(option[4:], client)[0] == cookies.FRESH  # another master secret


def test_a_valid_cookie_is_kept_for_half_an_hour_then_renewed() -> None:
    now = [1_800_000_000]
    jar = cookies.Cookies(KEY[:16], 3600, clock=lambda: now[0])
    first = jar.check(b"c" * 8, CLIENTS[0])[1]
    now[0] += 1799
    assert jar.check(first[4:], CLIENTS[0]) == (cookies.VALID, first)
    now[0] += 2
    status, renewed = jar.check(first[4:], CLIENTS[0])
    assert status == cookies.VALID and renewed != first and renewed[:12] == first[:12]


@pytest.mark.parametrize("size", [0, 7, 9, 15, 41, 60])
def test_malformed_cookie_lengths(size: int) -> None:
    assert cookies.Cookies(KEY[:16], 3600).check(b"x" * size, CLIENTS[0]) == \
        (cookies.MALFORMED, b"")


def test_a_table_that_cannot_be_mapped_leaves_the_responder_its_own(
        caplog: pytest.LogCaptureFixture) -> None:
    """A responder that cannot map the supervisor's table (no memory left, say) still limits."""
    from healthdns.responder import guard
    from healthdns.responder.query import Answerer
    from healthdns.shared.region import Region

    cfg = config.from_mapping({**BASE, "rrl": {"responses_per_second": 1}})
    fd = os.open(os.devnull, os.O_RDONLY)  # a descriptor that cannot be mapped (ENODEV)
    made = guard.build(Answerer(1232), cfg, KEY, Region(fd, 8 * cfg.rrl.table_size))
    assert made is not None and made.limiter is not None
    assert f"cannot map the shared RRL table (descriptor {fd}" in caplog.text
    verdicts = {made.limiter.verdict(response(3, NAMES[0]), CLIENTS[0]) for _ in range(5)}
    assert verdicts == {rrl.SEND, rrl.DROP, rrl.SLIP}
