"""TSIG keys (RFC 8945): read from the configuration or from key files, one keyring for all.

A key is given inline (`secret`, base64) or in a file written by the usual tools:

* BIND's `tsig-keygen` / `ddns-confgen`: ``key "name" { algorithm hmac-sha256; secret "..."; };``
* Knot's `keymgr -t name hmac-sha256`: a YAML ``key:`` list with ``id``, ``algorithm``, ``secret``.

Parsing needs no DNS library, so the configuration can check keys without importing one; the
roles that sign or verify build their keyring with `keyring`.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dns.name
    import dns.tsig

# RFC 8945 section 6: HMAC-SHA256 is mandatory; SHA-1 and the truncated SHA-2 variants are
# still what many secondaries are configured with. HMAC-MD5 is not accepted (RFC 8945 6).
ALGORITHMS = ("hmac-sha1", "hmac-sha224", "hmac-sha256", "hmac-sha384", "hmac-sha512")
MIN_SECRET = 16  # octets: RFC 8945 6 asks for at least half the HMAC output; 16 is a floor
MAX_KEY_FILE = 16 * 1024

_BIND = re.compile(
    r'key\s+"?(?P<name>[^"\s{]+)"?\s*\{(?P<body>[^}]*)\}\s*;', re.IGNORECASE)
_BIND_FIELD = re.compile(r'(?P<field>algorithm|secret)\s+"?(?P<value>[^";\s]+)"?\s*;',
                         re.IGNORECASE)
_KNOT_FIELD = re.compile(r"^\s*-?\s*(?P<field>id|algorithm|secret)\s*:\s*(?P<value>\S+)\s*$",
                         re.IGNORECASE | re.MULTILINE)


class KeyTextError(ValueError):
    """A key file or secret that cannot be used; the text says what is wrong."""


@dataclass(frozen=True)
class Key:
    name: str  # lower case, no final dot
    algorithm: str  # one of ALGORITHMS
    secret: bytes


def parse_file(text: str) -> list[tuple[str, str, str]]:
    """(name, algorithm, base64 secret) of every key in a BIND or Knot key file."""
    found: list[tuple[str, str, str]] = []
    for match in _BIND.finditer(text):
        fields = {m["field"].lower(): m["value"] for m in _BIND_FIELD.finditer(match["body"])}
        if "secret" not in fields or "algorithm" not in fields:
            raise KeyTextError(f"key {match['name']!r} has no "
                               f"{'secret' if 'secret' not in fields else 'algorithm'}")
        found.append((match["name"], fields["algorithm"], fields["secret"]))
    if found:
        return found
    current: dict[str, str] = {}
    for match in _KNOT_FIELD.finditer(text):
        field = match["field"].lower()
        if field == "id" and current:
            found.append(_knot_key(current))
            current = {}
        current[field] = match["value"].strip("'\"")
    if current:
        found.append(_knot_key(current))
    if not found:
        raise KeyTextError("no key in it (expected tsig-keygen or keymgr output)")
    return found


def _knot_key(fields: dict[str, str]) -> tuple[str, str, str]:
    missing = [f for f in ("id", "algorithm", "secret") if f not in fields]
    if missing:
        raise KeyTextError(f"a key has no {missing[0]}")
    return fields["id"], fields["algorithm"], fields["secret"]


def secret(text: str) -> bytes:
    """The octets of a base64 secret, checked."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KeyTextError("the secret is not base64") from None
    if len(raw) < MIN_SECRET:
        raise KeyTextError(f"the secret is {len(raw)} octets, fewer than {MIN_SECRET}")
    return raw


def algorithm(text: str) -> str:
    name = text.lower().rstrip(".")
    if name not in ALGORITHMS:
        raise KeyTextError(f"{text!r} is not one of {', '.join(ALGORITHMS)}")
    return name


def keyring(keys: list[Key]) -> dict[dns.name.Name, dns.tsig.Key]:
    """A dnspython keyring (key name -> key) for signing and verifying."""
    import dns.name
    import dns.tsig

    ring: dict[dns.name.Name, dns.tsig.Key] = {}
    for key in keys:
        name = dns.name.from_text(key.name)
        ring[name] = dns.tsig.Key(name, key.secret, dns.name.from_text(key.algorithm))
    return ring
