"""Response Rate Limiting (RRL) of UDP answers, as BIND and Knot do it.

Each account is a token bucket kept as one 64-bit "theoretical arrival time" (GCRA): the
moment, in microseconds of the monotonic clock, at which the account is back to an empty
debt. A response may go while the account holds a token: `tat - now <= burst - interval`.
Every response, sent or not, costs one interval, and the debt is capped at `window` seconds:
a prefix that keeps flooding stays limited, and one that stops is whole again `window`
seconds later (BIND's `window`).

An account is (class, client prefix) and, for positive answers, the question's name and type,
as BIND keys them: a resolver asking for many names is not limited by the sum of them, while
NXDOMAIN, error and large answers (those that amplify best) are counted per prefix alone.

The accounts live in a table of shared memory that the supervisor creates and every responder
maps, so a spoofer spread over the responders by SO_REUSEPORT meets one limit. Accounts are
found by a keyed hash with no collision check, and updated without locks: two responders that
update one account at once lose one update, which lets one response more through.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from multiprocessing.shared_memory import SharedMemory

from siphash24 import siphash24

from healthdns.shared.config import RrlSpec

SEND, DROP, SLIP = 0, 1, 2
POSITIVE, NXDOMAIN, ERROR, LARGE = 0, 1, 2, 3  # account classes
LARGE_SIZE = 1024  # octets: an answer this long amplifies well (Knot's "large" class)
SLOT = 8  # octets per account
MICRO = 1_000_000


def admit(tat: int, now: int, interval: int, burst: int, debt: int) -> tuple[bool, int]:
    """One response against an account: (may it go, the account's new arrival time)."""
    owed = tat - now if tat > now else 0
    return owed <= burst - interval, now + min(owed + interval, burst + debt)


def monotonic_us() -> int:
    return time.monotonic_ns() // 1000


class Limiter:
    """Decides, per UDP response, whether it goes out, is dropped or slips out truncated."""

    def __init__(self, spec: RrlSpec, table: memoryview, key: bytes,
                 clock: Callable[[], int] = monotonic_us) -> None:
        self.table = table.cast("B").cast("q")  # one signed 64-bit arrival time per account
        self.size = len(self.table)
        self.key = key[:16]
        self.clock = clock
        self.slip = spec.slip
        self.dry_run = spec.dry_run
        self.v4_bits, self.v6_bits = spec.ipv4_prefix, spec.ipv6_prefix
        self.exempt = tuple(ipaddress.ip_network(n) for n in spec.exempt)
        positive, nxdomain, error = spec.rates()
        # (interval, burst) in microseconds per class; None: that class is not limited.
        self.limits = [_limit(rate) for rate in (positive, nxdomain, error, positive)]
        self.debt = spec.window * MICRO
        self.limited = 0  # responses over the limit: the slip counter
        self.counts = [0, 0, 0]  # SEND, DROP, SLIP verdicts as applied (dry run: all SEND)
        self.would = [0, 0, 0]  # the verdicts RRL reached, dry run or not
        self.memory: SharedMemory | None = None  # kept mapped for as long as the limiter

    def verdict(self, response: bytes, client: bytes) -> int:
        """SEND, DROP or SLIP for `response` to the client at address `client` (4 or 16
        octets)."""
        cls, question = classify(response)
        limit = self.limits[cls]
        if limit is None:
            return SEND
        account = bytes((cls,)) + self._prefix(client) + question
        index = int.from_bytes(siphash24(account, key=self.key).digest(), "little") % self.size
        allowed, self.table[index] = admit(self.table[index], self.clock(), *limit, self.debt)
        if allowed or self._exempt(client):
            self.would[SEND] += 1
            self.counts[SEND] += 1
            return SEND
        self.limited += 1
        verdict = SLIP if self.slip and self.limited % self.slip == 0 else DROP
        self.would[verdict] += 1
        if self.dry_run:
            verdict = SEND
        self.counts[verdict] += 1
        return verdict

    def _prefix(self, client: bytes) -> bytes:
        bits = self.v4_bits if len(client) == 4 else self.v6_bits
        whole, rest = divmod(bits, 8)
        if not rest:
            return client[:whole]
        return client[:whole] + bytes((client[whole] & (0xFF00 >> rest) & 0xFF,))

    def _exempt(self, client: bytes) -> bool:
        """Checked only for a response over the limit: the common case never pays for it."""
        if not self.exempt:
            return False
        address = ipaddress.ip_address(client)
        return any(address in network for network in self.exempt)


def _limit(rate: int) -> tuple[int, int] | None:
    if rate == 0:
        return None
    interval = max(1, MICRO // rate)
    return interval, interval * rate  # a burst of one second's worth


def classify(response: bytes) -> tuple[int, bytes]:
    """(account class, what else keys the account): the question for positive answers."""
    rcode = response[3] & 0x0F
    if len(response) > LARGE_SIZE:
        return LARGE, b""
    if rcode == 3:
        return NXDOMAIN, b""
    if rcode:
        return ERROR, b""
    end = response.find(0, 12, 12 + 255)
    if end < 12 or response[4:6] != b"\x00\x01":
        return POSITIVE, b""
    return POSITIVE, response[12:end].lower() + response[end + 1:end + 3]
