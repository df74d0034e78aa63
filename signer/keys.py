"""DNSSEC keys as the signer uses them; reading and checking the files is `shared.keyfiles`."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CDS
import dns.rdtypes.ANY.DNSKEY
import dns.rdtypes.ANY.DS
import dns.rdtypes.dsbase
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from dns.dnssectypes import Algorithm

from healthdns.shared import keyfiles
from healthdns.shared.config import DnssecSpec
from healthdns.signer import keyrecords

# The signer, its tests and the benchmarks know these (and Algorithm, imported above) by their
# old home.
KeyFileError = keyfiles.KeyFileError
PrivateKey = keyfiles.PrivateKey
SEP, ZONE_KEY = 0x0001, 0x0100


@dataclass(frozen=True)
class Key:
    role: str  # csk, ksk or zsk
    private: PrivateKey
    dnskey: dns.rdtypes.ANY.DNSKEY.DNSKEY
    published_only: bool = False  # in the DNSKEY RRset, signing nothing (a rollover)
    # A KSK or CSK retired by a roll: it signs the key RRsets (DNSKEY, CDS, CDNSKEY) until it
    # is removed, so that a parent still serving only its DS keeps the zone valid.
    keys_only: bool = False
    # Of an algorithm roll: it signs, its DNSKEY not in the RRset (a new key before it is
    # published, an old one after it is withdrawn).
    hidden: bool = False

    @functools.cached_property
    def tag(self) -> int:
        return keyrecords.key_tag(self.dnskey)

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
        return self.role in ("csk", "ksk") and not self.published_only

    @property
    def signs_zone(self) -> bool:
        return self.role in ("csk", "zsk") and not self.published_only and not self.keys_only


def flags(role: str) -> int:
    return ZONE_KEY | SEP if role in ("csk", "ksk") else ZONE_KEY


def load_all(spec: DnssecSpec, path: str) -> list[Key]:
    """Every key of a zone's DNSSEC settings; `path` names the config field in errors."""
    algorithm = Algorithm[spec.algorithm]
    signing = [load(file, role, algorithm, f"{path}.{role}", spec.allow_group_read)
               for role, file in spec.key_files()]
    published = []
    for i, file in enumerate(spec.publish):
        found = keyfiles.load_published(file, algorithm, f"{path}.publish[{i}]",
                                        spec.allow_group_read)
        assert found.role is not None
        key = made(found.private, found.role, algorithm)
        published.append(Key(key.role, key.private, key.dnskey, published_only=True))
    return signing + published


def load(file: str, role: str, algorithm: Algorithm, path: str,
         allow_group_read: bool = False) -> Key:
    return made(keyfiles.load(file, algorithm, path, allow_group_read).private, role, algorithm)


def made(private: PrivateKey, role: str, algorithm: Algorithm) -> Key:
    """The signing key of `role` that `private` is."""
    dnskey = keyrecords.dnskey(private.public_key(), algorithm, flags(role))
    return Key(role, private, dnskey)


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


def write(key: PrivateKey, file: str, role: str | None = None) -> None:
    """Write a PEM key readable by its owner only, with its `role` noted above it if given."""
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    if role is not None:
        data = keyfiles.role_line(role) + data
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def ds(zone: dns.name.Name, dnskey: dns.rdtypes.ANY.DNSKEY.DNSKEY) -> dns.rdtypes.dsbase.DSBase:
    """The DS of `dnskey`; of the delete CDNSKEY, the delete CDS (RFC 8078 4), which only a
    CDS may be (digest type 0)."""
    if dnskey.algorithm == 0:
        return dns.rdtypes.ANY.CDS.CDS(  # type: ignore[no-untyped-call]  # dnspython's
            dns.rdataclass.IN, dns.rdatatype.CDS, 0, 0, 0, b"\0")
    return keyrecords.ds(zone, dnskey)


def delete_marker() -> Key:
    """RFC 8078 4's request to remove every DS, in the place of the keys whose CDS a zone
    serves: its DNSKEY is the delete CDNSKEY (`0 3 0 AA==`), its DS the delete CDS
    (`0 0 0 00`, see `ds`). It is never published and signs nothing."""
    dnskey = dns.rdtypes.ANY.DNSKEY.DNSKEY(  # type: ignore[no-untyped-call]  # dnspython's
        dns.rdataclass.IN, dns.rdatatype.DNSKEY, 0, 3, 0, b"\0")
    return Key("ksk", ed25519.Ed25519PrivateKey.generate(), dnskey, published_only=True)
