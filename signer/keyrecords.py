"""A key's DNSKEY and DS records, and its key tag, from the RFCs that define them.

healthdns makes these itself rather than with `dns.dnssec`: importing that module imports every
algorithm dnspython knows, DSA among them, and cryptography deprecates DSA with a warning at
import (`CryptographyDeprecationWarning: DSA is deprecated`). The signer and `healthdns-key`
only ever need the four algorithms healthdns signs with, whose public key formats are short.
"""

from __future__ import annotations

import hashlib

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.DNSKEY
import dns.rdtypes.ANY.DS
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from dns.dnssectypes import Algorithm

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey
PROTOCOL = 3  # RFC 4034 2.1.2: the only value
SHA256 = 2  # DS digest type (RFC 4509)
# The DS digest types a parent may use, by number: SHA-1 (RFC 4034), SHA-256 (RFC 4509),
# SHA-384 (RFC 6605). A DS of another type authenticates no key here.
DIGESTS = {1: "sha1", SHA256: "sha256", 4: "sha384"}


def dnskey(public: PublicKey, algorithm: Algorithm, flags: int) -> dns.rdtypes.ANY.DNSKEY.DNSKEY:
    """The DNSKEY rdata of `public` (RFC 4034 2.1)."""
    return dns.rdtypes.ANY.DNSKEY.DNSKEY(  # type: ignore[no-untyped-call]  # dnspython's
        dns.rdataclass.IN, dns.rdatatype.DNSKEY, flags, PROTOCOL, algorithm,
        public_key_field(public))


def public_key_field(public: PublicKey) -> bytes:
    """The DNSKEY public key field: RSA as RFC 3110 2 (exponent length, exponent, modulus),
    ECDSA as RFC 6605 4 (x then y, each the curve's size), Ed25519 as RFC 8080 3 (the raw key).
    """
    if isinstance(public, ed25519.Ed25519PublicKey):
        return public.public_bytes_raw()
    if isinstance(public, ec.EllipticCurvePublicKey):
        size = (public.curve.key_size + 7) // 8
        point = public.public_numbers()
        return point.x.to_bytes(size, "big") + point.y.to_bytes(size, "big")
    numbers = public.public_numbers()
    exponent = _unsigned(numbers.e)
    length = (bytes([len(exponent)]) if len(exponent) <= 255
              else b"\0" + len(exponent).to_bytes(2, "big"))
    return length + exponent + _unsigned(numbers.n)


def _unsigned(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def key_tag(key: dns.rdtypes.ANY.DNSKEY.DNSKEY) -> int:
    """RFC 4034 appendix B: the rdata's octets summed as 16-bit words, carries folded once (the
    rule for every algorithm but RSA/MD5, which healthdns does not sign with)."""
    wire = key.to_digestable()  # the rdata's wire form (a DNSKEY holds no names)
    total = sum(wire[0::2]) * 256 + sum(wire[1::2])
    return (total + (total >> 16)) & 0xFFFF


def ds(zone: dns.name.Name, key: dns.rdtypes.ANY.DNSKEY.DNSKEY,
       digest_type: int = SHA256) -> dns.rdtypes.ANY.DS.DS:
    """The DS of `key` at `zone` (RFC 4034 5.1.4: the digest of the owner name in canonical
    form followed by the DNSKEY rdata), SHA-256 unless another of `DIGESTS` is asked for."""
    digest = hashlib.new(DIGESTS[digest_type], zone.to_digestable() + key.to_digestable())
    return dns.rdtypes.ANY.DS.DS(  # type: ignore[no-untyped-call]  # dnspython's
        dns.rdataclass.IN, dns.rdatatype.DS, key_tag(key), key.algorithm, digest_type,
        digest.digest())


def matches(record: dns.rdtypes.ANY.DS.DS, zone: dns.name.Name,
            key: dns.rdtypes.ANY.DNSKEY.DNSKEY) -> bool:
    """Whether the DS `record` (of any digest type a parent may use) is `key`'s."""
    return record.digest_type in DIGESTS and record.key_tag == key_tag(key) \
        and record.algorithm == key.algorithm and ds(zone, key, record.digest_type) == record
