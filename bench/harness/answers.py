"""The answer check: dig every distinct query at every server, compare with the references."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import re
import subprocess
from collections.abc import Sequence
from typing import Any

from harness import HOST, log
from harness.kinds import REFERENCES
from harness.servers import Server


@dataclasses.dataclass(frozen=True)
class Answer:
    status: str
    aa: bool
    answer: tuple[str, ...]
    authority: tuple[str, ...]
    ttls: tuple[str, ...]  # "owner type ttl", for notes only
    owners: tuple[str, ...]  # owner names as sent, for the case note
    additional: int

    def key(self) -> tuple[Any, ...]:
        return (self.status, self.aa, self.answer, self.authority)

    def show(self) -> str:
        flags = " aa" if self.aa else " (no aa)"
        answer = "; ".join(self.answer) or "-"
        authority = "; ".join(self.authority) or "-"
        return f"{self.status}{flags} | answer: {answer} | authority: {authority}"


def normalise_rr(line: str) -> tuple[str, str, str]:
    """(comparable text, ttl note, owner as sent) of one dig RR line."""
    owner, ttl, rclass, rtype, *rdata = line.split()
    if rtype == "SOA" and len(rdata) == 7:
        rdata[2] = "<serial>"
    text = f"{owner.lower()} {rclass} {rtype} {' '.join(rdata).lower()}"
    return text, f"{owner.lower()} {rtype} ttl {ttl}", owner


def parse_dig(text: str) -> Answer:
    status = re.search(r"status: ([A-Z]+)", text)
    if status is None:
        reason = "TIMEOUT" if "timed out" in text or "no servers" in text else "NO-ANSWER"
        return Answer(reason, False, (), (), (), (), 0)
    flags = re.search(r";; flags:([^;]*);", text)
    additional = re.search(r"ADDITIONAL: (\d+)", text)
    sections: dict[str, list[tuple[str, str, str]]] = {"ANSWER": [], "AUTHORITY": []}
    current: str | None = None
    for line in text.splitlines():
        header = re.match(r";; (\w+) SECTION:", line)
        if header:
            current = header.group(1) if header.group(1) in sections else None
        elif not line.strip() or line.startswith(";"):
            current = None if not line.strip() else current
        elif current is not None:
            sections[current].append(normalise_rr(line))
    rrs = sections["ANSWER"] + sections["AUTHORITY"]
    return Answer(
        status=status.group(1),
        aa=flags is not None and "aa" in flags.group(1).split(),
        answer=tuple(sorted(r[0] for r in sections["ANSWER"])),
        authority=tuple(sorted(r[0] for r in sections["AUTHORITY"])),
        ttls=tuple(sorted({r[1] for r in rrs})),
        owners=tuple(sorted({r[2] for r in rrs})),
        additional=int(additional.group(1)) if additional else 0,
    )


VARIANTS = {"udp": [], "udp no edns": ["+noedns"], "tcp": ["+tcp"]}


def dig(port: int, name: str, rtype: str, variant: str) -> Answer:
    argv = ["dig", *VARIANTS[variant], "+norec", "+noall", "+answer", "+authority", "+comments",
            "+tries=1", "+time=2", f"@{HOST}", "-p", str(port), name, rtype]
    try:
        result = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return Answer("TIMEOUT", False, (), (), (), (), 0)
    return parse_dig(result.stdout + result.stderr)


def check_answers(servers: Sequence[Server],
                  queries: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Ask every server every query (UDP with and without EDNS, TCP); compare the answers."""
    jobs = [(s, q, v) for s in servers for q in queries for v in VARIANTS]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda j: dig(j[0].port, j[1][0], j[1][1], j[2]), jobs))
    table: dict[tuple[str, str, str], dict[str, Answer]] = {}
    for (server, (name, rtype), variant), answer in zip(jobs, answers, strict=True):
        table.setdefault((name, rtype, variant), {})[server.label] = answer
    refs = [s.label for s in servers if s.kind in REFERENCES]
    compared = [s.label for s in servers if s.kind not in REFERENCES and s.kind != "a-healthy-dns"]
    report: dict[str, Any] = {"references": refs, "queries": len(queries), "mismatches": [],
                              "reference_disagreements": [], "notes": [], "timeouts": [],
                              "answers": {}}
    for (name, rtype, variant), by_server in table.items():
        query = f"{name} {rtype} ({variant})"
        report["answers"][query] = {
            label: {"answer": a.show(), "ttls": list(a.ttls), "additional": a.additional}
            for label, a in by_server.items()}
        for label, answer in by_server.items():
            if answer.status in ("TIMEOUT", "NO-ANSWER"):
                report["timeouts"].append({"server": label, "query": query})
        if not refs:
            continue
        ref_keys = {by_server[r].key() for r in refs}
        if len(ref_keys) > 1:
            report["reference_disagreements"].append(
                {"query": query, "answers": {r: by_server[r].show() for r in refs}})
        for label in compared:
            mine = by_server[label]
            if mine.key() not in ref_keys:
                report["mismatches"].append({
                    "server": label, "query": query, "got": mine.show(),
                    "expected": {r: by_server[r].show() for r in refs}})
            else:
                report["notes"].extend(_notes(label, query, mine, by_server, refs, name))
    return report


