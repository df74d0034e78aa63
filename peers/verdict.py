"""The verdict rule: how the views of several vantages make one health per target.

A *vantage* is an instance that checks: this one and each peer. For every target, the votes
are the states the *fresh* vantages see it in: a vantage is fresh while its latest report is
at most `stale_after` seconds old (this instance's own view always is), and a vantage whose
report says it is fenced (its prober sees nearly everything fail: its own network is at fault)
does not vote. Then:

* with fewer votes than `min_vantages`, there is no verdict (`None`): the caller keeps the last
  one, or follows its own view (`peers.cut_off`);
* otherwise the target is up when at least `needed_up(quorum, votes)` votes say up:
  `"majority"` is half of them or more (a tie keeps a target up: failing over takes more
  vantages seeing it down than up), a count is that many, a fraction is that share or more.

A target whose check names its `vantages` (`placed`) takes the votes of those only; it needs
`min_vantages` of them fresh, or a majority of them when that is fewer, and a count quorum
above their number is their number (a check run from one site follows that site's view).

Each vantage applies its checks' own rise, fall and hold-down to its own results and reports
the state that makes (a single lost probe never reaches a peer). The quorum outcome is then
steadied (`Steady`): it changes the verdict only once the votes have said so for `rise` (up)
or `fall` (down) evaluations in a row, one at the change of the votes and one every
`peers.interval` after, that is for (rise or fall - 1) x interval seconds; and a verdict
is kept at least `peers.hold_down` seconds after it changed. A flip due sooner waits, and
happens when the hold-down ends if the votes still say so. The first verdict of a target is
not a change. With the defaults (1, 1, 0) the verdict follows the votes at once.

The rule is a pure function of the reports and the clock: instances that hold the same reports
reach the same verdict, whichever of them computes it; steadied, at the same moments give or
take the trip of the report that changed the votes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from healthdns.shared.config.peers import CUT_OFF, needed_up

__all__ = ["CUT_OFF", "Quorum", "Steady", "Vantage", "combine", "contested", "fresh",
           "needed_up", "settle", "split"]

Quorum = str | int | float


@dataclass(frozen=True)
class Vantage:
    """What one vantage said last, and when it was heard (this process's monotonic clock)."""

    states: Mapping[str, bool]
    heard: float
    fenced: bool = False


def fresh(vantages: Mapping[str, Vantage], now: float, stale_after: float) -> list[str]:
    """The vantages that vote: heard within `stale_after`, and not fenced; in name order."""
    return sorted(name for name, v in vantages.items()
                  if not v.fenced and now - v.heard <= stale_after)


def combine(vantages: Mapping[str, Vantage], targets: Iterable[str], now: float,
            stale_after: float, quorum: Quorum, min_vantages: int,
            placed: Mapping[str, tuple[str, ...]] | None = None) -> dict[str, bool | None]:
    """Each target's verdict by the rule above; None where too few fresh vantages vote."""
    names = fresh(vantages, now, stale_after)
    voters = [vantages[name].states for name in names]
    least = max(1, min_vantages)
    need = [needed_up(quorum, n) for n in range(len(voters) + 1)]  # by the number of votes
    placed = placed or {}
    out: dict[str, bool | None] = {}
    for target in targets:
        where = placed.get(target)
        if where is not None:
            out[target] = _placed(target, [vantages[n].states for n in names if n in where],
                                  where, quorum, least)
            continue
        votes = [states[target] for states in voters if target in states]
        out[target] = None if len(votes) < least else sum(votes) >= need[len(votes)]
    return out


def _placed(target: str, voters: list[Mapping[str, bool]], where: tuple[str, ...],
            quorum: Quorum, least: int) -> bool | None:
    """The verdict on a target only the vantages `where` check."""
    votes = [states[target] for states in voters if target in states]
    if len(votes) < min(least, len(where) // 2 + 1):
        return None
    need = min(quorum, len(where)) if isinstance(quorum, int) else needed_up(quorum, len(votes))
    return sum(votes) >= need


def split(vantages: Mapping[str, Vantage], targets: Iterable[str], now: float,
          stale_after: float, placed: Mapping[str, tuple[str, ...]] | None = None
          ) -> dict[str, dict[str, bool]]:
    """The targets the voting vantages disagree on, each with every voter's state."""
    voters = {name: vantages[name].states for name in fresh(vantages, now, stale_after)}
    placed = placed or {}
    out: dict[str, dict[str, bool]] = {}
    for target in targets:
        where = placed.get(target)
        votes = {name: states[target] for name, states in voters.items()
                 if target in states and (where is None or name in where)}
        if len(set(votes.values())) > 1:
            out[target] = votes
    return out


def contested(vantages: Mapping[str, Vantage], raw: Mapping[str, bool | None],
              decided: Mapping[str, bool], waiting: Mapping[str, float],
              placed: Mapping[str, tuple[str, ...]] | None = None
              ) -> dict[str, tuple[dict[str, bool], bool | None, bool, float]]:
    """The targets worth showing, each with every vantage's last state (fresh or not), the
    votes' outcome, the verdict and the seconds a held flip waits (-1: none): those a
    vantage's last state differs from the verdict on (the fresh ones disagreeing among them),
    those with no outcome, and those the steadying holds. Any other target's vantages all
    say its verdict, so showing these is showing all."""
    placed = placed or {}
    out: dict[str, tuple[dict[str, bool], bool | None, bool, float]] = {}
    for target, up in decided.items():
        where = placed.get(target)
        states = {name: v.states[target] for name, v in vantages.items()
                  if target in v.states and (where is None or name in where)}
        outcome = raw.get(target)
        due = waiting.get(target, -1.0)
        if outcome is None or due >= 0 or any(s != up for s in states.values()):
            out[target] = (states, outcome, up, due)
    return out


@dataclass
class _Held:
    """One target's steadied verdict: since when it holds, and since when the votes have
    said otherwise (None: they agree with it)."""

    up: bool
    since: float
    against: float | None = None


class Steady:
    """The quorum outcome of each target over time, steadied by rise, fall and hold-down (see
    the module docstring). Time is the `now` each call passes: tests drive it exactly."""

    def __init__(self, rise: int, fall: int, hold_down: float, interval: float) -> None:
        self.rise, self.fall, self.hold_down, self.interval = rise, fall, hold_down, interval
        self.held: dict[str, _Held] = {}
        self.due = math.inf  # the earliest moment a flip waiting now may happen

    def step(self, raw: Mapping[str, bool | None], now: float) -> dict[str, bool | None]:
        """Each target's steadied verdict at `now`, given the votes' outcome `raw` (None: no
        verdict, and the votes against the last one start counting afresh when it comes
        back). Targets not in `raw` are forgotten."""
        held, out, due = self.held, {}, math.inf
        self.held = {}
        for target, vote in raw.items():
            one = held.get(target)
            if vote is None or one is None:
                out[target] = vote
                if vote is not None:
                    self.held[target] = _Held(vote, -math.inf)
                elif one is not None:
                    self.held[target] = _Held(one.up, one.since)
                continue
            self.held[target] = one
            if vote == one.up:
                one.against = None
            else:
                when = self._when(one, vote, now)
                if now >= when:
                    one.up, one.since, one.against = vote, now, None
                else:
                    due = min(due, when)
            out[target] = one.up
        self.due = due
        return out

    def waiting(self, now: float) -> dict[str, float]:
        """The targets whose votes say otherwise than their verdict, each with the seconds
        until the flip falls due if they keep saying so."""
        return {target: round(max(0.0, self._when(one, not one.up, now) - now), 3)
                for target, one in self.held.items() if one.against is not None}

    def _when(self, one: _Held, vote: bool, now: float) -> float:
        """When the votes saying `vote` against `one` flip it, if they keep saying so."""
        if one.against is None:
            one.against = now
        steps = (self.rise if vote else self.fall) - 1
        return max(one.against + steps * self.interval, one.since + self.hold_down)


def settle(raw: Mapping[str, bool | None], last: Mapping[str, bool], own: Mapping[str, bool],
           cut_off: str) -> dict[str, bool]:
    """The health to serve: each verdict, or where there is none, the last one ("keep") or
    this instance's own view ("own"); a target with neither (the first verdict of a new
    target) follows its own view, and one with no own view (its check runs elsewhere) keeps
    the last verdict whatever `cut_off` says, and is up before the first."""
    out: dict[str, bool] = {}
    for target, verdict in raw.items():
        if verdict is not None:
            out[target] = verdict
        elif (cut_off == "keep" or target not in own) and target in last:
            out[target] = last[target]
        else:
            out[target] = own.get(target, True)
    return out
