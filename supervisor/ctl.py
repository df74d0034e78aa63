"""`healthdns-ctl`: a small command line over the control endpoint.

Reads (`status`, `targets`, `explain`) need nothing, or the endpoint's read token when it has
one; writes (`drain`, `force`, `undrain`, `unforce`, `clear`, `reload`) need the endpoint's
token. Either comes from `--token`, `--token-file` or $HEALTHDNS_TOKEN. `--json` prints what the
endpoint answered instead of the words. `keys` reads the signer's key state files on this host
(see supervisor/keyreport.py).
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import ipaddress
import json
import math
import os
import re
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from healthdns.shared import command, logs
from healthdns.shared.config import DEFAULT_CONTROL
from healthdns.supervisor import keyreport
from healthdns.supervisor.overrides import MAX_BY, MAX_EXPIRES_IN

TIMEOUT = 10.0
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# Units of `--expires`: "90" and "90s" are seconds, "30m", "1h", "2d", "1w"; "1h30m" adds up.
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw]?)")
# What removes what: `undrain` only a drain, `unforce` only a force, `clear` either.
REMOVES = {"undrain": "drain", "unforce": "force", "clear": None}


class CtlError(Exception):
    """What went wrong, in words for the operator."""


def parser() -> argparse.ArgumentParser:
    p = command.standard(argparse.ArgumentParser(
        prog="healthdns-ctl", description="See and steer a running healthdns."),
        'docs/operations.md, "Control endpoint" and "healthdns-ctl"')
    p.add_argument("--url", default=os.environ.get("HEALTHDNS_CONTROL",
                                                   f"http://{DEFAULT_CONTROL}"),
                   help="the control endpoint (default: $HEALTHDNS_CONTROL or "
                   f"http://{DEFAULT_CONTROL})")
    p.add_argument("--token", help="bearer token for writes, or for reads where the endpoint "
                   "has a read token (default: $HEALTHDNS_TOKEN)")
    command.path(p.add_argument("--token-file", metavar="PATH",
                                help="read the token from a file"))
    p.add_argument("--json", action="store_true", help="print the endpoint's JSON")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="version, generation, zones, responders, counts of up and "
                   "down, overrides")
    targets = sub.add_parser("targets", help="every check target: state, since, why")
    targets.add_argument("--down", action="store_true", help="only targets not up")
    explain = sub.add_parser("explain", help="what a name answers now, and why (any name: "
                             "pooled, static, CNAME, absent, not ours)")
    explain.add_argument("name")
    explain.add_argument("type", nargs="?", default=None,
                         help="A, AAAA, CNAME, MX, TXT, SRV, CAA, PTR, NS or SOA (default: A, "
                         "AAAA and the types the name holds)")
    explain.add_argument("--client", metavar="ADDR[/LEN]",
                         help="the answer to this client: ADDR, a query from it without ECS; "
                         "ADDR/LEN, a query with EDNS Client Subnet of source length LEN "
                         "(default: a client the location maps know nothing about)")
    for action, words in (("drain", "serve as down"), ("force", "serve as up")):
        write = sub.add_parser(action, help=f"{words} whatever the checks say")
        write.add_argument("subject", help="a served address, or a name with a checked pool")
        write.add_argument("--reason", default="", help="a note shown in status")
        write.add_argument("--expires", type=duration, metavar="DURATION",
                           help="drop the override after this long: 90 or 90s, 30m, 1h, 2d, "
                           "1w, 1h30m (at most 365d; default: until removed)")
        write.add_argument("--by", default=None, help="who sets it, shown in status "
                           "(default: USER@HOST)")
    for verb, words in (("undrain", "the drain of"), ("unforce", "the force of"),
                        ("clear", "the override (drain or force) of")):
        sub.add_parser(verb, help=f"remove {words} an address or a name").add_argument(
            "subject")
    sub.add_parser("reload", help="read and apply the configuration file again (as SIGHUP)")
    keys = sub.add_parser("keys", help="the keys the signer rolls: role, state, dates, the "
                          "next step and what it waits for (read from key_dir, on this host)")
    keys.add_argument("zone", nargs="?", default=None, help="one zone (default: all)")
    command.path(keys.add_argument("--config", metavar="PATH", required=True,
                                   help="the configuration file, to find each zone's key_dir"))
    return p


def duration(text: str) -> float:
    """Seconds from "90", "90s", "30m", "1h", "2d", "1w" or a sum of them ("1h30m")."""
    parts = _DURATION.findall(text.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != text.strip().lower():
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (like 90, 90s, 30m, 1h, "
                                         "2d)")
    seconds = sum(float(n) * UNITS[u or "s"] for n, u in parts)
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_EXPIRES_IN):
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 365d")
    return seconds


def main(argv: list[str] | None = None) -> int:
    logs.capture_warnings()
    logs.setup_command("ctl", "healthdns-ctl")
    args = parser().parse_args(argv)
    try:
        out = run(args)
    except CtlError as e:
        print(f"healthdns-ctl: {e}", file=sys.stderr)
        return EXIT_FAILED
    sys.stdout.write(out)
    return EXIT_OK


def run(args: argparse.Namespace) -> str:
    """The text to print for one command."""
    match args.command:
        case "status":
            doc = _get(args, "/status")
            return _json(doc) if args.json else _status(doc)
        case "targets":
            doc = _get(args, "/status")
            rows = [t for t in doc["targets"] if not args.down or t["state"] != "up"]
            return _json(rows) if args.json else _targets(rows, doc["overrides"])
        case "explain":
            query = {"name": args.name} | ({"type": args.type} if args.type else {}) | (
                {"client": args.client} if args.client else {})
            doc = _get(args, "/explain?" + urllib.parse.urlencode(query))
            return _json(doc) if args.json else _explain(doc)
        case "drain" | "force":
            body: dict[str, Any] = {
                "name" if _is_name(args.subject) else "address": _subject(args.subject),
                "action": args.command, "reason": args.reason,
                "by": args.by if args.by is not None else _who()}
            if args.expires is not None:
                body["expires_in"] = args.expires
            answer = _call(args, "POST", "/overrides", body)
            return _json(answer) if args.json else f"{args.command}: {args.subject}\n"
        case "undrain" | "unforce" | "clear":
            path = "/overrides/" + urllib.parse.quote(_subject(args.subject), safe="")
            action = REMOVES[args.command]
            if action is not None:
                path += "?action=" + action
            answer = _call(args, "DELETE", path, None)
            removed = action or "override"
            return _json(answer) if args.json else f"{removed} removed: {args.subject}\n"
        case "keys":
            try:
                return keyreport.report(args.config, args.zone, args.json)
            except keyreport.ReportError as e:
                raise CtlError(str(e)) from None
        case _:  # "reload": a refused file is an HTTP error naming the problem
            answer = _call(args, "POST", "/reload", None)
            return _json(answer) if args.json else "reloaded\n"


def _is_name(text: str) -> bool:
    """An address is served as itself; anything else is a name."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return True
    return False


