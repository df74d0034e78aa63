"""DNSSEC signing of a zone: its algorithm, keys, denial of existence and timings."""

from __future__ import annotations

from healthdns.shared.config.values import Frozen, check_one_of, check_ttl
from healthdns.shared.errors import ConfigError

ALGORITHMS = ("ECDSAP256SHA256", "ED25519", "ECDSAP384SHA384", "RSASHA256")


class DnssecSpec(Frozen, frozen=True):
    """Signing of one zone (and its aliases): only the signer signs with the key files.

    One combined signing key (`csk`), or a `ksk` and a `zsk`. Times are in seconds.
    """

    algorithm: str = "ECDSAP256SHA256"
    csk: str | None = None
    ksk: str | None = None
    zsk: str | None = None
    allow_group_read: bool = False  # key files may be group-readable (mode 640; containers)
    denial: str = "nsec"  # or "nsec3" (RFC 9276: no salt, no extra iterations)
    cds: bool = False  # publish CDS and CDNSKEY at the apex (RFC 7344, 8078)
    dnskey_ttl: int = 3600
    validity: int = 14 * 86400  # signature lifetime
    refresh: int = 7 * 86400  # re-sign when less than this is left
    inception_offset: int = 3600  # inception this far in the past (clock skew)
    # Keys whose DNSKEY is published but that sign nothing: a key rollover's new key before
    # it signs, or its old key after (see docs/operations.md, "Rolling a DNSSEC key").
    publish: tuple[str, ...] = ()

    def key_files(self) -> list[tuple[str, str]]:
        """(role, path) of every key: csk, or ksk then zsk."""
        if self.csk is not None:
            return [("csk", self.csk)]
        assert self.ksk is not None and self.zsk is not None
        return [("ksk", self.ksk), ("zsk", self.zsk)]


def normalise_dnssec(raw: DnssecSpec, path: str) -> DnssecSpec:
    check_one_of(raw.algorithm, ALGORITHMS, f"{path}.algorithm")
    check_one_of(raw.denial, ("nsec", "nsec3"), f"{path}.denial")
    if raw.csk is not None and (raw.ksk is not None or raw.zsk is not None):
        raise ConfigError(path, "give either csk, or ksk and zsk, not both")
    if raw.csk is None and (raw.ksk is None or raw.zsk is None):
        raise ConfigError(path, "give a key: csk, or both ksk and zsk")
    for role, file in raw.key_files():
        if not file:
            raise ConfigError(f"{path}.{role}", "is empty: give the path of a PEM key file")
    signing = {file for _, file in raw.key_files()}
    for i, file in enumerate(raw.publish):
        if not file:
            raise ConfigError(f"{path}.publish[{i}]", "is empty: give the path of a PEM key file")
        if file in signing or file in raw.publish[:i]:
            raise ConfigError(f"{path}.publish[{i}]", f"{file} is named twice: a key either "
                              "signs or is only published, once")
    check_ttl(raw.dnskey_ttl, f"{path}.dnskey_ttl")
    if not 3600 <= raw.validity <= 366 * 86400:
        raise ConfigError(f"{path}.validity", f"{raw.validity} is not between 3600 and "
                          f"{366 * 86400} s")
    if not 0 < raw.refresh < raw.validity:
        raise ConfigError(f"{path}.refresh", f"{raw.refresh} must be positive and less than "
                          f"the validity ({raw.validity} s)")
    if not 0 <= raw.inception_offset <= 86400:
        raise ConfigError(f"{path}.inception_offset",
                          f"{raw.inception_offset} is not between 0 and 86400 s")
    return raw
