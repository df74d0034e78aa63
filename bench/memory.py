"""Memory at N signed names: RSS and PSS of every process of healthdns, Knot and gdnsd.

    python3 bench/memory.py [--names 10000] [--responders 2] [--skip knot,gdnsd]

healthdns serves the zone of bench/harness/zone.py with N extra names, signed with an ECDSA
P-256 key (NSEC); Knot signs the same zone itself (same algorithm, one key); gdnsd serves it
unsigned (it does not sign). Once each answers, the script reads /proc/PID/smaps_rollup of the
server and all its descendants. PSS splits each shared page between the processes that map it,
so the PSS total is what the server costs the machine; RSS counts shared pages in every process.
The target of issue #12: healthdns <= 150 MB (PSS total) at 10,000 signed names.

Measured on the shared 2-core development machine (MiB PSS, `--names 10000 --responders 2`,
`--skip knot,gdnsd`; each figure the same in two runs to 0.5 MiB; round 3: only the
supervisor's changes, measured beside main's code the same day, which gave 203.3 in all;
round 4: all of 2026-11-30's changes, two runs of the merged code, 147.1 and 147.0):

    process           round 1  round 2  round 3  round 4   what changed
    supervisor           53.3     36.2     27.3     27.4   r2: configuration and keys checked
                                                           in a process of its own; r3: control
                                                           endpoint on http.server (no aiohttp,
                                                           no asyncio); r4: no dnspython
    resource_tracker      6.7      6.6        -        -   r3: not started (RRL table: memfd)
    fork server             -      9.5     10.1     11.7   r2: new: imported a responder's code
    prober               17.7     12.3     12.5     13.0   r2: forked from the fork server
    signer               71.6     66.3     72.5     53.3   r2: forked; r4: compact caches
    responder (each)     38.2     31.0     31.0     20.8   r2: forked; r4: compact table
    total               224.6    192.7    184.5    147.0   (main's code on the day of r3:
                                                           203.3, its supervisor 39.1)

By lever, on the same day: round 1's code 220.0; the fork server alone 205.7; with the check
in its own process 192.7. Round 3, by lever: no aiohttp in the supervisor -11.8, no resource
tracker -6.9. Round 4 (from 184.5): the signer's caches -19 (72.5 to 53.3: shared RRsets,
wire names, flat cache entries, one object per equal body), the responders' tables -20 for
two (shared entry shapes, the message emptied as it is read, 1232-octet UDP send slots,
malloc_trim after a load, ANY answers derived), the supervisor without dnspython -1.5.
Knot 17, gdnsd 3 (unsigned) on the same day. Of the supervisor's 27 MiB, most are its imports
(`--imports`) and 3.1 the compressed snapshot (10.1 MB kept as 3.3 MB).

After a renewal of every signature (once per validity - refresh) the signer holds about
20 MiB more and each responder 5 to 10 (both generations were alive at once; see
docs/operations.md, "Memory").

    python3 bench/memory.py --imports

what each role costs before it holds any data: a fresh interpreter importing the role's main
module, alone (the floor of the spawn start method; the shared libraries' pages count in
full, where a running server splits them). Round 1: interpreter 5.1 (10.6), supervisor 42
(53), prober 18 (28), signer 28 (38), responder 18 (28), resource tracker 7 (13) MiB PSS
(RSS). Round 2: the supervisor 30 (43), as it no longer imports the key checks; round 3: 22
(31), as it no longer imports aiohttp and asyncio; the children
are forked from the fork server since, so their own floors are now what they import beyond a
responder's code. A running server adds its copy of the snapshot in the supervisor (10 MB
encoded), each responder's table (11.6 MB live) and the signer's state (25 MB live, at 10,000
signed names).

    python3 bench/memory.py --start-methods [--children 4]

compares what importing a responder's code costs per child with the spawn start method
(each child imports everything itself) and with forkserver preloading it (children share
the pages of a process that imported it once).
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness.kinds import gdnsd_server, healthdns_dnssec, knot_server, sign_knot
from harness.procfs import children, cmdline
from harness.servers import Server, free_port, healthdns_command, which
from harness.zone import Zone

PRELOAD = ["healthdns.responder.main", "healthdns.responder.server"]
START_DEADLINE = 300.0  # signing 10,000 names on a busy machine


def rollup(pid: int) -> dict[str, int]:
    """Rss and Pss (KiB) from /proc/PID/smaps_rollup; empty if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return {}
    return {key: int(value) for key, value in re.findall(r"^(Rss|Pss):\s+(\d+) kB", text,
                                                         re.MULTILINE)}


def descendants(pid: int) -> list[int]:
    found = [pid]
    for kid in children(pid):
        found.extend(descendants(kid))
    return found


def measure(server: Server) -> dict[str, Any]:
    roles = server._roles_from_log()
    rows = []
    for pid in descendants(server.pid):
        line = cmdline(pid)
        role = "main" if pid == server.pid else roles.get(pid) or (
            "resource_tracker" if "resource_tracker" in line
            else "fork_server" if "fork server" in line else "responder")
        rows.append({"pid": pid, "role": role, **rollup(pid)})
    return {"label": server.label, "processes": rows,
            "rss_kib": sum(r.get("Rss", 0) for r in rows),
            "pss_kib": sum(r.get("Pss", 0) for r in rows)}