def _subject(text: str) -> str:
    return text.lower().rstrip(".") if _is_name(text) else text


def _who() -> str:
    """USER@HOST of whoever runs the command: the token is one for everyone, this says who."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (a bare container)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"[:MAX_BY]


# --- the endpoint -------------------------------------------------------------------------------


def _get(args: argparse.Namespace, path: str) -> Any:
    request = urllib.request.Request(args.url.rstrip("/") + path)
    token = _token(args, needed=False)  # an endpoint with a read token wants it for reads
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    return _request(request)


def _call(args: argparse.Namespace, method: str, path: str, body: Any) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(args.url.rstrip("/") + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {_token(args)}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    return _request(request)


def _token(args: argparse.Namespace, needed: bool = True) -> str:
    if args.token_file is not None:
        try:
            with open(args.token_file, encoding="utf-8") as f:
                return f.read(4096).strip()
        except OSError as e:
            raise CtlError(f"--token-file: cannot read {args.token_file!r}: "
                           f"{e.strerror}") from None
    token = args.token or os.environ.get("HEALTHDNS_TOKEN")
    if not token and needed:
        raise CtlError("this command needs the control token: --token, --token-file or "
                       "$HEALTHDNS_TOKEN")
    return str(token or "")


def _request(request: urllib.request.Request) -> Any:
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        try:
            error = json.loads(e.read()).get("error", e.reason)
        except (ValueError, AttributeError):
            error = e.reason
        raise CtlError(f"{request.full_url}: {e.code} {error}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise CtlError(f"cannot reach {request.full_url}: {reason} (is healthdns running, "
                       "and is --url its [control] listen address?)") from None


# --- words --------------------------------------------------------------------------------------


def _json(doc: Any) -> str:
    return json.dumps(doc, indent=2) + "\n"


def _status(doc: dict[str, Any]) -> str:
    down = [t for t in doc["targets"] if t["state"] != "up"]
    lines = [f"healthdns {doc.get('version', '(version unknown)')}",
             f"generation {doc['generation']}"
             + ("" if doc["current"] else " (responders catching up)")]
    lines += [f"zone {z['zone']}: serial {z['serial']}" for z in doc["zones"]]
    lines += [f"responder {r['slot']}: {r['state']}, generation {r['generation']}"
              for r in doc["responders"]]
    lines.append(f"targets: {len(doc['targets']) - len(down)} up, {len(down)} down or unknown")
    lines += [f"override: {o['action']} {o['name'] or o['address']}" + _held(o)
              for o in doc["overrides"]]
    lines += _routing(doc)
    return "\n".join(lines) + "\n"


def _routing(doc: dict[str, Any]) -> list[str]:
    """Each location map, and each site of a geo name that passes its clients on."""
    lines = []
    for m in doc.get("maps", ()):
        source = f"{m['networks']} networks of {m['database']}" if m["database"] else \
            "networks only"
        error = f"; does not load now, the map compiled before serves: {m['error']}" \
            if m["error"] else ""
        lines.append(f"map {m['map']}: {source}, compiled {_when(m['compiled'])}{error}")
    for n in doc["names"]:
        lines += [f"site {s['site']} of {n['name']} {s['type']}: {s['up']} of {s['total']} up, "
                  "does not qualify: its clients go down their order"
                  for s in n.get("sites", ()) if not s["qualifies"]]
    return lines


def _targets(rows: list[dict[str, Any]], overrides: list[dict[str, Any]]) -> str:
    """A table: state, address, check, since (local time), why, names."""
    by_address = {o["address"]: o for o in overrides if o["address"]}
    table = [("STATE", "ADDRESS", "CHECK", "SINCE", "WHY", "NAMES")]
    for t in rows:
        held = next((by_address[a] for a in t["served"] if a in by_address), None)
        why = t["reason"] or "-"
        if held is not None:
            why = f"{held['action']}{_held(held)}; checks say {t['probed']}: {why}"
        table.append((t["state"], ", ".join(t["served"]), t["check"], _when(t["since"]), why,
                      ", ".join(t["names"])))
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    return "".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False))
                   + "  " + row[5] + "\n" for row in table)


def _held(o: dict[str, Any]) -> str:
    """An override's reason, who, since and until when, in words: " (disk swap, by
    alice@bastion, since 2025-06-01 16:00:00, until 2025-06-01 18:00:00)"."""
    parts = [o["reason"]] if o["reason"] else []
    if o.get("by"):
        parts.append(f"by {o['by']}")
    if o.get("created"):
        parts.append(f"since {_when(o['created'])}")
    parts.append(f"until {_when(o['expires'])}" if o["expires"] else "until removed")
    return f" ({', '.join(parts)})"


