"""Each server kind's configuration and command line: healthdns, gdnsd, Knot, a-healthy-dns."""

from __future__ import annotations

import argparse
import json
import random
import subprocess
from pathlib import Path

from harness import HOST
from harness.servers import Server, free_port, healthdns_command, which
from harness.zone import NS, ZONE, Zone

REFERENCES = ("gdnsd", "knot")


def make_servers(args: argparse.Namespace, zone: Zone, root: Path,
                 rng: random.Random) -> tuple[list[Server], list[str]]:
    """The servers to run (one healthdns per responder count), and notes about skipped ones."""
    servers: list[Server] = []
    notes: list[str] = []
    ports: set[int] = set()
    skip = set(args.skip or ())

    command = healthdns_command(args.healthdns)
    if "healthdns" in skip:
        notes.append("healthdns skipped (--skip)")
    elif command is None:
        notes.append("healthdns skipped: healthdns-supervisor not found (give --healthdns PATH)")
    else:
        variants = [(count, cache) for count in args.responders_list
                    for cache in (args.packet_cache_list or [None])]
        for count, cache in variants:
            port = free_port(ports, rng)
            suffix = "" if cache is None else f"-c{cache}"
            workdir = root / f"healthdns-r{count}{suffix}"
            workdir.mkdir()
            config = workdir / "healthdns.toml"
            toml = zone.healthdns_toml(port, count, cache)
            if args.dnssec:
                toml += healthdns_dnssec(command, workdir)
            config.write_text(toml)
            control = free_port(ports, rng)  # each its own: the default port is one
            label = "healthdns"
            if len(args.responders_list) > 1:
                label += f" r={count}"
            if cache is not None and len(variants) > 1:
                label += f" cache={cache}"
            servers.append(Server(label, "healthdns",
                                  [command, "--config", str(config), "--log-level", "info",
                                   "--responders", str(count),
                                   "--control-listen", f"{HOST}:{control}"],
                                  port, workdir, ready_line="ready: serving", responders=count,
                                  control_port=control))

    for kind, binary, build in (("gdnsd", "gdnsd", gdnsd_server), ("knot", "knotd", knot_server),
                                ("a-healthy-dns", "a-healthy-dns", ahd_server)):
        path = which(binary)
        if kind in skip:
            notes.append(f"{kind} skipped (--skip)")
        elif args.dnssec and kind != "knot":
            notes.append(f"{kind} skipped: it does not sign (--dnssec)")
        elif path is None:
            if kind != "a-healthy-dns":
                notes.append(f"{kind} skipped: {binary} not found")
        else:
            workdir = root / kind
            workdir.mkdir()
            server = build(path, zone, free_port(ports, rng), workdir)
            if args.dnssec and kind == "knot":
                sign_knot(workdir)
            servers.append(server)
    return servers, notes


def healthdns_dnssec(command: str, workdir: Path) -> str:
    """A [zones.dnssec] table with an ECDSA P-256 key made by healthdns-key."""
    key = workdir / "csk.pem"
    tool = str(Path(command).parent / "healthdns-key")
    subprocess.run([tool, "generate", "--zone", ZONE, "--out", str(key)], check=True,
                   capture_output=True)
    return f'\n[zones.dnssec]\ncsk = "{key}"\n'


def sign_knot(workdir: Path) -> None:
    """Knot's automatic signing with the same algorithm and a single signing key."""
    conf = workdir / "knot.conf"
    text = conf.read_text().replace(
        "zone:\n",
        "policy:\n  - id: p\n    algorithm: ecdsap256sha256\n    single-type-signing: on\n"
        "zone:\n", 1)
    conf.write_text(text + "    dnssec-signing: on\n    dnssec-policy: p\n")


def gdnsd_server(binary: str, zone: Zone, port: int, workdir: Path) -> Server:
    (workdir / "zones").mkdir()
    (workdir / "config").write_text(f"options => {{ listen => [ {HOST}:{port} ] }}\n")
    (workdir / "zones" / ZONE).write_text(zone.zone_file())
    # gdnsd 3.x runs in the foreground by default; its old -f flag only prints a warning now.
    return Server("gdnsd", "gdnsd", [binary, "-c", str(workdir), "start"], port, workdir)


def knot_server(binary: str, zone: Zone, port: int, workdir: Path) -> Server:
    zone_path = workdir / f"{ZONE}.zone"
    zone_path.write_text(zone.zone_file())
    conf = workdir / "knot.conf"
    conf.write_text(
        "server:\n"
        f"  listen: {HOST}@{port}\n"
        f"  rundir: {workdir}\n"
        "database:\n"
        f"  storage: {workdir}\n"
        "log:\n"
        "  - target: stderr\n"
        "    any: info\n"
        "zone:\n"
        f"  - domain: {ZONE}\n"
        f"    file: {zone_path}\n"
        "    zonefile-sync: -1\n"
        "    journal-content: none\n"
    )
    return Server("knot", "knot", [binary, "-c", str(conf)], port, workdir)


def ahd_server(binary: str, zone: Zone, port: int, workdir: Path) -> Server:
    # a-healthy-dns answers only for healthy addresses; the documentation addresses here are not
    # reachable, so it is benchmarked but its answers are not held against the references.
    resolutions = {name: {"ips": list(addresses), "health_port": 80}
                   for name, addresses in zone.a_records()}
    argv = [binary, "--hosted-zone", ZONE, "--ns", json.dumps([NS]), "--port", str(port),
            "--zone-resolutions", json.dumps(resolutions)]
    return Server("a-healthy-dns", "a-healthy-dns", argv, port, workdir,
                  ready_probe=(ZONE, "SOA", None))

