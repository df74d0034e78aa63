"""Zone transfers (AXFR/IXFR, NOTIFY to the secondaries) and the TSIG keys that sign them."""

from __future__ import annotations

import msgspec

from healthdns.shared import files, tsigkeys
from healthdns.shared.config.endpoints import Endpoint, format_endpoint, parse_endpoint
from healthdns.shared.config.names import absolute_name
from healthdns.shared.config.server import ServerSpec
from healthdns.shared.config.values import (
    Frozen,
    canonical_address,
    check_one_of,
    ip_networks,
    refuse_normalised_fields,
    within,
)
from healthdns.shared.errors import ConfigError


class TsigKeySpec(Frozen, frozen=True):
    """A TSIG key (RFC 8945): inline, or read from a tsig-keygen/keymgr file (docs: `[[tsig]]`)."""

    name: str = ""  # normalised: lower case, no final dot; with `file`, may pick one key of it
    algorithm: str = "hmac-sha256"
    secret: str = ""  # base64; normalised: the file's secret when `file` is given
    file: str = ""


class SecondarySpec(Frozen, frozen=True):
    """A secondary fed by transfers: sent NOTIFY, and allowed to transfer from its address."""

    address: str  # ADDR[:PORT] its NOTIFY goes to (port 53 by default); normalised ADDR:PORT
    key: str = ""  # TSIG key name its transfers and the NOTIFY sent to it are signed with
    notify: bool = True
    # Set by normalisation, never in the file: `address` parsed.
    endpoint: Endpoint = Endpoint("", 0)


class TransferRuleSpec(Frozen, frozen=True):
    """Who else may transfer: clients in `networks` signing with `key` (docs: ACLs)."""

    networks: tuple[str, ...] = ()  # e.g. "192.0.2.0/24", "2001:db8::/32"; normalised
    key: str = ""  # TSIG key name required; "" only with `require_tsig = false`


class TransferSpec(Frozen, frozen=True):
    """The hidden primary: AXFR/IXFR on its own TCP listener, NOTIFY to the secondaries."""

    listen: tuple[str, ...] = ()  # ADDR:PORT of the transfer server; none: transfers are off
    secondaries: tuple[SecondarySpec, ...] = ()
    allow: tuple[TransferRuleSpec, ...] = ()
    require_tsig: bool = True  # every secondary and rule must name a key
    notify_source: str = ""  # the address NOTIFY is sent from ("": the kernel's choice)
    notify_retries: int = 5  # NOTIFY resends without an answer, the wait doubling each time
    notify_timeout: float = 1.0  # seconds before the first resend
    journal: int = 100  # IXFR diffs kept per zone; older serials get an AXFR (RFC 1995 4)
    max_connections: int = 64
    idle_timeout: float = 10.0
    # The TTL a pool's addresses are transferred with where their TTL follows health: "max"
    # (the TTL they are signed with) or "min". A secondary holds one TTL between transfers.
    ttl: str = "max"
    # Set by normalisation, never in the file: `listen` parsed.
    listeners: tuple[Endpoint, ...] = ()

    def enabled(self) -> bool:
        return bool(self.listen)

    def endpoints(self) -> list[Endpoint]:
        return list(self.listeners)


def normalise_tsig(raw: list[TsigKeySpec]) -> tuple[TsigKeySpec, ...]:
    """Each key with its name checked and its secret in hand (read from its file if given)."""
    keys: list[TsigKeySpec] = []
    for i, key in enumerate(raw):
        path = f"tsig[{i}]"
        keys.append(_tsig_file(key, path) if key.file else _tsig_inline(key, path))
    seen: dict[str, str] = {}
    for i, key in enumerate(keys):
        if key.name in seen:
            raise ConfigError(f"tsig[{i}].name", f"{key.name!r} is already defined by "
                              f"{seen[key.name]}")
        seen[key.name] = f"tsig[{i}]"
    return tuple(keys)


def _tsig_inline(key: TsigKeySpec, path: str) -> TsigKeySpec:
    if not key.name:
        raise ConfigError(f"{path}.name", "a key needs a name")
    if not key.secret:
        raise ConfigError(path, "a key needs a secret (base64) or a file")
    return _tsig_checked(key.name, key.algorithm, key.secret, path)


def _tsig_file(key: TsigKeySpec, path: str) -> TsigKeySpec:
    if key.secret:
        raise ConfigError(f"{path}.secret", "give the secret or a file, not both")
    try:
        text = files.read(key.file, tsigkeys.MAX_KEY_FILE).data.decode()
        found = tsigkeys.parse_file(text)
    except files.FileProblem as e:
        raise ConfigError(f"{path}.file", e.reason) from e
    except (UnicodeDecodeError, tsigkeys.KeyTextError) as e:
        raise ConfigError(f"{path}.file", f"{key.file}: {e}") from e
    wanted = [k for k in found if not key.name or _key_name(k[0], path) ==
              _key_name(key.name, f"{path}.name")]
    if not wanted:
        raise ConfigError(f"{path}.name", f"{key.file} holds no key {key.name!r} (it holds "
                          f"{', '.join(repr(k[0]) for k in found)})")
    if len(wanted) > 1:
        raise ConfigError(f"{path}.name", f"{key.file} holds several keys: name the one to use")
    name, algorithm, secret = wanted[0]
    return msgspec.structs.replace(_tsig_checked(name, algorithm, secret, path), file=key.file)


