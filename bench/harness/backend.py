"""A checked backend: a real TCP listener on loopback that a health check finds up or down."""

from __future__ import annotations

import socket
import threading


class Backend:
    """A real TCP listener on loopback that a health check finds up or down.

    While down, the port stays bound but not listening, so connections are refused and no
    other test or benchmark can take the port.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.listening = False
        self.sock = self._bind()
        self.port = self.sock.getsockname()[1]
        self._thread: threading.Thread | None = None

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        return sock

    def up(self) -> None:
        self.sock.listen(64)
        self.sock.settimeout(0.05)
        self.listening = True
        self._thread = threading.Thread(target=self._accept, args=(self.sock,), daemon=True)
        self._thread.start()

    def _accept(self, sock: socket.socket) -> None:
        while self.listening:  # accept and drop, so the backlog never fills
            try:
                conn, _ = sock.accept()
                conn.close()
            except TimeoutError:
                continue
            except OSError:
                return

    def down(self) -> None:
        self.listening = False
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.sock.close()
        self.sock = self._bind()

    def close(self) -> None:
        self.listening = False
        if self._thread is not None:
            self._thread.join()
        self.sock.close()
