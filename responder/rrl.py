"""Response Rate Limiting (RRL) of UDP answers, as BIND and Knot do it.

Each account is a token bucket kept as one 64-bit "theoretical arrival time" (GCRA): the
moment, in nanoseconds of the monotonic clock (one for all processes), at which the account
is back to an empty debt. A response may go while the account holds a token:
`tat - now <= burst - interval`.
Every response, sent or not, costs one interval, and the debt is capped at `window` seconds:
a prefix that keeps flooding stays limited, and one that stops is whole again `window`
seconds later (BIND's `window`).

An account is (class, client prefix) and, for positive answers (NODATA included), the
question's name: a resolver asking for many names is not limited by the sum of them, while
NXDOMAIN, error and large answers (those that amplify best) are counted per prefix alone. The
query type is in no account's key, so a client cannot pick among 65,536 keys for one name.

The accounts live in a table of shared memory (a memfd, shared/region.py) that the
supervisor creates and every responder maps, so a spoofer spread over the responders by
SO_REUSEPORT meets one limit. An account's slot is a SipHash-2-4 of its key, keyed with a
secret the supervisor draws at each start and gives its responders (they must agree on
slots): with a keyed hash no one outside can aim an account of theirs at another's slot, as
they could with a CRC (affine: the difference of two slots does not depend on the seed). There
is no collision check: two accounts that share a slot by chance share its limit. Slots are
updated without locks: two responders that update one at once lose one update, which lets one
response more through.

SipHash costs four times a CRC here (an object per call), so each responder remembers the
slots of the accounts it met last (`SLOTS_KEPT`): the answers of legitimate clients, which
repeat, find theirs with one dictionary lookup, while keys seen once (a spoofed flood's) only
refill the memory.
"""

from __future__ import annotations

import ipaddress
import mmap
import time
from collections.abc import Callable

from siphash24 import siphash24

from healthdns.shared.config import RrlSpec

SEND, DROP, SLIP = 0, 1, 2
POSITIVE, NXDOMAIN, ERROR, LARGE = 0, 1, 2, 3  # account classes
LARGE_SIZE = 1024  # octets: an answer this long amplifies well (Knot's "large" class)
SLOT = 8  # octets per account
SECOND = 1_000_000_000  # the clock's unit: nanoseconds
SLOTS_KEPT = 4096  # account keys whose slot a responder remembers (about 0.5 MiB)


class Limiter:
    """Decides, per UDP response, whether it goes out, is dropped or slips out truncated."""

    def __init__(self, spec: RrlSpec, table: memoryview, key: bytes,
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.table = table.cast("B").cast("q")  # one signed 64-bit arrival time per account
        self.size = len(self.table)
        self.clock = clock
        self.slip = spec.slip
        self.dry_run = spec.dry_run
        self.v4_bits, self.v6_bits = spec.ipv4_prefix, spec.ipv6_prefix
        self.v4_bytes, self.v6_bytes = self.v4_bits // 8, self.v6_bits // 8
        aligned = self.v4_bits % 8 == 0 and self.v6_bits % 8 == 0
        self.masks: tuple[int, int] | None = None if aligned else (self.v4_bits, self.v6_bits)
        self.key = key[:16]  # SipHash's: accounts land in other slots on every start
        self.slots: dict[bytes, int] = {}  # account key -> slot, SLOTS_KEPT at most
        self.exempt = tuple(ipaddress.ip_network(n) for n in spec.exempt)
        positive, nxdomain, error = spec.rates()
        # Per class, in nanoseconds: (cost of an answer, most owed that still lets one go,
        # most that can be owed); None: the class is not limited.
        self.limits = [_limit(rate, spec.window) for rate in (positive, nxdomain, error,
                                                               positive)]
        self.limited = 0  # responses over the limit: the slip counter
        # Answers over the limit by verdict: as applied (a dry run sends them all), as reached.
        self.counts = [0, 0, 0]
        self.would = [0, 0, 0]
        self.memory: mmap.mmap | None = None  # kept mapped for as long as the limiter

    def verdict(self, response: bytes, client: bytes) -> int:
        """SEND, DROP or SLIP for `response` to the client at `client` (4 or 16 octets).

        Every answer passes here with RRL on: one screen, no Python call but `_slot` (an
        account not met lately) and `_over`, and no builtin call where an expression does
        (`min` cost as much as the table update). An account key is its class's octet, the
        question name for a positive answer, and the client's prefix.
        """
        if len(response) > LARGE_SIZE:
            cls, account = LARGE, b"\x03"
        elif response[3] & 0x0F == 0:  # NOERROR: the account is the question name's too
            end = response.find(0, 12, 12 + 255)
            cls, account = POSITIVE, b"\x00" + response[12:end + 1].lower()
        else:
            cls = NXDOMAIN if response[3] & 0x0F == 3 else ERROR
            account = b"\x01" if cls == NXDOMAIN else b"\x02"
        limit = self.limits[cls]
        if limit is None:
            return SEND
        if self.masks is None:
            account += client[:self.v4_bytes] if len(client) == 4 else client[:self.v6_bytes]
        else:
            account += self._masked(client)
        index = self.slots.get(account)
        if index is None:
            index = self._slot(account)
        now = self.clock()
        owed = self.table[index] - now
        owed = owed if owed > 0 else 0  # noqa: FURB136 - no call on the per-answer path
        debt = owed + limit[0]
        self.table[index] = now + (debt if debt < limit[2] else limit[2])  # noqa: FURB136
        if owed <= limit[1]:  # a token left: the common case ends here
            return SEND
        return self._over(client)

    def _slot(self, account: bytes) -> int:
        """The slot of an account key (its class, name and prefix: `verdict`), remembered."""
        index: int = siphash24(account, key=self.key).intdigest() % self.size
        if len(self.slots) >= SLOTS_KEPT:
            self.slots.clear()  # cheaper than an order of use, and a flood's keys go with it
        self.slots[account] = index
        return index

    def _over(self, client: bytes) -> int:
        """A response over its account's limit: exempt, dropped or slipped (and in a dry run,
        counted as such but sent)."""
        if self._exempt(client):
            return SEND
        self.limited += 1
        verdict = SLIP if self.slip and self.limited % self.slip == 0 else DROP
        self.would[verdict] += 1
        if self.dry_run:
            verdict = SEND
        self.counts[verdict] += 1
        return verdict

    def _masked(self, client: bytes) -> bytes:
        """The prefix of a length that is no whole number of octets."""
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


def _limit(rate: int, window: int) -> tuple[int, int, int] | None:
    if rate == 0:
        return None
    interval = SECOND // rate
    burst = interval * rate  # one second's worth of answers at once
    return interval, burst - interval, burst + window * SECOND
