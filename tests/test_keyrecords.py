"""A key's DNSKEY, DS and key tag, made without `dns.dnssec`: the same records dnspython makes,
for every algorithm healthdns signs with, and no DSA module imported for them."""

from __future__ import annotations

import subprocess
import sys
import warnings

import dns.name
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthdns.signer import keyrecords, keys

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # dnspython's DSA import: the test compares with its records
    import dns.dnssec

ALGORITHMS = [keys.Algorithm.ECDSAP256SHA256, keys.Algorithm.ECDSAP384SHA384,
              keys.Algorithm.ED25519, keys.Algorithm.RSASHA256]
labels = st.text(st.sampled_from("abcXYZ019-"), min_size=1, max_size=12)


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=lambda a: a.name)
@settings(max_examples=10, deadline=None)
@given(flags=st.sampled_from([256, 257]), zone=st.lists(labels, min_size=1, max_size=3))
def test_records_match_dnspython(algorithm: keys.Algorithm, flags: int,
                                 zone: list[str]) -> None:
    origin = dns.name.from_text(".".join(zone))
    public = keys.generate(algorithm).public_key()
    ours = keyrecords.dnskey(public, algorithm, flags)
    assert ours == dns.dnssec.make_dnskey(public, algorithm, flags=flags)
    assert keyrecords.key_tag(ours) == dns.dnssec.key_id(ours)
    assert keyrecords.ds(origin, ours) == dns.dnssec.make_ds(origin, ours, "SHA256")


def test_rsa_with_a_long_exponent_uses_the_three_octet_length() -> None:
    """RFC 3110 2: an exponent over 255 octets has a zero octet, then a two-octet length."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    modulus = (1 << 4095) | 1
    exponent = (1 << 2100) | 1  # 263 octets; the numbers need not make a usable key here
    public = rsa.RSAPublicNumbers(exponent, modulus)
    field = keyrecords.public_key_field(_Numbers(public))  # type: ignore[arg-type]
    assert field[:3] == b"\0\x01\x07" and len(field) == 3 + 263 + 512


class _Numbers:
    """Stands in for an RSA public key whose numbers cryptography would not accept."""

    def __init__(self, numbers: object) -> None:
        self.numbers = numbers

    def public_numbers(self) -> object:
        return self.numbers


def test_the_signer_and_the_key_tool_import_no_dnspython_dsa() -> None:
    """-W error: any warning at import fails the import."""
    code = ("import sys, healthdns.signer.main, healthdns.signer.keytool; "
            "print(sorted(m for m in sys.modules if m.startswith('dns.dnssec')))")
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True,
                          text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "['dns.dnssectypes']\n"
