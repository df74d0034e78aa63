"""Batched UDP I/O through Linux's recvmmsg/sendmmsg, called with the standard library's ctypes.

One system call receives up to `size` datagrams and one sends their answers. Per packet, Python
only slices the receive buffer and writes three integers into the send vectors through
memoryviews: no ctypes attribute access on that path. The peer address never leaves the kernel's
buffers: each answer is sent to the address its query came from, IPv4 or IPv6 alike.
The socket must be blocking with a receive timeout: `serve` runs in a thread of its own.
Where the calls are missing (not Linux), `available()` is False and the responder falls back to
recvfrom/sendto.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import socket
import sys
from collections.abc import Callable

from healthdns.responder.wire import NEEDS_CLIENT

MSG_WAITFORONE = 0x10000  # block for the first datagram only, then take what is queued
MAX_QUERY = 4096  # a longer datagram is no DNS query we answer (and is truncated: dropped)
SLOT = MAX_QUERY + 1  # a receive slot: a datagram that fills it was longer than MAX_QUERY
NAME_SIZE = 128  # sizeof(struct sockaddr_storage): IPv4 and IPv6 peers alike
# sizeof(struct sockaddr_in), sizeof(struct sockaddr_in6): a peer's address, by socket family
ADDRESS_SIZES = {socket.AF_INET: 16, socket.AF_INET6: 28}
BARE_OPT = b"\x00\x00\x29"  # the root owner and type OPT, 11 octets before the end


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


_SIZE = ctypes.sizeof(_Mmsghdr)
_STRIDE = _SIZE // 4  # the vector seen as 32-bit words
_NAMELEN = _Msghdr.msg_namelen.offset // 4
_LEN = _Mmsghdr.msg_len.offset // 4
_libc: ctypes.CDLL | None = None


def _load() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux") or ctypes.sizeof(ctypes.c_void_p) != 8:
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        recv, send = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):
        return None
    # No argtypes: converting five arguments through them cost 0.4 us a call, two calls per
    # wake-up (a wake-up holds two or three queries at moderate load). The callers pass
    # small ints (C ints) and pointers as prebuilt c_void_p objects, which need no conversion.
    recv.restype = send.restype = ctypes.c_int
    return libc


def available() -> bool:
    global _libc
    if _libc is None:
        _libc = _load()
    return _libc is not None


class Batch:
    """Receive and send vectors for one socket, allocated once."""

    def __init__(self, sock: socket.socket, size: int = 32, answer_max: int = 65535) -> None:
        """`answer_max`: the longest answer `serve` may be given to send. A responder's UDP
        answers fit its payload size (at least 512): a send slot of 65535 octets made 2 MiB
        of every socket's 32 slots resident (a UDP socket per listen address, per responder).
        """
        assert available() and _libc is not None
        self.fd = sock.fileno()
        self.size = size
        self.answer_max = answer_max
        self.send_failures = 0  # answers the kernel refused (EINVAL for a port-0 source, ...)
        self._recvmmsg, self._sendmmsg = _libc.recvmmsg, _libc.sendmmsg
        # Received datagrams are sliced from the array itself: a c_char array's slice is the
        # bytes object, one copy (through a memoryview it took two objects, 150 ns to 75).
        self.rbuf = (ctypes.c_char * (SLOT * size))()
        self.sbuf = (ctypes.c_char * (answer_max * size))()
        self.names = (ctypes.c_char * (NAME_SIZE * size))()
        self.riov = (_Iovec * size)()
        self.siov = (_Iovec * size)()
        self.rmsgs = (_Mmsghdr * size)()
        self.smsgs = (_Mmsghdr * size)()
        rbase, sbase = ctypes.addressof(self.rbuf), ctypes.addressof(self.sbuf)
        nbase = ctypes.addressof(self.names)
        for i in range(size):
            self.riov[i].iov_base, self.riov[i].iov_len = rbase + i * SLOT, SLOT
            self.siov[i].iov_base = sbase + i * answer_max
            hdr = self.rmsgs[i].msg_hdr
            hdr.msg_name, hdr.msg_iov, hdr.msg_iovlen = nbase + i * NAME_SIZE, \
                ctypes.addressof(self.riov[i]), 1
            out = self.smsgs[i].msg_hdr
            out.msg_iov, out.msg_iovlen = ctypes.addressof(self.siov[i]), 1
            # Every peer of a socket has an address of the socket's family (IPv4 peers of an
            # IPv6 socket come mapped): one length, set once, as the kernel writes it back.
            out.msg_namelen = ADDRESS_SIZES[sock.family]
        self.sview = memoryview(self.sbuf).cast("B")
        self.rwords = memoryview(self.rmsgs).cast("B").cast("I")
        self.swords = memoryview(self.smsgs).cast("B").cast("Q")
        self.siov_words = memoryview(self.siov).cast("B").cast("Q")
        self._rmsgs_p = ctypes.c_void_p(ctypes.addressof(self.rmsgs))
        # where sendmmsg starts: the first message, or the one after a refused one
        self._smsgs_at = [ctypes.c_void_p(ctypes.addressof(self.smsgs) + i * _SIZE)
                          for i in range(size)]
        # Per-slot offsets, computed once: the per-packet loop unpacks one tuple per slot
        # (a received datagram, an answer to send) instead of indexing five lists.
        # (msg_len word, buffer offset, sockaddr address, sockaddr offset in `names`) of each
        # receive slot
        self._slots = [(i * _STRIDE + _LEN, i * SLOT, nbase + i * NAME_SIZE, i * NAME_SIZE)
                       for i in range(size)]
        # (buffer offset, iov_len word, msg_name word) of each send
        self._outs = [(i * answer_max, i * 2 + 1, i * _STRIDE // 2) for i in range(size)]
        for i in range(size):  # the room for a peer's address, until the kernel says less
            self.rwords[i * _STRIDE + _NAMELEN] = NAME_SIZE
        self.nview = memoryview(self.names).cast("B")

    def serve(self, answer: Callable[[bytes, int], bytes | None],
              on_bug: Callable[[bytes], None],
              guarded: Callable[[bytes, int, bytes], bytes | None] | None = None,
              every: bool = False, transport: int = 0,
              located: Callable[[bytes, int, bytes], bytes | None] | None = None) -> int:
        """Wait for queries (up to the socket's receive timeout), answer one batch.

        With `guarded`, a query is answered by it instead, told the client's address: every
        query with `every` (rate limiting), else those with an additional record that is not
        a bare OPT last (an OPT with options may carry a cookie), so that cookies cost nothing
        to the queries that cannot carry one.

        `transport` is passed on with each query: the answerer counts by the socket's family.
        `located` answers a query `answer` could not answer without the client's address
        (NEEDS_CLIENT: a geo name asked without an ECS address), told it.

        Returns how many datagrams arrived; -1 when the wait timed out or was interrupted.
        """
        rwords, rbuf, sview = self.rwords, self.rbuf, self.sview
        # The kernel writes each received peer's address length over msg_namelen, which is
        # then the room it gives the next address: never reset, as a socket's peers are all
        # of its family (IPv4 peers of an IPv6 socket come mapped), one length for all.
        count: int = self._recvmmsg(self.fd, self._rmsgs_p, self.size, MSG_WAITFORONE, None)
        if count <= 0:
            return -1
        swords, siov_words, outs, most = self.swords, self.siov_words, self._outs, \
            self.answer_max
        out = 0
        for len_at, start, name, name_at in self._slots[:count]:
            length = rwords[len_at]
            if length == SLOT:  # longer than MAX_QUERY, cut short by the kernel: dropped
                continue
            query: bytes = rbuf[start:start + length]  # type: ignore[assignment]  # c_char slice
            try:
                if guarded is not None and (every or query[11:12] > b"\x00"
                                            and query[-11:-8] != BARE_OPT):
                    response = guarded(query, transport, self._peer(name_at))
                else:
                    response = answer(query, transport)
                    if response is NEEDS_CLIENT and located is not None:
                        response = located(query, transport, self._peer(name_at))
                if response is None:
                    continue
                size = len(response)
                if size > most:  # it would spill over the next slot
                    raise ValueError(f"a UDP answer of {size} octets, over the {most} of a "
                                     f"send slot")
            except Exception:  # noqa: BLE001 - a bug must cost one query, never the server
                on_bug(query)
                continue
            base, len_word, name_word = outs[out]
            sview[base:base + size] = response
            siov_words[len_word] = size
            swords[name_word] = name  # msg_name, a 64-bit word (msg_namelen is set)
            out += 1
        if out:
            sent = self._sendmmsg(self.fd, self._smsgs_at[0], out, 0)
            if sent != out:
                self._send_rest(sent, out)
        return count

    def _peer(self, base: int) -> bytes:
        """The packed address (4 or 16 octets) of the sockaddr at `base` in `names`."""
        if self.nview[base] == socket.AF_INET:  # sa_family, a little-endian 16-bit word
            return bytes(self.nview[base + 4:base + 8])
        return bytes(self.nview[base + 8:base + 24])

    def _send_rest(self, done: int, count: int) -> None:
        """Send answers 0..count-1, of which a first sendmmsg returned `done`: one the kernel
        refuses is skipped, the rest still go.

        sendmmsg stops at the first failing message: it returns how many went before it, or -1
        when the very first one fails. A spoofed query (source port 0, say) must cost its own
        answer only, never those queued behind it in the batch.
        """
        sent = 0
        while True:
            if done > 0:
                sent += done
            elif not (done < 0 and ctypes.get_errno() == errno.EINTR):  # EINTR: none went
                self.send_failures += 1
                sent += 1
            if sent >= count:
                return
            done = self._sendmmsg(self.fd, self._smsgs_at[sent], count - sent, 0)