def _when(seconds: float | None) -> str:
    """A Unix time as local date and time; "-" for none."""
    if seconds is None:
        return "-"
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


EVERYONE = "the answer holds for every client"  # scope 0


def _explain(doc: dict[str, Any]) -> str:
    name = doc["name"]
    if not doc["answers"]:
        scope = "" if doc.get("scope") is None else \
            f"  ECS scope /{doc['scope']}: {EVERYONE}\n"
        return f"{name}: {doc['rcode']}\n  because {doc['why']}\n{scope}"
    head = ""
    if doc["alias_of"]:
        head = (f"{name} is in {doc['zone']}, an alias zone of {doc['alias_of']}: it answers "
                "as the same name there\n")
    return head + "".join(_answer(name, a) for a in doc["answers"])


def _answer(name: str, answer: dict[str, Any]) -> str:
    kind = "address" if answer["type"] in ("A", "AAAA") else "record"
    if answer["rcode"] is None:
        served = "nothing yet"
    elif answer["rcode"] != "NOERROR":
        served = answer["rcode"]
    else:
        served = ", ".join(answer["records"]) or f"no {kind} (NODATA)"
    ttl = f" (ttl {answer['ttl']})" if answer["ttl"] is not None else ""
    lines = [f"{name} {answer['type']}: {served}{ttl}"]
    lines += [f"  {c['name']} CNAME {c['target']} (ttl {c['ttl']})" for c in answer["chain"]]
    lines.append(f"  because {answer['why']}")
    lines += _geo(answer.get("geo"), answer.get("scope"))
    count = len(answer["records"])
    if answer.get("rotates"):
        lines.append(f"  each answer holds {answer['per_answer']} of these {count}: "
                     f"{answer['variants']} answers rotate, each responder giving the next "
                     "one on every answer")
    elif answer.get("source") == "pool" and count > 1:
        lines.append("  each answer holds " + ("both addresses" if count == 2
                                               else f"all {count} addresses"))
    if answer.get("override"):
        lines.append(f"  name {answer['override']['action']}{_held(answer['override'])}")
    lines += [_address(a) for a in answer.get("addresses", ()) if a["state"] != "up"]
    lines += [line for a in answer.get("addresses", ()) if a.get("peers")
              for line in _vantages(a["address"], a["peers"])]
    if answer.get("geo") and not answer["geo"].get("client") and answer["geo"].get("sites"):
        lines += [f"  site {s['site']}: {s['up']} of {s['total']} up" + (
            "" if s["qualifies"] else ", does not qualify") for s in answer["geo"]["sites"]]
    return "\n".join(lines) + "\n"


