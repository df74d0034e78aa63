"""Each vantage's say on a target decided by peers, and the rule that made its verdict: what
`explain` and `/status` show (docs/sites.md).

The peers process sends the contested targets (`messages.Votes`): those the fresh vantages
disagree on, a vantage's last state differs from the verdict on, with no outcome, or with a
flip the steadying holds. Every other target's vantages all last said its verdict. Past
`SPLIT_SHOWN` contested targets, one not among those sent is shown as not known.
"""

from __future__ import annotations

from typing import Any

from healthdns.shared.config import PeersSpec
from healthdns.shared.config.peers import needed_up
from healthdns.shared.messages import Votes
from healthdns.supervisor.readout import Readout

NOT_HERE = "not a vantage for this check"


def say(readout: Readout, spec: PeersSpec, target: str, up: bool | None) -> dict[str, Any]:
    """Each vantage's last state on `target`, its age and standing; the verdict and its rule."""
    votes = readout.split.get(target)
    known = votes is not None or len(readout.split) >= readout.split_total
    rows = []
    for name, standing, age in _standings(readout, spec, target):
        state: bool | None = None
        if standing != NOT_HERE and age is not None:  # never heard: no say yet
            state = votes.states.get(name) if votes is not None else up if known else None
        rows.append({"vantage": name, "state": _word(state), "age": age,
                     "standing": standing})
    return {"vantages": rows, "verdict": _word(up if votes is None else votes.verdict),
            "rule": rule(spec, target, rows, votes, known),
            "held": votes is not None and votes.due >= 0,
            "flip_due": None if votes is None or votes.due < 0 else votes.due}


def _standings(readout: Readout, spec: PeersSpec, target: str
               ) -> list[tuple[str, str, float | None]]:
    """(vantage, fresh | stale | fenced | not a vantage for this check, age in seconds)."""
    where = spec.placed.get(target)
    out: list[tuple[str, str, float | None]] = [(spec.name, "fresh", 0.0)]
    for row in sorted(readout.peers, key=lambda r: r.name):
        age = row.age if row.age >= 0 else None
        out.append((row.name, "fenced" if row.fenced else "fresh" if row.fresh else "stale",
                    age))
    return [(n, NOT_HERE if where is not None and n not in where else s, a)
            for n, s, a in out]


def rule(spec: PeersSpec, target: str, rows: list[dict[str, Any]], votes: Votes | None,
         known: bool) -> str:
    """The rule that made the outcome, in words: e.g. "up: 2 of 3 fresh vantages say up,
    quorum majority (2)"."""
    if not known:
        return "not shown: more contested targets than the peers process sends"
    voting = [r["state"] for r in rows if r["standing"] == "fresh" and r["state"] != "unknown"]
    where = spec.placed.get(target)
    need = needed_up(spec.quorum, len(voting))
    if where is not None and isinstance(spec.quorum, int):
        need = min(spec.quorum, len(where))
    if votes is not None and votes.outcome is None:
        kept = "the last verdict kept" if spec.cut_off == "keep" else "this instance's own view"
        return (f"no verdict: {len(voting)} fresh vantages, {spec.min_vantages} needed; "
                f"{kept}")
    ups = voting.count("up")
    outcome = votes.outcome if votes is not None else ups >= need
    word = "up" if outcome else "down"
    said = ups if outcome else len(voting) - ups
    text = (f"{word}: {said} of {len(voting)} fresh vantages say {word}, quorum {spec.quorum} "
            f"({need} up needed)")
    if votes is not None and votes.due >= 0:
        text += (f"; held {_word(votes.verdict)} by rise/fall/hold-down for "
                 f"{votes.due:g} s more")
    return text


def _word(up: bool | None) -> str:
    return "unknown" if up is None else "up" if up else "down"
