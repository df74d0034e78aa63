"""Command line: healthdns's own flags, and a-healthy-dns's flags with the same meaning."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import re
from collections.abc import Callable
from importlib import resources
from typing import Any

from healthdns.shared import command, config, logs
from healthdns.shared.config import LOG_FORMATS, LOG_LEVELS, Config
from healthdns.shared.errors import ConfigError

COMPAT_ONLY = ("alias_zones", "zone_resolutions", "ns", "test_min_interval", "test_timeout",
               "priv_key_path", "priv_key_alg")


def parser() -> argparse.ArgumentParser:
    p = command.standard(argparse.ArgumentParser(
        prog="healthdns-supervisor",
        description="Health-checking authoritative DNS server.",
    ), 'docs/configuration.md (every option, and the a-healthy-dns flags); docs/operations.md, '
       '"Signals", "Logs", "Exit codes", "systemd"')
    source = p.add_argument_group("configuration (one of)")
    command.path(source.add_argument("--config", metavar="PATH", help="TOML configuration file"))
    source.add_argument("--demo", action="store_true",
                        help="serve the built-in demo zone on 127.0.0.1:53053")
    p.add_argument("--check-config", action="store_true",
                   help="validate, print the normalised configuration, exit 0 or 1")
    p.add_argument("--responders", type=int, metavar="N",
                   help="responder processes (default: number of CPUs)")
    p.add_argument("--listen", action="append", metavar="ADDR[:PORT]",
                   help="address to serve on, repeatable (default: all interfaces)")
    p.add_argument("--port", type=int, help="default port (default: 53053)")
    p.add_argument("--log-level", choices=LOG_LEVELS, help="log verbosity (default: info)")
    p.add_argument("--log-format", choices=LOG_FORMATS,
                   help="text lines or one JSON object a line (default: text)")
    p.add_argument("--instance", metavar="NAME",
                   help="name shown in every process title, to tell servers on one host apart")
    p.add_argument("--user", metavar="NAME",
                   help="started as root, run every process as this user (server.user)")
    p.add_argument("--group", metavar="NAME",
                   help="with --user, this group instead of the user's own (server.group)")
    p.add_argument("--control-listen", metavar="ADDR:PORT",
                   help='control endpoint (metrics, status, overrides; default: '
                   f'{config.DEFAULT_CONTROL}; "" turns it off)')
    p.add_argument("--replace", action="store_true",
                   help="join the listen ports of a running healthdns (SO_REUSEPORT) instead "
                   "of refusing busy ports: start the new server, wait until it is ready, "
                   "then stop the old one (a restart that loses no query)")
    compat = p.add_argument_group("a-healthy-dns compatible flags")
    compat.add_argument("--hosted-zone", help="the zone served")
    compat.add_argument("--alias-zones", metavar="JSON", help="JSON array of alias zones")
    compat.add_argument("--zone-resolutions", metavar="JSON",
                        help='JSON object: name -> ["ip", ...] or {"ips": [...], '
                        '"health_port": P}')
    compat.add_argument("--ns", metavar="JSON", help="JSON array of nameserver FQDNs")
    compat.add_argument("--test-min-interval", type=float, metavar="SECONDS",
                        help="seconds between checks of one address (default: 30)")
    compat.add_argument("--test-timeout", type=float, metavar="SECONDS",
                        help="TCP connect timeout of a check (default: 2)")
    command.path(compat.add_argument("--priv-key-path", metavar="PATH",
                                     help="DNSSEC private key (PEM)"))
    compat.add_argument("--priv-key-alg", metavar="ALG", help="DNSSEC algorithm")
    return p


def load(args: argparse.Namespace, warn: Callable[[str], None] | None = None) -> Config:
    """The configuration the flags describe; a ConfigError names the flag or field.

    Settings that work but are most likely mistakes go to `warn` (default: stderr), for
    `--check-config` and a start alike.
    """
    cfg = _load(args)
    for path, message in config.warnings(cfg):
        (warn or _warn)(str(flag_terms(ConfigError(path, message), args)))
    return cfg


def _warn(text: str) -> None:
    logging.getLogger("healthdns.config").warning("configuration warning: %s", text)


def log_before_start(args: argparse.Namespace) -> None:
    """What the supervisor (or its configuration check) says before its server's logging
    starts, Python's warnings included, goes to stderr as records in the format it will log
    in (`healthdns-supervisor: ...` lines in text)."""
    logs.capture_warnings()
    logs.setup_command("supervisor", "healthdns-supervisor", log_format(args))


def log_format(args: argparse.Namespace) -> str:
    """The log format the flags choose, or else the configuration file, or else text: known
    before the configuration is checked, so that even its errors are in that format."""
    if args.log_format is not None:
        return str(args.log_format)
    if args.config is None:
        return "text"
    try:
        chosen = config.read(args.config).get("server", {}).get("log_format")
    except (ConfigError, AttributeError):  # the check that follows says what is wrong
        return "text"
    return chosen if chosen in LOG_FORMATS else "text"


def _load(args: argparse.Namespace) -> Config:
    sources = [args.config is not None, args.demo, args.hosted_zone is not None]
    if sum(sources) != 1:
        raise ConfigError("", "give exactly one of --config PATH, --demo, or --hosted-zone "
                          "(with --zone-resolutions and --ns)")
    if args.hosted_zone is None:
        stray = [f"--{f.replace('_', '-')}" for f in COMPAT_ONLY if getattr(args, f) is not None]
        if stray:
            raise ConfigError(stray[0], "is an a-healthy-dns flag: it goes with --hosted-zone "
                              "(with --config, set it in the file)")
    if args.config is not None:
        document = config.read(args.config)
    elif args.demo:
        document = _demo_document()
    else:
        document = compat_document(args)
    try:
        return config.from_mapping(_overrides(document, args))
    except ConfigError as e:
        raise flag_terms(e, args) from None


def _demo_document() -> dict[str, Any]:
    import tomllib

    text = resources.files("healthdns.shared").joinpath("demo.toml").read_text()
    return tomllib.loads(text)


def _overrides(document: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    server = dict(document.get("server", {}))
    for flag in _SERVER_FLAGS:
        value = getattr(args, flag)
        if value is not None:
            server[flag] = value
    out = {**document, "server": server}
    if args.control_listen is not None:
        out["control"] = {**document.get("control", {}), "listen": args.control_listen}
    return out


# --- a-healthy-dns ------------------------------------------------------------------------------


def compat_document(args: argparse.Namespace) -> dict[str, Any]:
    """Translate a-healthy-dns's flags into a healthdns configuration document.

    TTLs follow a-healthy-dns: A records live twice the check interval, NS and SOA 30 times
    that, negative answers as long as A records.
    """
    for flag in ("zone_resolutions", "ns"):
        if getattr(args, flag) is None:
            raise ConfigError(f"--{flag.replace('_', '-')}", "is required with --hosted-zone")
    interval = 30.0 if args.test_min_interval is None else args.test_min_interval
    timeout = 2.0 if args.test_timeout is None else args.test_timeout
    if interval <= 0:
        raise ConfigError("--test-min-interval", f"{interval:g} is not positive")
    if timeout <= 0:
        raise ConfigError("--test-timeout", f"{timeout:g} is not positive")
    a_ttl = max(1, int(2 * interval))
    ns_ttl = 30 * a_ttl
    resolutions = _json(args.zone_resolutions, "--zone-resolutions", dict)
    records = {name: _resolution(name, value, interval, max(timeout, 0), a_ttl)
               for name, value in resolutions.items()}
    if not records:
        raise ConfigError("--zone-resolutions", "at least one name is required")
    zone: dict[str, Any] = {
        "origin": args.hosted_zone,
        "aliases": _json(args.alias_zones or "[]", "--alias-zones", list),
        "nameservers": _json(args.ns, "--ns", list),
        "ttl": a_ttl,
        "ns_ttl": ns_ttl,
        # Not a-healthy-dns's refresh/retry/expire (10, 1 and 5 times A: expire below refresh,
        # which Zonemaster flags): secondaries copy the zone on their own schedule, unrelated
        # to the check interval, so they get the TOML defaults (RFC 1912 ranges).
        "soa": {"ttl": ns_ttl, "minimum": a_ttl},
        "records": records,
    }
    if args.priv_key_path is not None:
        # One combined signing key for the zone and its aliases; a-healthy-dns's default
        # algorithm is RSASHA256.
        zone["dnssec"] = {"csk": args.priv_key_path,
                          "algorithm": _algorithm(args.priv_key_alg or "RSASHA256")}
    elif args.priv_key_alg is not None:
        _algorithm(args.priv_key_alg)
    return {"zones": [zone]}


_SERVER_FLAGS = ("responders", "listen", "port", "log_level", "log_format", "instance", "user",
                 "group")
_NAME = r'("[^"]*"|[^.\[\s:]+)'  # a record key in a path, quoted when it has dots
# The paths of the document compat_document() builds, and the flags they come from.
_COMPAT_PATHS = (
    (rf"zones\[0\]\.records\.{_NAME}\.pool\.check\.interval", "--test-min-interval"),
    (rf"zones\[0\]\.records\.{_NAME}\.pool\.check\.timeout", "--test-timeout"),
    (rf"zones\[0\]\.records\.{_NAME}\.pool\.check\.port", r"--zone-resolutions.\1.health_port"),
    (rf"zones\[0\]\.records\.{_NAME}\.pool\.addresses", r"--zone-resolutions.\1.ips"),
    (rf"zones\[0\]\.records\.{_NAME}\.a\b", r"--zone-resolutions.\1"),
    (rf"zones\[0\]\.records\.{_NAME}\.ttl\b", "--test-min-interval"),  # TTLs derive from it
    (r"zones\[0\]\.records\b", "--zone-resolutions"),
    (r"zones\[0\]\.(ttl|ns_ttl|soa\.ttl|soa\.minimum)\b", "--test-min-interval"),
    (r"zones\[0\]\.soa\.rname\b", "--hosted-zone"),  # hostmaster.<the zone>
    (r"zones\[0\]\.origin\b", "--hosted-zone"),
    (r"zones\[0\]\.aliases\b", "--alias-zones"),
    (r"zones\[0\]\.nameservers\b", "--ns"),
    (r"zones\[0\]\.dnssec\.csk\b", "--priv-key-path"),
    (r"zones\[0\]\.dnssec\.algorithm\b", "--priv-key-alg"),
)


def flag_terms(error: ConfigError, args: argparse.Namespace) -> ConfigError:
    """`error` in terms of the flags the user typed: a value that came from a flag is named
    by that flag (`--port`, `--test-min-interval`), not by the config path it was put at."""
    rules = [(rf"server\.{f}(\[\d+\])?", f"--{f.replace('_', '-')}")
             for f in _SERVER_FLAGS if getattr(args, f) is not None]
    if args.control_listen is not None:
        rules.append((r"control\.listen", "--control-listen"))
    if args.hosted_zone is not None:
        rules += _COMPAT_PATHS

    def translate(text: str, anchored: bool) -> str:
        for pattern, flag in rules:
            text, found = re.subn(("^" if anchored else r"(?<![\w.\[])") + pattern, flag, text,
                                  count=1)
            if found and anchored:
                break
        return text

    path, message = translate(error.path, True), translate(error.message, False)
    if (path, message) == (error.path, error.message):
        return error
    return ConfigError(path, message)


def _resolution(name: str, value: Any, interval: float, timeout: float,
                ttl: int) -> dict[str, Any]:
    # Quoted when it has dots, as config paths quote record keys.
    key = name if re.fullmatch(r"[A-Za-z0-9_@-]+", name) else json.dumps(name)
    path = f"--zone-resolutions.{key}"
    if isinstance(value, list):
        return {"a": _ipv4s(value, path), "ttl": ttl}
    if not isinstance(value, dict):
        raise ConfigError(path, f"{_show(value)} is neither a list of IPs nor "
                          '{"ips": [...], "health_port": P}')
    unknown = sorted(set(value) - {"ips", "health_port"})
    if unknown:
        raise ConfigError(path, f"unknown key {unknown[0]!r} (expected ips and health_port)")
    for key in ("ips", "health_port"):
        if key not in value:
            raise ConfigError(path, f"{key!r} is required")
    port = value["health_port"]
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ConfigError(f"{path}.health_port", f"{_show(port)} is not a port (1-65535)")
    if not isinstance(value["ips"], list):
        raise ConfigError(f"{path}.ips", f"{_show(value['ips'])} is not a list of IPv4 "
                          "addresses")
    check = {"port": port, "interval": interval, "timeout": min(timeout, interval)}
    return {"pool": {"addresses": _ipv4s(value["ips"], f"{path}.ips"), "check": check},
            "ttl": ttl}


def _ipv4s(values: list[Any], path: str) -> list[str]:
    if not values:
        raise ConfigError(path, "at least one IP is required")
    for i, value in enumerate(values):
        try:
            ipaddress.IPv4Address(value if isinstance(value, str) else "")  # not 1 or true
        except ValueError:
            raise ConfigError(f"{path}[{i}]", f"{_show(value)} is not an IPv4 address") from None
    return list(values)


def _show(value: Any) -> str:
    """A value from the flags' JSON as the user wrote it: null and true, not None and True
    (strings keep the quotes every other message uses)."""
    return repr(value) if isinstance(value, str) else json.dumps(value)


def _json(text: str, flag: str, kind: type) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(flag, f"not valid JSON: {e}") from None
    if not isinstance(value, kind):
        raise ConfigError(flag, f"expected a JSON {'array' if kind is list else 'object'}, "
                          f"got {text!r}")
    return value


def _algorithm(name: str) -> str:
    """A DNSSEC algorithm name, as a-healthy-dns takes it, that healthdns signs with."""
    import dns.dnssectypes  # only a check needs it (see supervisor/validate.py)
    import dns.exception

    try:
        algorithm = dns.dnssectypes.Algorithm.from_text(name.upper())
    except (dns.exception.DNSException, ValueError):
        raise ConfigError("--priv-key-alg", f"{name!r} is not a DNSSEC algorithm") from None
    if algorithm.name not in config.ALGORITHMS:
        raise ConfigError("--priv-key-alg", f"{algorithm.name} is not supported; use one of "
                          f"{', '.join(config.ALGORITHMS)}")
    return algorithm.name
