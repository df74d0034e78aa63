"""DNSSEC keys: read from PEM files by the signer only, checked before anything is signed."""

from __future__ import annotations

import functools
import os
import stat
from dataclasses import dataclass

import dns.dnssec
import dns.name
import dns.rdtypes.ANY.DNSKEY
import dns.rdtypes.ANY.DS
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

from healthdns.shared.config import DnssecSpec
from healthdns.shared.errors import HealthdnsError

Algorithm = dns.dnssec.Algorithm
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
SEP, ZONE_KEY = 0x0001, 0x0100


class KeyFileError(HealthdnsError):
    """A DNSSEC key file cannot be used."""


@dataclass(frozen=True)
class Key:
    role: str  # csk, ksk or zsk
    private: PrivateKey
    dnskey: dns.rdtypes.ANY.DNSKEY.DNSKEY

    @functools.cached_property
    def tag(self) -> int:
        return dns.dnssec.key_id(self.dnskey)

    def sign(self, data: bytes) -> bytes:
        """A DNSSEC signature over `data`, in the wire format of the algorithm (RFC 6605 4,
        RFC 8080 3, RFC 5702 3)."""
        key = self.private
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(data)
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        size = (key.curve.key_size + 7) // 8
        digest = hashes.SHA256() if size == 32 else hashes.SHA384()
        r, s = utils.decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")

    @property
    def signs_keys(self) -> bool:
        return self.role in ("csk", "ksk")

    @property
    def signs_zone(self) -> bool:
        return self.role in ("csk", "zsk")


def flags(role: str) -> int:
    return ZONE_KEY | SEP if role in ("csk", "ksk") else ZONE_KEY


def load_all(spec: DnssecSpec, path: str) -> list[Key]:
    """Every key of a zone's DNSSEC settings; `path` names the config field in errors."""
    algorithm = Algorithm[spec.algorithm]
    return [load(file, role, algorithm, f"{path}.{role}") for role, file in spec.key_files()]


def load(file: str, role: str, algorithm: Algorithm, path: str) -> Key:
    private = _read(file, path)
    _check_type(private, algorithm, file, path)
    dnskey = dns.dnssec.make_dnskey(private.public_key(), algorithm, flags=flags(role))
    return Key(role, private, dnskey)


def _read(file: str, path: str) -> PrivateKey:
    try:
        mode = os.stat(file).st_mode
        with open(file, "rb") as f:
            data = f.read()
    except OSError as e:
        raise KeyFileError(f"{path}: {file}: cannot read: {e.strerror}") from e
    if mode & stat.S_IROTH:
        raise KeyFileError(f"{path}: {file} is readable by everyone (mode {stat.S_IMODE(mode):o}): "
                        f"a private key must not be; chmod 600 {file}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise KeyFileError(f"{path}: {file} is not an unencrypted PEM private key: {e}") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
                      | rsa.RSAPrivateKey):
        raise KeyFileError(f"{path}: {file} holds a {type(key).__name__}, not a DNSSEC key type")
    return key


def _check_type(key: PrivateKey, algorithm: Algorithm, file: str, path: str) -> None:
    wanted = {
        Algorithm.ECDSAP256SHA256: lambda k: isinstance(k, ec.EllipticCurvePrivateKey)
        and isinstance(k.curve, ec.SECP256R1),
        Algorithm.ECDSAP384SHA384: lambda k: isinstance(k, ec.EllipticCurvePrivateKey)
        and isinstance(k.curve, ec.SECP384R1),
        Algorithm.ED25519: lambda k: isinstance(k, ed25519.Ed25519PrivateKey),
        Algorithm.RSASHA256: lambda k: isinstance(k, rsa.RSAPrivateKey) and k.key_size >= 2048,
    }[algorithm]
    if not wanted(key):
        raise KeyFileError(f"{path}: {file} holds {describe(key)}, which is not a "
                        f"{algorithm.name} key")


def describe(key: PrivateKey) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"an EC key on {key.curve.name}"
    if isinstance(key, rsa.RSAPrivateKey):
        return f"an RSA key of {key.key_size} bits"
    return "an Ed25519 key"


def generate(algorithm: Algorithm) -> PrivateKey:
    if algorithm == Algorithm.ECDSAP256SHA256:
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == Algorithm.ECDSAP384SHA384:
        return ec.generate_private_key(ec.SECP384R1())
    if algorithm == Algorithm.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == Algorithm.RSASHA256:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise KeyFileError(f"{algorithm.name} is not supported")


def write(key: PrivateKey, file: str) -> None:
    """Write a PEM key readable by its owner only."""
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def ds(zone: dns.name.Name, dnskey: dns.rdtypes.ANY.DNSKEY.DNSKEY) -> dns.rdtypes.ANY.DS.DS:
    return dns.dnssec.make_ds(zone, dnskey, "SHA256")
