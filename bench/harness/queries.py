"""Queries: the standard mix for the load, and a wider set for the answer check."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from harness.zone import BASE_A, ZONE, Zone

MIX = {  # share of the query file per kind
    "positive": 0.40, "nxdomain": 0.15, "nodata": 0.15, "soa": 0.10, "ns": 0.10, "mixed": 0.10,
}
NXDOMAIN_NAMES = ("nonexistent", "nope", "missing", "x.www", "deep.sub.mail", "wwww", "ww", "_srv")
NODATA = (("www", "AAAA"), ("mail", "MX"), ("db", "AAAA"), ("api", "TXT"))
MIXED = ("WwW.ExAmPlE.tEsT", "MAIL.EXAMPLE.TEST", "Api.Example.Test", "dB.eXaMpLe.TeSt")
CHECK_ONLY = (  # asked of every server before the load, not part of it
    (f"{ZONE}", "MX"), (f"{ZONE}", "A"), (f"{ZONE}", "AAAA"), (f"www.{ZONE}", "CNAME"),
    (f"WWW.{ZONE.upper()}", "AAAA"), (f"NoSuch.{ZONE}", "A"), ("ExAmPlE.TeSt", "SOA"),
    (f"sub.www.{ZONE}", "AAAA"), ("example.com", "A"), ("test", "SOA"), (f"www.{ZONE}", "ANY"),
    (f"{ZONE}", "DNSKEY"), (f"www.{ZONE}", "TYPE65280"),
)


def query_mix(zone: Zone, rng: random.Random) -> list[tuple[str, str, str]]:
    """(kind, name, type) lines of the query file, shuffled, in the shares of MIX."""
    total = 1000 if zone.extra == 0 else 10000
    extra = [name for name, _ in zone.extra_names()]
    lines: list[tuple[str, str, str]] = []
    for kind, share in MIX.items():
        lines.extend((kind, *_pick(kind, rng, extra)) for _ in range(round(total * share)))
    rng.shuffle(lines)
    return lines


def _pick(kind: str, rng: random.Random, extra: Sequence[str]) -> tuple[str, str]:
    """One (name, type) of a kind; positives are half base names, half extra names (if any)."""
    match kind:
        case "positive":
            use_extra = bool(extra) and rng.random() >= 0.5
            owner = rng.choice(extra) if use_extra else rng.choice(list(BASE_A))
            return f"{owner}.{ZONE}", "A"
        case "nxdomain":
            return f"{rng.choice(NXDOMAIN_NAMES)}.{ZONE}", rng.choice(("A", "AAAA"))
        case "nodata":
            owner, rtype = rng.choice(NODATA)
            return f"{owner}.{ZONE}", rtype
        case "soa" | "ns":
            return ZONE, kind.upper()
        case "mixed":
            return rng.choice(MIXED), "A"
    raise ValueError(kind)


def check_queries(lines: Sequence[tuple[str, str, str]], rng: random.Random,
                  sample: int = 20) -> list[tuple[str, str]]:
    """Distinct load queries (at most `sample` of the extra names) plus the check-only ones."""
    distinct = sorted({(name, rtype) for _, name, rtype in lines})
    extra = [q for q in distinct if re.match(r"n\d+\.", q[0])]
    keep = set(rng.sample(extra, min(sample, len(extra))))
    chosen = [q for q in distinct if q not in extra or q in keep]
    return chosen + [q for q in CHECK_ONLY if q not in chosen]

