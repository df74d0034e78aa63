"""DNSSEC signing of a zone: its algorithm, keys, denial of existence and timings."""

from __future__ import annotations

from healthdns.shared.config.endpoints import parse_endpoint
from healthdns.shared.config.values import Frozen, check_one_of, check_ttl, within
from healthdns.shared.errors import ConfigError

ALGORITHMS = ("ECDSAP256SHA256", "ED25519", "ECDSAP384SHA384", "RSASHA256")
YEAR = 366 * 86400


class PolicySpec(Frozen, frozen=True):
    """Keys the signer makes and rolls itself (docs/operations.md, "Automatic key rolls").

    The algorithm is the zone's (`dnssec.algorithm`). Times in seconds; a lifetime of 0 never
    rolls that key by itself. The RFC 7583 names: `propagation` is Dprp (until every name
    server of the zone serves what the signer published), `parent_propagation` DprpP and
    `ds_ttl` TTLds (the parent's).
    """

    csk: bool = False  # one combined signing key; else a KSK and a ZSK
    zsk_lifetime: int = 90 * 86400
    ksk_lifetime: int = 0  # a KSK (or CSK) roll needs the parent: off unless asked for
    csk_lifetime: int = 0
    propagation: int = 300
    ds_ttl: int = 86400
    parent_propagation: int = 3600
    # The parent's name servers ("ADDR" or "ADDR:PORT") asked whether they serve a DS; empty:
    # those of the parent zone, found by DNS.
    parent_nameservers: tuple[str, ...] = ()
    check_interval: int = 3600  # how often the parent is asked while a roll waits for it
    # Take the zone to unsigned, safely: the delete CDS and CDNSKEY (RFC 8078 4) are served,
    # signed, until no parent name server serves a DS and the DS TTL has passed.
    insecure: bool = False

    def lifetime(self, role: str) -> int:
        return {"zsk": self.zsk_lifetime, "ksk": self.ksk_lifetime,
                "csk": self.csk_lifetime}[role]

    def roles(self) -> tuple[str, ...]:
        return ("csk",) if self.csk else ("ksk", "zsk")


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
    # With a policy the signer makes, keeps and rolls the keys in `key_dir` (mode 700, its
    # files 600), with each roll's state; no key file is named then.
    key_dir: str | None = None
    policy: PolicySpec | None = None

    def key_files(self) -> list[tuple[str, str]]:
        """(role, path) of every key named in the configuration: csk, or ksk then zsk (none
        under a policy: the signer keeps those in `key_dir`)."""
        if self.policy is not None:
            return []
        if self.csk is not None:
            return [("csk", self.csk)]
        assert self.ksk is not None and self.zsk is not None
        return [("ksk", self.ksk), ("zsk", self.zsk)]


def normalise_dnssec(raw: DnssecSpec, path: str) -> DnssecSpec:
    check_one_of(raw.algorithm, ALGORITHMS, f"{path}.algorithm")
    check_one_of(raw.denial, ("nsec", "nsec3"), f"{path}.denial")
    if raw.policy is not None or raw.key_dir is not None:
        _check_policy(raw, path)
    else:
        _check_key_files(raw, path)
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


def _check_key_files(raw: DnssecSpec, path: str) -> None:
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


def _check_policy(raw: DnssecSpec, path: str) -> None:
    if raw.policy is None:
        raise ConfigError(f"{path}.key_dir", "is only for keys the signer makes: add "
                          f"[{_table(path)}.policy], or name the key files (csk, or ksk and zsk)")
    if not raw.key_dir:
        raise ConfigError(f"{path}.key_dir", "is required with a policy: the folder where the "
                          "signer keeps the keys it makes and the state of their rolls")
    for role in ("csk", "ksk", "zsk"):
        if getattr(raw, role) is not None:
            raise ConfigError(f"{path}.{role}", "names a key file, but under a policy the "
                              "signer makes its keys in key_dir: remove one or the other")
    if raw.publish:
        raise ConfigError(f"{path}.publish", "is for rolling keys by hand; under a policy the "
                          "signer publishes the keys of its rolls itself")
    policy, where = raw.policy, f"{path}.policy"
    for role in ("zsk", "ksk", "csk"):
        lifetime = policy.lifetime(role)
        if lifetime != 0:
            within(lifetime, 10, 10 * YEAR, f"{where}.{role}_lifetime", " s (0: never rolled)")
    unused = ("zsk", "ksk") if policy.csk else ("csk",)
    for role in unused:
        if policy.lifetime(role) != (90 * 86400 if role == "zsk" else 0):
            kind = "csk = true: one combined key" if policy.csk else "csk = false: a KSK and ZSK"
            raise ConfigError(f"{where}.{role}_lifetime", f"is for another kind of key ({kind})")
    within(policy.propagation, 0, 7 * 86400, f"{where}.propagation", " s")
    check_ttl(policy.ds_ttl, f"{where}.ds_ttl")
    within(policy.parent_propagation, 0, 7 * 86400, f"{where}.parent_propagation", " s")
    within(policy.check_interval, 1, 86400, f"{where}.check_interval", " s")
    for i, server in enumerate(policy.parent_nameservers):
        parse_endpoint(server, 53, f"{where}.parent_nameservers[{i}]")


def check_roll_times(raw: DnssecSpec, max_ttl: int, path: str) -> None:
    """A key must live longer than its roll takes (RFC 7583): the new key is published one
    publication interval before it signs, the old one stays a retire interval after."""
    if raw.policy is None:
        return
    policy = raw.policy
    for role in policy.roles():
        lifetime = policy.lifetime(role)
        needed = 2 * (policy.propagation + max(raw.dnskey_ttl, max_ttl))
        if role != "zsk":
            needed += policy.ds_ttl + policy.parent_propagation
        if lifetime and lifetime <= needed:
            raise ConfigError(f"{path}.policy.{role}_lifetime", f"{lifetime} s is not longer "
                              f"than one roll takes ({needed} s from propagation, the TTLs"
                              f"{' and the parent' if role != 'zsk' else ''}): keys would "
                              "roll over each other")


def _table(path: str) -> str:
    return "zones.dnssec" if path.startswith("zones[") else path