def _notes(label: str, query: str, mine: Answer, by_server: dict[str, Answer],
           refs: Sequence[str], qname: str) -> list[dict[str, str]]:
    """Differences that do not make an answer wrong: TTLs, owner-name case, additional count."""
    out = []
    ref = by_server[refs[0]]
    if mine.ttls != ref.ttls and all(by_server[r].ttls != mine.ttls for r in refs):
        out.append({"server": label, "query": query, "what": "ttl",
                    "got": ", ".join(mine.ttls),
                    "references": " / ".join(f"{r}: {', '.join(by_server[r].ttls)}"
                                             for r in refs)})
    ref_owners = {by_server[r].owners for r in refs}
    if mine.owners not in ref_owners and qname != qname.lower():
        out.append({"server": label, "query": query, "what": "owner name case",
                    "got": ", ".join(mine.owners),
                    "references": " / ".join(f"{r}: {', '.join(by_server[r].owners)}"
                                             for r in refs)})
    if mine.additional not in {by_server[r].additional for r in refs}:
        out.append({"server": label, "query": query, "what": "additional count",
                    "got": str(mine.additional),
                    "references": " / ".join(f"{r}: {by_server[r].additional}" for r in refs)})
    return out


def print_check(report: dict[str, Any], show_all: bool) -> None:
    refs = " and ".join(report["references"]) or "no reference server"
    log(f"answer check: {report['queries']} distinct queries x ({', '.join(VARIANTS)}) "
        f"against {refs}")
    if show_all:
        for query, by_server in report["answers"].items():
            print(f"  {query}")
            for label, entry in by_server.items():
                ttls = ", ".join(t.split(" ttl ")[1] for t in entry["ttls"]) or "-"
                print(f"      {label:<16} {entry['answer']} | ttl {ttls} | "
                      f"additional {entry['additional']}")
    for t in report["timeouts"]:
        print(f"  NO ANSWER  {t['server']}: {t['query']}")
    for query, m in _collapse(report["mismatches"], "got", "expected"):
        print(f"  MISMATCH   {m['server']}: {query}")
        print(f"      got       {m['got']}")
        for ref, text in m["expected"].items():
            print(f"      {ref:<9} {text}")
    for query, d in _collapse(report["reference_disagreements"], "answers"):
        print(f"  references disagree (not counted against healthdns): {query}")
        for ref, text in d["answers"].items():
            print(f"      {ref:<9} {text}")
    for kind in ("ttl", "owner name case", "additional count"):
        notes = [n for n in report["notes"] if n["what"] == kind]
        for n in _dedupe_notes(notes)[:12]:
            print(f"  note ({kind}) {n['server']}: {n['query']}: {n['got']}  "
                  f"[{n['references']}]")
        if len(_dedupe_notes(notes)) > 12:
            print(f"  note ({kind}): {len(_dedupe_notes(notes)) - 12} more in the JSON output")
    if not report["mismatches"] and not report["timeouts"]:
        print("  all answers match the references (rcode, AA, answer and authority RRsets)")


def _collapse(entries: list[dict[str, Any]],
              *fields: str) -> list[tuple[str, dict[str, Any]]]:
    """Entries that differ only in the transport variant, as one ("name type (v1, v2)", entry)."""
    groups: dict[str, tuple[str, list[str], dict[str, Any]]] = {}
    for entry in entries:
        question, _, variant = entry["query"].rpartition(" (")
        key = json.dumps([entry.get("server"), question, *(entry[f] for f in fields)],
                         sort_keys=True)
        groups.setdefault(key, (question, [], entry))[1].append(variant.rstrip(")"))
    return [(f"{q} ({', '.join(v)})", e) for q, v, e in groups.values()]


def _dedupe_notes(notes: list[dict[str, str]]) -> list[dict[str, str]]:
    seen: set[tuple[str, str]] = set()
    out = []
    for n in sorted(notes, key=lambda n: (n["server"], n["query"])):
        key = (n["query"], n["got"] + n["references"])
        if key not in seen:
            seen.add(key)
            out.append(n)
    return out

