"""DNSSEC private key files: read and checked alike wherever they are read.

The signer signs with them; the supervisor checks them before it starts anything (and for
`--check-config`), so that a bad key is a configuration error, not a child that dies; and
`healthdns-key` prints their DS records. All three read a key through `load`.

What a key file must be (docs/configuration.md, "Key files"): a regular file of at most 64 KiB
holding one unencrypted PEM private key of the zone's algorithm, owned by the user healthdns
runs as or by root, with no access for others and none for the group unless
`allow_group_read` lets the group read it. Mode and owner are those of the open file, so a
file swapped in after the check is never the one read.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from dns.dnssectypes import Algorithm

from healthdns.shared import files
from healthdns.shared.config import Config
from healthdns.shared.errors import HealthdnsError

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
MAX_SIZE = 64 * files.KIB  # a 4096-bit RSA key in PEM is about 3.3 KiB
ROLES = ("csk", "ksk", "zsk")
# `healthdns-key generate` notes the role above the PEM block (RFC 7468 5.2: text outside the
# boundaries is explanatory and ignored by PEM readers), so `ds` can tell a ZSK from a KSK.
_ROLE_LINE = re.compile(rb"^healthdns-key role: (csk|ksk|zsk)$", re.MULTILINE)


class KeyFileError(HealthdnsError):
    """A DNSSEC key file cannot be used."""


@dataclass(frozen=True)
class KeyFile:
    private: PrivateKey
    role: str | None  # as `healthdns-key generate` noted it; None in keys made elsewhere


def load(file: str, algorithm: Algorithm | None, path: str,
         allow_group_read: bool = False, owner: int | None = None) -> KeyFile:
    """The key in `file`, checked; `path` names the config field or flag in errors.

    `owner`: the uid healthdns runs as, when that is not this process's (`server.user`).

    With `algorithm` None, any supported algorithm will do (see `algorithm_of`).
    """
    try:
        contents = files.read(file, MAX_SIZE)
    except files.FileProblem as e:
        raise KeyFileError(f"{path}: {e}") from None
    _check_owner(contents.status, file, path, os.geteuid() if owner is None else owner)
    _check_mode(contents.status, file, path, allow_group_read)
    private = _parse(contents.data, file, path)
    if algorithm is None:
        if algorithm_of(private) is None:
            raise KeyFileError(f"{path}: {file} holds {describe(private)}, which healthdns "
                               "does not sign with")
    elif algorithm_of(private) != algorithm:
        raise KeyFileError(f"{path}: {file} holds {describe(private)}, which is not a "
                           f"{algorithm.name} key")
    found = _ROLE_LINE.search(contents.data.split(b"-----BEGIN", 1)[0])
    return KeyFile(private, found[1].decode() if found else None)


def check_config(cfg: Config, owner: int | None = None) -> None:
    """Load every key the configuration names, as the signer (running as `owner`) will."""
    for index, zone in enumerate(cfg.zones):
        spec = zone.dnssec
        if spec is None:
            continue
        for role, file in spec.key_files():
            load(file, Algorithm[spec.algorithm], f"zones[{index}].dnssec.{role}",
                 spec.allow_group_read, owner)
        for i, file in enumerate(spec.publish):
            load_published(file, Algorithm[spec.algorithm], f"zones[{index}].dnssec.publish[{i}]",
                           spec.allow_group_read, owner)


def load_published(file: str, algorithm: Algorithm, path: str,
                   allow_group_read: bool = False, owner: int | None = None) -> KeyFile:
    """A key that is only published: its role note must say which, since the DNSKEY flags
    (and with them the key tag) must already be those it will sign with."""
    key = load(file, algorithm, path, allow_group_read, owner)
    if key.role is None:
        raise KeyFileError(f"{path}: {file} does not say its role; add the line "
                           "'healthdns-key role: zsk' (or ksk, csk) above the PEM block")
    return key


def role_line(role: str) -> bytes:
    """The line `healthdns-key generate` writes above the PEM block."""
    assert role in ROLES
    return f"healthdns-key role: {role}\n".encode()


def algorithm_of(key: PrivateKey) -> Algorithm | None:
    """The DNSSEC algorithm healthdns signs with using a key of this type (None: none)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return Algorithm.ED25519
    if isinstance(key, rsa.RSAPrivateKey):
        return Algorithm.RSASHA256 if key.key_size >= 2048 else None
    return {"secp256r1": Algorithm.ECDSAP256SHA256,
            "secp384r1": Algorithm.ECDSAP384SHA384}.get(key.curve.name)


def describe(key: PrivateKey) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"an EC key on {key.curve.name}"
    if isinstance(key, rsa.RSAPrivateKey):
        return f"an RSA key of {key.key_size} bits"
    return "an Ed25519 key"


def _check_owner(status: os.stat_result, file: str, path: str, owner: int) -> None:
    # Whoever owns the file can replace the key (or make it readable): only we or root may.
    if status.st_uid not in (owner, 0):
        raise KeyFileError(f"{path}: {file} is owned by uid {status.st_uid}, neither by the "
                           f"user healthdns runs as (uid {owner}) nor by root; whoever "
                           "owns a key file can replace the key")


def _check_mode(status: os.stat_result, file: str, path: str, allow_group_read: bool) -> None:
    mode = stat.S_IMODE(status.st_mode)
    allowed = stat.S_IRGRP if allow_group_read else 0
    if mode & (stat.S_IRWXG | stat.S_IRWXO) & ~allowed:
        fix = "640" if allow_group_read else "600"
        who = ("others must have no access and the group read access at most"
               if allow_group_read else "group and others must have no access")
        raise KeyFileError(f"{path}: {file} has mode {mode:03o}: {who} to a private key; "
                           f"chmod {fix} {file}")


def _parse(data: bytes, file: str, path: str) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise KeyFileError(f"{path}: {file} is not an unencrypted PEM private key: {e}") from e
    if not isinstance(key, PrivateKey):
        raise KeyFileError(f"{path}: {file} holds a {type(key).__name__}, not a DNSSEC key type")
    return key
