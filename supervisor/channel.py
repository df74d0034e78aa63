"""The supervisor's end of one child's pipe: reads that never block and never grow unbounded.

A child is not trusted to speak the protocol: it may be buggy or compromised. The children keep
`Connection.send_bytes`/`recv_bytes`; this end speaks the same framing itself (a 4-byte
big-endian length, then the payload; 0xFFFFFFFF announces an 8-byte length, used only beyond
2 GiB, which no role may send) so it can read from a socket that is never waited on, and refuse
a frame by its header before any of its body has arrived.
"""

from __future__ import annotations

import socket
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

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, data: bytes) -> None:
        """One frame, as `Connection.send_bytes` writes it (blocking, as before)."""
        self.sock.sendall(len(data).to_bytes(HEADER, "big") + data)

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
            if not chunk:
                raise EOFError
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

    def close(self) -> None:
        self.sock.close()
        self.child_end.close()
        self.buffer = bytearray()