def _geo(geo: dict[str, Any] | None, scope: int | None) -> list[str]:
    """Where a geo pool's client is, the site order and which map entry gave it, the sites
    passed over, and the scope."""
    if geo is None or geo.get("error"):  # an error: `why` says it
        return [] if scope is None else [f"  ECS scope /{scope}: {EVERYONE}"]
    lines = []
    if geo.get("client"):
        where = f"the database's {geo['network']}" if geo.get("network") else \
            "no network of the database"
        lines.append(f"  client {geo['client']} ({'ECS' if geo['ecs'] else 'no ECS'}), in "
                     f"{where}: {_place(geo.get('location'))}")
    if geo.get("order"):
        lines.append(f"  site order {', '.join(geo['order'])}: {geo['entry']}, "
                     f"{geo['entry_why']}")
    lines += [f"  skipped {s['site']}: {s['why']}" for s in geo.get("skipped") or ()]
    if geo.get("warning"):
        lines.append(f"  warning: {geo['warning']}")
    if scope is not None:
        lines.append(f"  ECS scope /{scope}: " + (
            EVERYONE if scope == 0 else
            f"every client in {_network(geo['address'], scope)} gets this order"))
    return lines


def _place(location: dict[str, Any] | None) -> str:
    if not location:
        return "no location"
    words = [location.get("continent"), location.get("country"),
             *location.get("subdivisions", ()), location.get("city")]
    if location.get("asn"):
        words.append(f"AS{location['asn']}")
    return ", ".join(w for w in words if w) or "no location"


def _network(address: str, length: int) -> str:
    return str(ipaddress.ip_network(f"{address}/{length}", strict=False))


def _address(a: dict[str, Any]) -> str:
    """One address that is not simply up: its state, and why (the override that holds it, what
    the checks say and since when)."""
    line = f"  {a['state']}: {a['address']}"
    held = a["state"] in ("drained", "forced")
    if a["override"]:
        line += f"; {a['override']['action']}{_held(a['override'])}"
    if a["probed"] is not None and a["state"] != "backup":
        words = [f"checks say {a['probed']}"] if held else []
        words += [f"since {_when(a['since'])}"] if a["since"] else []
        line += ("; " if held else " ") + " ".join(words) + (f": {a['reason']}" if a["reason"]
                                                             else "")
    return line


def _vantages(address: str, said: dict[str, Any]) -> list[str]:
    """With [peers]: the verdict on one address and its rule, then each vantage's last say,
    its standing and the age of its latest report."""
    says = []
    for v in said["vantages"]:
        age = "" if v["age"] is None else f", {v['age']:.1f} s ago"
        says.append(f"{v['vantage']} {v['state']} ({v['standing']}{age})")
    return [f"  vantages on {address}: {said['rule']}", "    " + "; ".join(says)]


if __name__ == "__main__":
    sys.exit(main())
