"""`healthdns-ctl`: a small command line over the control endpoint.

Reads (`status`, `targets`, `explain`) need nothing, or the endpoint's read token when it has
one; writes (`drain`, `undrain`, `force`) need the endpoint's token. Either comes from
`--token`, `--token-file` or $HEALTHDNS_TOKEN. `--json` prints what the endpoint answered
instead of the words.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from healthdns.shared.config import DEFAULT_CONTROL

TIMEOUT = 10.0
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CtlError(Exception):
    """What went wrong, in words for the operator."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="healthdns-ctl",
                                description="See and steer a running healthdns.")
    p.add_argument("--url", default=os.environ.get("HEALTHDNS_CONTROL",
                                                   f"http://{DEFAULT_CONTROL}"),
                   help="the control endpoint (default: $HEALTHDNS_CONTROL or "
                   f"http://{DEFAULT_CONTROL})")
    p.add_argument("--token", help="bearer token for writes, or for reads where the endpoint "
                   "has a read token (default: $HEALTHDNS_TOKEN)")
    p.add_argument("--token-file", metavar="PATH", help="read the token from a file")
    p.add_argument("--json", action="store_true", help="print the endpoint's JSON")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="generation, zones, responders, counts of up and down")
    targets = sub.add_parser("targets", help="every check target and its state")
    targets.add_argument("--down", action="store_true", help="only targets not up")
    explain = sub.add_parser("explain", help="what a name answers now, and why")
    explain.add_argument("name")
    explain.add_argument("type", nargs="?", default=None, help="A or AAAA (default: both)")
    for action, words in (("drain", "serve as down"), ("force", "serve as up")):
        write = sub.add_parser(action, help=f"{words} whatever the checks say")
        write.add_argument("subject", help="a served address, or a name with a checked pool")
        write.add_argument("--reason", default="", help="a note shown in status")
        write.add_argument("--expires", type=float, metavar="SECONDS",
                           help="drop the override after this long")
    undrain = sub.add_parser("undrain", help="remove the override of an address or a name")
    undrain.add_argument("subject")
    sub.add_parser("reload", help="read and apply the configuration file again (as SIGHUP)")
    return p


def main(argv: list[str] | None = None) -> int:
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
            rows = [t for t in _get(args, "/status")["targets"]
                    if not args.down or t["state"] != "up"]
            return _json(rows) if args.json else _targets(rows)
        case "explain":
            return _explain(_get(args, "/status"), args.name, args.type, args.json)
        case "drain" | "force":
            body = {"name" if _is_name(args.subject) else "address": _subject(args.subject),
                    "action": args.command, "reason": args.reason}
            if args.expires is not None:
                body["expires_in"] = args.expires
            answer = _call(args, "POST", "/overrides", body)
            return _json(answer) if args.json else f"{args.command}: {args.subject}\n"
        case "undrain":
            path = "/overrides/" + urllib.parse.quote(_subject(args.subject), safe="")
            answer = _call(args, "DELETE", path, None)
            return _json(answer) if args.json else f"override removed: {args.subject}\n"
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
    lines = [f"generation {doc['generation']}"
             + ("" if doc["current"] else " (responders catching up)")]
    lines += [f"zone {z['zone']}: serial {z['serial']}" for z in doc["zones"]]
    lines += [f"responder {r['slot']}: {r['state']}, generation {r['generation']}"
              for r in doc["responders"]]
    lines.append(f"targets: {len(doc['targets']) - len(down)} up, {len(down)} down or unknown")
    lines += [f"override: {o['action']} {o['name'] or o['address']}"
              + (f" ({o['reason']})" if o["reason"] else "") for o in doc["overrides"]]
    return "\n".join(lines) + "\n"


def _targets(rows: list[dict[str, Any]]) -> str:
    lines = []
    for t in rows:
        extra = f" [{t['override']}, checks say {t['probed']}]" if t["override"] else ""
        lines.append(f"{t['state']:<8} {', '.join(t['served']):<20} {t['check']:<10} "
                     f"{', '.join(t['names'])}{extra}")
    return "\n".join(lines) + ("\n" if lines else "")


def _explain(doc: dict[str, Any], name: str, rdtype: str | None, as_json: bool) -> str:
    wanted = name.lower().rstrip(".")
    entry = next((n for n in doc["names"] if n["name"] == wanted), None)
    if entry is None:
        raise CtlError(f"{wanted!r} has no checked pool (static records answer as "
                       "configured)")
    answers = [a for a in entry["answers"] if rdtype is None or a["type"] == rdtype.upper()]
    if as_json:
        return _json({**entry, "answers": answers})
    return "".join(_why(wanted, entry, a) for a in answers) or \
        f"{wanted} has no {rdtype} addresses in its pool\n"


def _why(name: str, entry: dict[str, Any], answer: dict[str, Any]) -> str:
    pool, rule = entry["pool"], answer["rule"]
    served = ", ".join(answer["addresses"]) or "no address (NODATA)"
    if rule == "healthy":
        why = (f"group {answer['group'] + 1} of {len(pool['groups'])} has at least "
               f"min_healthy = {pool['min_healthy']} addresses up")
    elif rule == "degraded":
        why = (f"no group has min_healthy = {pool['min_healthy']} addresses up; group "
               f"{answer['group'] + 1} is the first with any up")
    else:
        why = f"every address is down, so the pool's policy {rule.split()[-1]!r} answers"
    if entry.get("override"):
        why += f"; the name is overridden: {entry['override']}"
    down = ", ".join(entry["down"])
    return f"{name} {answer['type']}: {served}\n  because {why}" + \
        (f"\n  down: {down}" if down else "") + "\n"


if __name__ == "__main__":
    sys.exit(main())
