"""DNS cookies (RFC 7873) with interoperable server cookies (RFC 9018).

A server cookie is version 1, three reserved octets, a 32-bit timestamp and an 8-octet
SipHash-2-4 of client cookie | version | reserved | timestamp | client address under a
16-octet secret. Every responder derives the secret of a period from one master secret that
the supervisor hands to all of them, so any responder validates any other's cookies. Which
secret minted a cookie follows from its timestamp: a new secret every `rotation` seconds, and
an old one still verifies the cookies it made for the hour RFC 9018 lets a cookie live.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Callable

from siphash24 import siphash24

COOKIE = 10  # EDNS option code (RFC 7873 4)
CLIENT_SIZE = 8
VERSION = 1  # RFC 9018 4.1
MAX_AGE = 3600  # RFC 9018 4.3: older cookies are invalid...
MAX_AHEAD = 300  # ...and so are cookies from more than five minutes in the future
REFRESH_AGE = 1800  # a valid cookie older than this is replaced by a new one
MALFORMED, FRESH, VALID = 0, 1, 2  # what a query's COOKIE option is (RFC 7873 5.2)
_SECRETS_KEPT = 4


class Cookies:
    """Checks the COOKIE option of queries and makes the one to send back."""

    def __init__(self, master: bytes, rotation: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.master = master
        self.rotation = rotation
        self.clock = clock
        self.secrets: dict[int, bytes] = {}  # period -> secret, the latest few

    def secret(self, timestamp: int) -> bytes:
        """The 16-octet secret for cookies minted at `timestamp`: one-way from the master."""
        period = timestamp // self.rotation
        secret = self.secrets.get(period)
        if secret is None:
            secret = hashlib.blake2b(period.to_bytes(8, "big"), key=self.master,
                                     digest_size=16, person=b"healthdns-cookie").digest()
            if len(self.secrets) >= _SECRETS_KEPT:
                self.secrets.pop(min(self.secrets))
            self.secrets[period] = secret
        return secret

    def make(self, client_cookie: bytes, client: bytes, timestamp: int) -> bytes:
        """The 16-octet server cookie for this client cookie and client address."""
        head = struct.pack(">BxxxI", VERSION, timestamp & 0xFFFFFFFF)
        digest: bytes = siphash24(client_cookie + head + client,
                                  key=self.secret(timestamp)).digest()
        return head + digest

    def check(self, option: bytes, client: bytes) -> tuple[int, bytes]:
        """(MALFORMED, FRESH or VALID, the COOKIE option to answer with: b"" when MALFORMED).

        FRESH covers a client cookie alone and a server cookie we did not make (another
        server's, an expired one, one for another address): RFC 7873 5.2.3-5.2.4.
        """
        size = len(option)
        if size != CLIENT_SIZE and not 16 <= size <= 40:
            return MALFORMED, b""  # RFC 7873 5.2.2: FORMERR
        now = int(self.clock())
        client_cookie = option[:CLIENT_SIZE]
        status = FRESH
        if size == 24 and option[8] == VERSION:
            minted = struct.unpack_from(">I", option, 12)[0]
            age = (now - minted + 2**31) % 2**32 - 2**31  # serial arithmetic (RFC 1982)
            if -MAX_AHEAD <= age <= MAX_AGE \
                    and self.make(client_cookie, client, now - age) == option[8:]:
                status = VALID
                if age <= REFRESH_AGE:
                    return status, _option(option)
        return status, _option(client_cookie + self.make(client_cookie, client, now))


def _option(data: bytes) -> bytes:
    return struct.pack(">HH", COOKIE, len(data)) + data


def find(data: bytes) -> bytes | None:
    """The COOKIE option data of a query in the usual layout (one question, then an OPT as the
    only additional record), or None. Other layouts go on without cookies."""
    if len(data) < 17 or data[4:12] != b"\x00\x01\x00\x00\x00\x00\x00\x01":
        return None
    end = data.find(0, 12, 12 + 255)
    opt = end + 5
    if end < 12 or data[opt:opt + 3] != b"\x00\x00\x29" or len(data) < opt + 11:
        return None
    pos = opt + 11
    stop = min(len(data), pos + (data[opt + 9] << 8 | data[opt + 10]))
    while pos + 4 <= stop:
        code, length = struct.unpack_from(">HH", data, pos)
        if code == COOKIE:
            return data[pos + 4:min(stop, pos + 4 + length)]
        pos += 4 + length
    return None
