"""systemd's readiness protocol (sd_notify), for `Type=notify` units: plain socket code.

systemd passes a unix datagram socket in `$NOTIFY_SOCKET` (a path, or `@name` in the abstract
namespace) and reads `KEY=VALUE` lines from it: `READY=1` once the service serves, so that units
ordered after it start only then and `systemctl start` returns only then; `STOPPING=1` when a
stop begins. Without the variable (not under systemd) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("healthdns.supervisor")


def notify(*fields: str) -> bool:
    """Send `fields` (`"READY=1"`, `"STATUS=..."`) to systemd; True if there was a socket."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # the abstract namespace: a leading NUL instead of the @
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(fields).encode())
    except OSError as e:
        # systemd gone or a stray variable: serving matters more than telling systemd.
        log.warning("cannot notify systemd at %s: %s", os.environ["NOTIFY_SOCKET"], e)
        return False
    return True
