"""The supervisor's end of one child's pipe: reads and writes that never block the supervisor.

A child is not trusted to speak the protocol: it may be buggy or compromised. The children keep
`Connection.send_bytes`/`recv_bytes`; this end speaks the same framing itself (a 4-byte
big-endian length, then the payload; 0xFFFFFFFF announces an 8-byte length, used only beyond
2 GiB, which no role may send) so it can read from a socket that is never waited on, and refuse
a frame by its header before any of its body has arrived. What a child does not read yet
waits here (the same bytes objects for every responder, not copies), written as the child reads.
"""

from __future__ import annotations

import socket
from collections import deque
from multiprocessing.connection import Connection

HEADER = 4
READ_CHUNK = 1 << 20
READ_PER_WAKEUP = 4 << 20  # bytes read per loop turn: one busy child cannot starve the others


class FrameTooLarge(Exception):
    """A frame announced more bytes than its sender may send."""


class Channel:
    """One child's pipe, a socketpair: the child's end is a `Connection`, this one a socket."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sock, theirs = socket.socketpair()
        self.child_end = Connection(theirs.detach())
        self.buffer = bytearray()
        self.outgoing: deque[memoryview] = deque()
        self.pending = 0  # bytes in `outgoing`
        self.received = 0  # bytes read from the child, ever

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, data: bytes) -> None:
        """Queue one frame, as `Connection.send_bytes` writes it, and write what fits now.

        Raises `OSError` when the child is gone.
        """
        for part in (len(data).to_bytes(HEADER, "big"), data):
            self.outgoing.append(memoryview(part))
            self.pending += len(part)
        self.flush()

    def flush(self) -> None:
        """Write queued frames until the socket is full; the rest waits for writability."""
        while self.outgoing:
            try:
                sent = self.sock.send(self.outgoing[0], socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            self.pending -= sent
            if sent < len(self.outgoing[0]):
                self.outgoing[0] = self.outgoing[0][sent:]
                return
            self.outgoing.popleft()

    def receive(self) -> list[bytes]:
        """The frames complete so far, without waiting for more.

        Raises `EOFError` when the child closed its end, `FrameTooLarge` as soon as a header
        announces more than `limit` bytes (the body is never awaited).
        """
        frames = self._frames()  # a refusal must not wait for the rest of a turn's reading
        for _ in range(READ_PER_WAKEUP // READ_CHUNK):
            try:
                chunk = self.sock.recv(READ_CHUNK, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionResetError:  # killed with our bytes unread: gone all the same
                raise EOFError from None
            if not chunk:
                raise EOFError
            self.received += len(chunk)
            self.buffer += chunk
            frames += self._frames()
        return frames

    def _frames(self) -> list[bytes]:
        frames = []
        while len(self.buffer) >= HEADER:
            size = int.from_bytes(self.buffer[:HEADER], "big")
            if size > self.limit:
                raise FrameTooLarge(f"a frame of {size} bytes (at most {self.limit} allowed)")
            if len(self.buffer) < HEADER + size:
                break
            frames.append(bytes(self.buffer[HEADER:HEADER + size]))
            del self.buffer[:HEADER + size]
        return frames

    def discard_output(self) -> None:
        """Forget what the child will never read: it is gone."""
        self.outgoing.clear()
        self.pending = 0

    def close(self) -> None:
        self.sock.close()
        self.child_end.close()
        self.buffer = bytearray()
        self.discard_output()
