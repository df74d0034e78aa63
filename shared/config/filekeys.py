"""The keys of a configuration file that name other files, resolved against its folder.

A relative path in the file (a DNSSEC key, a TSIG key file, a CA bundle, the control token and
state files) means the same file wherever healthdns is started from: systemd starts services in
`/`, a shell wherever it is. So it is read relative to the folder of the configuration file.
Absolute paths, empty values and values of the wrong type are left for validation to judge.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

# Keys of [control] that name files, besides those ending in "_file" (a TLS certificate and key).
CONTROL_FILES = ("cert", "key")
DNSSEC_FILES = ("csk", "ksk", "zsk", "key_dir")


def resolve(document: dict[str, Any], folder: str) -> dict[str, Any]:
    """`document` with every relative file path made absolute under `folder` (in place)."""
    def under(value: Any) -> Any:
        if isinstance(value, str) and value and not os.path.isabs(value):
            return os.path.normpath(os.path.join(folder, value))
        return value

    control = document.get("control")
    if isinstance(control, dict):
        _each(control, lambda k: k.endswith("_file") or k in CONTROL_FILES, under)
    peers = document.get("peers")
    if isinstance(peers, dict):
        _each(peers, lambda k: k.endswith("_file"), under)
        for peer in _tables(peers.get("peers")):
            _each(peer, lambda k: k == "secret_file", under)
    maps = document.get("maps")
    for spec in maps.values() if isinstance(maps, dict) else ():
        if isinstance(spec, dict):
            _each(spec, lambda k: k == "database", under)
    for key in _tables(document.get("tsig")):
        _each(key, lambda k: k == "file", under)
    for zone in _tables(document.get("zones")):
        dnssec = zone.get("dnssec")
        if isinstance(dnssec, dict):
            _each(dnssec, lambda k: k in DNSSEC_FILES, under)
            if isinstance(dnssec.get("publish"), list):
                dnssec["publish"] = [under(v) for v in dnssec["publish"]]
        records = zone.get("records")
        for record in records.values() if isinstance(records, dict) else ():
            pool = record.get("pool") if isinstance(record, dict) else None
            if isinstance(pool, dict):
                sites = pool.get("sites")
                owners = [pool, *_tables(pool.get("groups"))]
                for site in sites.values() if isinstance(sites, dict) else ():
                    if isinstance(site, dict):
                        owners += [site, *_tables(site.get("groups"))]
                for owner in owners:
                    if isinstance(owner.get("check"), dict):
                        _each(owner["check"], lambda k: k == "ca_file", under)
    return document


def _each(table: dict[str, Any], named: Callable[[str], bool],
          change: Callable[[Any], Any]) -> None:
    for key in [k for k in table if named(k)]:
        table[key] = change(table[key])


def _tables(value: Any) -> list[dict[str, Any]]:
    """The tables of an array of tables (nothing for a value of another shape)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
