"""TLS server contexts built from PEM text held in memory (the control endpoint's HTTPS).

The configuration check reads the certificate and key files (it may read what only root may);
the running supervisor is handed their text and builds its context from that. Python's `ssl`
loads a certificate chain from files only, so the text goes through two anonymous memory files
(`memfd_create`) opened by their /proc path: a private key is never written to a disk.
"""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import Iterator


class PassphraseNeeded(ValueError):
    """The private key is encrypted: a server that starts unattended cannot ask for it."""


def server_context(cert_pem: str, key_pem: str) -> ssl.SSLContext:
    """A server context for `cert_pem` (the chain, leaf first) and its `key_pem`: TLS 1.2 at
    least, HTTP/1.1 offered by ALPN. Raises `ssl.SSLError` or `PassphraseNeeded`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    with _memory_file("cert", cert_pem) as cert, _memory_file("key", key_pem) as key:
        context.load_cert_chain(cert, key, password=_no_passphrase)
    return context


def _no_passphrase() -> bytes:
    raise PassphraseNeeded("the key is encrypted")


@contextlib.contextmanager
def _memory_file(name: str, text: str) -> Iterator[str]:
    fd = os.memfd_create(f"healthdns-{name}", os.MFD_CLOEXEC)
    try:
        data = memoryview(text.encode("ascii"))
        while data:
            data = data[os.write(fd, data):]
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)
