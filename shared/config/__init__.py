"""The configuration model: decoded once by the supervisor, sent to every child encoded.

Two layers, as Knot Resolver's manager does it:

* the *raw* layer is what a TOML file (or the a-healthy-dns flags) says, decoded by msgspec into
  structs that reject unknown keys;
* the *normalised* layer (`Config`) is what every role works from: names lower-cased and checked,
  addresses in canonical form, defaults filled in, conflicts rejected, and what the roles would
  otherwise parse again stored parsed (endpoints, check status ranges) beside its text.

Every error is a `ConfigError` whose text starts with the path of the bad field, e.g.
``zones[0].records.www.check.port: 70000 is not a port (1-65535)``.

One module per section, each struct beside the function that normalises it:

* `document`: `Config`, and reading (`load`, `read`, `from_mapping`), `encode`/`decode` for the
  children and `redacted` for a person;
* `server`, `control`, `guard` (RRL and cookies), `prober`, `transfer` (with the TSIG keys),
  `peers` (several sites deciding health together): the sections of the same names;
* `zones` (zones, SOA, the records of an owner name), `pools` (address pools and their
  failover groups), `checks` (how an address is checked), `rdata` (static record data),
  `dnssec` (signing a zone);
* `values` (the frozen base and the checks of numbers every section uses), `names` (DNS
  names), `endpoints` ("ADDR:PORT" text and its parsed form);
* `advice`: settings that work but are most likely a mistake (`warnings`);
* `decodeerrors` (msgspec's errors in the file's words), `filekeys` (file paths in the file
  made absolute under its folder).

This package re-exports every name the roles use: `from healthdns.shared.config import X`.
"""

from __future__ import annotations

from healthdns.shared.config.advice import warnings
from healthdns.shared.config.checks import DEFAULT_CHECK_PORTS, MAX_CA_FILE, CheckSpec
from healthdns.shared.config.control import (
    DEFAULT_CONTROL,
    MAX_PEM_FILE,
    MAX_TOKEN_FILE,
    MIN_TOKEN,
    ControlSpec,
)
from healthdns.shared.config.dnssec import ALGORITHMS, DnssecSpec, PolicySpec
from healthdns.shared.config.document import (
    MAX_CONFIG_FILE,
    Config,
    TsigKey,
    decode,
    encode,
    from_mapping,
    load,
    read,
    redacted,
)
from healthdns.shared.config.endpoints import Endpoint, format_endpoint, parse_endpoint
from healthdns.shared.config.guard import RRL_DEFAULT_RATE, CookieSpec, RrlSpec
from healthdns.shared.config.names import absolute_name
from healthdns.shared.config.peers import PeerSpec, PeersSpec
from healthdns.shared.config.pools import (
    MAX_ANSWERS,
    MAX_WEIGHT,
    POLICIES,
    GroupSpec,
    PoolSpec,
    TtlRange,
)
from healthdns.shared.config.prober import (
    CHECK_SLACK,
    FILES_KEPT,
    PARALLEL_FLOOR,
    PARALLEL_MAX,
    ProberSpec,
    file_room,
    in_flight,
    parallel_for,
)
from healthdns.shared.config.rdata import STATIC_TYPES
from healthdns.shared.config.server import (
    DEFAULT_PORT,
    HUNG_AFTER_MIN,
    LOG_FORMATS,
    LOG_LEVELS,
    REPORT_PERIOD,
    ServerSpec,
)
from healthdns.shared.config.transfer import (
    SecondarySpec,
    TransferRuleSpec,
    TransferSpec,
    TsigKeySpec,
)
from healthdns.shared.config.values import MAX_TTL
from healthdns.shared.config.zones import RecordSpec, SoaSpec, ZoneSpec
from healthdns.shared.errors import ConfigError

__all__ = [
    "ALGORITHMS", "CHECK_SLACK", "DEFAULT_CHECK_PORTS", "DEFAULT_CONTROL", "DEFAULT_PORT",
    "FILES_KEPT", "HUNG_AFTER_MIN", "LOG_FORMATS", "LOG_LEVELS", "MAX_ANSWERS", "MAX_CA_FILE",
    "MAX_CONFIG_FILE", "MAX_PEM_FILE", "MAX_TOKEN_FILE", "MAX_TTL", "MAX_WEIGHT", "MIN_TOKEN",
    "PARALLEL_FLOOR", "PARALLEL_MAX", "POLICIES", "REPORT_PERIOD", "RRL_DEFAULT_RATE",
    "STATIC_TYPES", "CheckSpec", "Config", "ConfigError", "ControlSpec", "CookieSpec",
    "DnssecSpec", "Endpoint", "GroupSpec", "PeerSpec", "PeersSpec", "PolicySpec", "PoolSpec",
    "ProberSpec", "RecordSpec", "RrlSpec", "SecondarySpec", "ServerSpec", "SoaSpec",
    "TransferRuleSpec", "TransferSpec", "TsigKey", "TsigKeySpec", "TtlRange", "ZoneSpec",
    "absolute_name", "decode", "encode", "file_room",
    "format_endpoint", "from_mapping", "in_flight", "load", "parallel_for", "parse_endpoint",
    "read", "redacted", "warnings",
]
