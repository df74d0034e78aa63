"""What stands between the sockets and the answerer when cookies or RRL are on.

`Guard.answer` takes the client's address, which `Answerer.answer` never needs: a query with
a COOKIE option is answered by the slow path with our server cookie added, and a UDP response
then meets the rate limiter unless the query proved its address with a valid server cookie.
Over TCP the handshake proved it already: only cookies apply.
"""

from __future__ import annotations

import logging
import mmap
import secrets
import socket
import struct

from healthdns.responder import cookies, rrl
from healthdns.responder.query import Answerer
from healthdns.responder.wire import BADCOOKIE, FORMERR, OPT_HEAD, TC, TCP
from healthdns.shared.config import Config
from healthdns.shared.region import Region

_STANDARD_COUNTS = b"\x00\x01\x00\x00\x00\x00\x00\x01"
log = logging.getLogger("healthdns.responder")


class Guard:
    def __init__(self, answerer: Answerer, cookie_jar: cookies.Cookies | None,
                 limiter: rrl.Limiter | None) -> None:
        self.answerer = answerer
        self.cookies = cookie_jar
        self.limiter = limiter

    def answer(self, data: bytes, transport: int, client: bytes) -> bytes | None:
        """The response to `data` from `client` (4 or 16 octets), or None to send nothing;
        `transport` as `Answerer.answer` takes it."""
        # No OPT, or an OPT without options last (what the fast path takes): no cookie.
        if data[11:12] != b"\x01" or data[-11:-8] == OPT_HEAD or self.cookies is None:
            response = self.answerer.answer_told(data, transport, client)
            limiter = self.limiter
            if transport & TCP or response is None or limiter is None:
                return response
            # The limiter is asked here, not in `_limit`: every UDP answer passes this line.
            verdict = limiter.verdict(response, client)
            if verdict == rrl.SEND:
                return response
            return self._limited(data, transport, response, verdict, b"")
        option = cookies.find(data)
        if option is None:
            return self.answerer.answer_told(data, transport, client)  # not the usual layout
        status, reply = self.cookies.check(option, client)
        if status == cookies.MALFORMED:
            return self.answerer.slow(data, transport, rcode=FORMERR)  # RFC 7873 5.2.2
        response = self.answerer.slow(data, transport, reply, client=client)
        if transport & TCP or response is None or self.limiter is None or status == cookies.VALID:
            return response  # a valid server cookie proves the address: no limit
        return self._limit(data, transport, response, client, reply)

    def _limit(self, data: bytes, transport: int, response: bytes, client: bytes,
               reply: bytes) -> bytes | None:
        assert self.limiter is not None
        verdict = self.limiter.verdict(response, client)
        if verdict == rrl.SEND:
            return response
        return self._limited(data, transport, response, verdict, reply)

    def _limited(self, data: bytes, transport: int, response: bytes, verdict: int,
                 reply: bytes) -> bytes | None:
        """A response over its limit: dropped, or slipped (BADCOOKIE to a cookie client)."""
        if verdict == rrl.DROP:
            return None
        if reply:  # RFC 7873 5.4: a client with a cookie retries with ours, then goes free
            return self.answerer.slow(data, transport, reply, BADCOOKIE)  # no answer: no geo
        return self._slipped(data, response)

    def _slipped(self, data: bytes, response: bytes) -> bytes:
        """The response emptied with TC=1: as small as the query, so a spoofed source gains
        nothing, while a real client retries over TCP (where no limit applies)."""
        end = response.find(0, 12, 12 + 255) if response[4:6] == b"\x00\x01" else -1
        question = response[12:end + 5] if end >= 12 else b""
        opt = b""
        qend = data.find(0, 12, 12 + 255) + 5
        if data[4:12] == _STANDARD_COUNTS and data[qend:qend + 3] == OPT_HEAD \
                and len(data) >= qend + 11:
            opt = self.answerer.opts[data[qend + 7] >> 7]
        flags = struct.unpack_from(">H", response, 2)[0] | TC
        return response[:2] + struct.pack(">HHHHH", flags, 1 if question else 0, 0, 0,
                                          1 if opt else 0) + question + opt


def address(peer: str) -> bytes:
    """The packed form of a textual peer address (the portable and TCP paths)."""
    family = socket.AF_INET6 if ":" in peer else socket.AF_INET
    return socket.inet_pton(family, peer.split("%", 1)[0])


def build(answerer: Answerer, cfg: Config, secret: bytes, table: Region | None) -> Guard | None:
    """The guard this configuration asks for; None when cookies and RRL are both off, so the
    answer path costs one test of None more than without them."""
    secret = secret or secrets.token_bytes(32)  # a lone responder (tests): its own secret
    jar = cookies.Cookies(secret[:16], cfg.cookies.rotation) if cfg.cookies.enabled else None
    limiter = None
    if cfg.rrl.active():
        memory = _attach(table) if table is not None else None
        view = memoryview(memory if memory is not None
                          else bytearray(cfg.rrl.table_size * rrl.SLOT))
        limiter = rrl.Limiter(cfg.rrl, view, secret[16:])
        limiter.memory = memory
    if jar is None and limiter is None:
        return None
    return Guard(answerer, jar, limiter)


def _attach(table: Region) -> mmap.mmap | None:
    """The supervisor's table, mapped; None (limits of this responder's own) when it cannot
    be mapped. The descriptor is closed either way: the mapping is what is used."""
    try:
        return table.map()
    except (OSError, ValueError) as e:
        log.warning("cannot map the shared RRL table (descriptor %d, %d bytes: %s): this "
                    "responder keeps accounts of its own, so a client spread over the "
                    "responders gets more answers", table.fd, table.size,
                    getattr(e, "strerror", None) or e)
        return None
    finally:
        table.close()