def _tsig_checked(name: str, algorithm: str, secret: str, path: str) -> TsigKeySpec:
    try:
        algorithm = tsigkeys.algorithm(algorithm)
    except tsigkeys.KeyTextError as e:
        raise ConfigError(f"{path}.algorithm", str(e)) from None
    try:
        tsigkeys.secret(secret)
    except tsigkeys.KeyTextError as e:
        raise ConfigError(f"{path}.secret", str(e)) from None
    return TsigKeySpec(name=_key_name(name, f"{path}.name"), algorithm=algorithm, secret=secret)


def _key_name(text: str, path: str) -> str:
    return absolute_name(text, path).to_text(omit_final_dot=True).lower()


def normalise_transfer(raw: TransferSpec, server: ServerSpec,
              keys: tuple[TsigKeySpec, ...]) -> TransferSpec:
    refuse_normalised_fields(raw, ("listeners",), "transfer")
    known = {k.name for k in keys}
    listeners = tuple(parse_endpoint(e, 53, f"transfer.listen[{i}]")
                      for i, e in enumerate(raw.listen))
    listen = tuple(format_endpoint(*e) for e in listeners)
    served = {(h, p) for h, p, _ in server.endpoints()}
    for i, (host, port) in enumerate(listeners):
        if port and any(p == port and (h == host or h in ("0.0.0.0", "::") or
                              host in ("0.0.0.0", "::")) for h, p in served):
            raise ConfigError(f"transfer.listen[{i}]", f"{listen[i]} is also where the "
                              "responders listen: transfers need an address or port of their "
                              "own")
    secondaries = tuple(_secondary(s, raw.require_tsig, known, f"transfer.secondaries[{i}]")
                        for i, s in enumerate(raw.secondaries))
    allow = tuple(_transfer_rule(r, raw.require_tsig, known, f"transfer.allow[{i}]")
                  for i, r in enumerate(raw.allow))
    if raw.notify_source:
        canonical_address(raw.notify_source, "transfer.notify_source")
    within(raw.notify_retries, 0, 20, "transfer.notify_retries")
    within(raw.notify_timeout, 0.01, 60, "transfer.notify_timeout", " seconds")
    within(raw.journal, 0, 100_000, "transfer.journal")
    within(raw.max_connections, 1, 65536, "transfer.max_connections")
    within(raw.idle_timeout, 0.1, 3600, "transfer.idle_timeout", " seconds")
    check_one_of(raw.ttl, ("max", "min"), "transfer.ttl")
    if (secondaries or allow) and not listen:
        raise ConfigError("transfer.listen", "secondaries or allow rules are given, but no "
                          "address to serve transfers on")
    return msgspec.structs.replace(raw, listen=listen, listeners=listeners,
                                   secondaries=secondaries, allow=allow)


def _secondary(raw: SecondarySpec, require_tsig: bool, known: set[str],
               path: str) -> SecondarySpec:
    refuse_normalised_fields(raw, ("endpoint",), path)
    endpoint = parse_endpoint(raw.address, 53, f"{path}.address")
    return msgspec.structs.replace(raw, address=format_endpoint(*endpoint), endpoint=endpoint,
                                   key=_transfer_key(raw.key, require_tsig, known, path))


def _transfer_rule(raw: TransferRuleSpec, require_tsig: bool, known: set[str],
                   path: str) -> TransferRuleSpec:
    if not raw.networks:
        raise ConfigError(f"{path}.networks", "a rule needs at least one network "
                          '(e.g. "192.0.2.0/24"; "0.0.0.0/0" and "::/0" for any)')
    return TransferRuleSpec(networks=ip_networks(raw.networks, f"{path}.networks"),
                            key=_transfer_key(raw.key, require_tsig, known, path))


def _transfer_key(name: str, require_tsig: bool, known: set[str], path: str) -> str:
    if not name:
        if require_tsig:
            raise ConfigError(f"{path}.key", "a TSIG key is required (transfer.require_tsig); "
                              "name a [[tsig]] key")
        return ""
    normal = _key_name(name, f"{path}.key")
    if normal not in known:
        raise ConfigError(f"{path}.key", f"{name!r} is not a [[tsig]] key"
                          + (f" (known: {', '.join(sorted(known))})" if known else ""))
    return normal