def servers(args: argparse.Namespace, root: Path) -> list[Server]:
    zone = Zone(args.names)
    rng = random.Random(1)
    ports: set[int] = set()
    made: list[Server] = []
    command = healthdns_command(None)
    if "healthdns" not in args.skip and command is not None:
        workdir = root / "healthdns"
        workdir.mkdir()
        port = free_port(ports, rng)
        config = workdir / "healthdns.toml"
        config.write_text(zone.healthdns_toml(port, args.responders)
                          + healthdns_dnssec(command, workdir))
        made.append(Server("healthdns", "healthdns",
                           [command, "--config", str(config), "--log-level", "info",
                            "--control-listen", "127.0.0.1:0"],
                           port, workdir, ready_line="ready: serving",
                           responders=args.responders))
    for kind, binary, build in (("knot", "knotd", knot_server),
                                ("gdnsd", "gdnsd", gdnsd_server)):
        path = which(binary)
        if kind in args.skip or path is None:
            continue
        workdir = root / kind
        workdir.mkdir()
        server = build(path, zone, free_port(ports, rng), workdir)
        if kind == "knot":
            sign_knot(workdir)
            server.label = "knot (signed)"
        else:
            server.label = "gdnsd (unsigned)"
        made.append(server)
    return made


def show(report: dict[str, Any]) -> None:
    print(f"\n{report['label']}: RSS {report['rss_kib'] / 1024:.1f} MiB, "
          f"PSS {report['pss_kib'] / 1024:.1f} MiB in {len(report['processes'])} process(es)")
    for row in report["processes"]:
        print(f"  {row['role']:<17} pid {row['pid']:<8} RSS {row.get('Rss', 0) / 1024:7.1f} MiB"
              f"  PSS {row.get('Pss', 0) / 1024:7.1f} MiB")


def _child(conn: multiprocessing.connection.Connection) -> None:
    for name in PRELOAD:  # what a responder imports
        importlib.import_module(name)

    conn.send(True)
    conn.recv()  # until measured


def start_methods(children: int) -> None:
    for method in ("spawn", "forkserver"):
        ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            ctx.set_forkserver_preload(PRELOAD)
        started = []
        for _ in range(children):
            ours, theirs = ctx.Pipe()
            process = ctx.Process(target=_child, args=(theirs,))
            process.start()
            ours.recv()
            started.append((process, ours))
        sizes = [rollup(p.pid) for p, _ in started if p.pid is not None]
        server = getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None)
        shared = rollup(server).get("Pss", 0) if method == "forkserver" and server else 0
        print(f"{method:<10} {children} children: PSS "
              f"{(sum(s.get('Pss', 0) for s in sizes) + shared) / 1024:6.1f} MiB in all "
              f"(the fork server's {shared / 1024:.1f} included), "
              f"{sizes[0].get('Pss', 0) / 1024:5.1f} MiB each; RSS "
              f"{sizes[0].get('Rss', 0) / 1024:5.1f} MiB each")
        for process, ours in started:
            ours.send(True)
            process.join()


ROLES = {"interpreter": "", "supervisor": "healthdns.supervisor.main",
         "prober": "healthdns.prober.main", "signer": "healthdns.signer.main",
         "responder": "healthdns.responder.main"}
IMPORTED = """
import importlib, re, sys
if sys.argv[1]:
    importlib.import_module(sys.argv[1])
text = open("/proc/self/smaps_rollup").read()
print(*(re.search(rf"^{k}:\\s+(\\d+) kB", text, re.MULTILINE).group(1) for k in ("Pss", "Rss")))
"""


def imports() -> None:
    """PSS of a fresh interpreter that imported each role's main module, nothing else."""
    for role, module in ROLES.items():
        done = subprocess.run([sys.executable, "-c", IMPORTED, module], check=True,
                              capture_output=True, text=True)
        pss, rss = (int(kib) / 1024 for kib in done.stdout.split())
        print(f"{role:<17} PSS {pss:5.1f} MiB  RSS {rss:5.1f} MiB  ({module or 'nothing'})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--names", type=int, default=10000)
    p.add_argument("--responders", type=int, default=2)
    p.add_argument("--skip", type=lambda s: set(s.split(",")), default=set())
    p.add_argument("--start-methods", action="store_true",
                   help="only compare the import cost per child of spawn and forkserver")
    p.add_argument("--children", type=int, default=4)
    p.add_argument("--imports", action="store_true",
                   help="only measure each role's imports in a fresh interpreter")
    args = p.parse_args(argv)
    if args.imports:
        imports()
        return 0
    if args.start_methods:
        start_methods(args.children)
        return 0
    with tempfile.TemporaryDirectory(prefix="healthdns-memory-") as tmp:
        started = servers(args, Path(tmp))
        try:
            for server in started:
                server.start(START_DEADLINE)
                show(measure(server))
        finally:
            for server in started:
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
