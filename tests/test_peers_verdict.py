"""The verdict rule (peers/verdict.py) against a model of it written from docs/sites.md, over
random views, ages, fencing and quorum settings."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from healthdns.peers import verdict
from healthdns.peers.verdict import Vantage

TARGETS = ("a", "b", "c")
STALE = 3.0
NOW = 100.0


def model(vantages: dict[str, Vantage], target: str, quorum: verdict.Quorum,
          min_vantages: int) -> bool | None:
    """docs/sites.md, read literally: the fresh, unfenced vantages that see the target vote;
    too few votes, no verdict; otherwise up when the share (or count) of up votes reaches the
    quorum; "majority" is half or more."""
    votes = [v.states[target] for v in vantages.values()
             if not v.fenced and NOW - v.heard <= STALE and target in v.states]
    if len(votes) < max(1, min_vantages):
        return None
    up = sum(votes)
    if quorum == "majority":
        return 2 * up >= len(votes)
    if isinstance(quorum, int):
        return up >= quorum
    assert isinstance(quorum, float)
    return Fraction(up, len(votes)) >= Fraction(quorum).limit_denominator(1_000_000)


vantage = st.builds(
    Vantage,
    states=st.dictionaries(st.sampled_from(TARGETS), st.booleans()),
    heard=st.sampled_from([NOW, NOW - 1, NOW - STALE, NOW - STALE - 0.001, NOW - 50]),
    fenced=st.booleans())
vantages = st.dictionaries(st.sampled_from(["self", "b", "c", "d", "e"]), vantage, min_size=1)
quorums = st.one_of(st.just("majority"), st.integers(1, 5),
                    st.sampled_from([0.18, 0.34, 0.5, 2 / 3, 0.75, 1.0]))


@settings(max_examples=400, deadline=None)
@given(vantages, quorums, st.integers(0, 5))
def test_the_verdict_is_the_model_s(views: dict[str, Vantage], quorum: verdict.Quorum,
                                    min_vantages: int) -> None:
    got = verdict.combine(views, TARGETS, NOW, STALE, quorum, min_vantages)
    assert got == {t: model(views, t, quorum, min_vantages) for t in TARGETS}


@settings(max_examples=200, deadline=None)
@given(vantages, quorums, st.integers(0, 5), st.randoms())
def test_instances_that_hold_the_same_reports_agree(views: dict[str, Vantage],
                                                    quorum: verdict.Quorum, min_vantages: int,
                                                    rnd: object) -> None:
    """Each instance holds the views under its own names, in its own order: same verdict."""
    import random
    assert isinstance(rnd, random.Random)
    names = list(views)
    rnd.shuffle(names)
    renamed = {f"v{i}": views[name] for i, name in enumerate(names)}
    assert verdict.combine(renamed, TARGETS, NOW, STALE, quorum, min_vantages) == \
        verdict.combine(views, TARGETS, NOW, STALE, quorum, min_vantages)


@settings(max_examples=200, deadline=None)
@given(vantages, quorums, st.sampled_from(TARGETS), st.sampled_from(["self", "b", "c"]))
def test_a_vote_for_up_never_takes_a_target_down(views: dict[str, Vantage],
                                                 quorum: verdict.Quorum, target: str,
                                                 who: str) -> None:
    before = verdict.combine(views, TARGETS, NOW, STALE, quorum, 1)[target]
    one = views.get(who, Vantage({}, NOW))
    raised = {**views, who: Vantage({**one.states, target: True}, one.heard, one.fenced)}
    after = verdict.combine(raised, TARGETS, NOW, STALE, quorum, 1)[target]
    assert not (before is True and after is False)


@settings(max_examples=200, deadline=None)
@given(vantages, quorums, st.dictionaries(st.sampled_from(TARGETS), st.booleans()))
def test_a_stale_or_fenced_vantage_changes_nothing(views: dict[str, Vantage],
                                                   quorum: verdict.Quorum,
                                                   says: dict[str, bool]) -> None:
    base = verdict.combine(views, TARGETS, NOW, STALE, quorum, 1)
    stale = {**views, "stale": Vantage(says, NOW - STALE - 1)}
    fenced = {**views, "fenced": Vantage(says, NOW, fenced=True)}
    assert verdict.combine(stale, TARGETS, NOW, STALE, quorum, 1) == base
    assert verdict.combine(fenced, TARGETS, NOW, STALE, quorum, 1) == base


def test_one_vantage_cut_off_of_three_keeps_the_target_and_two_drop_it() -> None:
    up, down = Vantage({"a": True}, NOW), Vantage({"a": False}, NOW)
    assert verdict.combine({"x": up, "y": up, "z": down}, ["a"], NOW, STALE, "majority", 2) \
        == {"a": True}
    assert verdict.combine({"x": up, "y": down, "z": down}, ["a"], NOW, STALE, "majority", 2) \
        == {"a": False}


@given(st.dictionaries(st.sampled_from(TARGETS), st.one_of(st.none(), st.booleans())),
       st.dictionaries(st.sampled_from(TARGETS), st.booleans()),
       st.dictionaries(st.sampled_from(TARGETS), st.booleans()),
       st.sampled_from(verdict.CUT_OFF))
def test_without_a_verdict_the_last_is_kept_or_the_own_view_followed(
        raw: dict[str, bool | None], last: dict[str, bool], own: dict[str, bool],
        cut_off: str) -> None:
    got = verdict.settle(raw, last, own, cut_off)
    for target, one in raw.items():
        if one is not None:
            assert got[target] is one
        elif cut_off == "keep" and target in last:
            assert got[target] is last[target]
        else:
            assert got[target] is own.get(target, True)


@settings(max_examples=200, deadline=None)
@given(vantages)
def test_a_split_lists_every_target_the_voters_disagree_on(views: dict[str, Vantage]) -> None:
    got = verdict.split(views, TARGETS, NOW, STALE)
    for target in TARGETS:
        votes = {name: v.states[target] for name, v in views.items()
                 if not v.fenced and NOW - v.heard <= STALE and target in v.states}
        assert got.get(target) == (votes if len(set(votes.values())) == 2 else None)
