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
          min_vantages: int, placed: dict[str, tuple[str, ...]] | None = None) -> bool | None:
    """docs/sites.md, read literally: the fresh, unfenced vantages that see the target vote
    (of a check with `vantages`, only those); too few votes (`min_vantages`, or of a placed
    check a majority of its vantages when fewer), no verdict; otherwise up when the share (or
    count, at most the placed check's vantages) of up votes reaches the quorum; "majority"
    is half or more."""
    where = (placed or {}).get(target)
    votes = [v.states[target] for name, v in vantages.items()
             if not v.fenced and NOW - v.heard <= STALE and target in v.states
             and (where is None or name in where)]
    least = max(1, min_vantages)
    if where is not None:
        least = min(least, len(where) // 2 + 1)
    if len(votes) < least:
        return None
    up = sum(votes)
    if quorum == "majority":
        return 2 * up >= len(votes)
    if isinstance(quorum, int):
        return up >= (quorum if where is None else min(quorum, len(where)))
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


placements = st.dictionaries(  # checks run by some vantages only
    st.sampled_from(TARGETS),
    st.lists(st.sampled_from(["self", "b", "c", "d", "e"]), min_size=1, max_size=4,
             unique=True).map(tuple))


@settings(max_examples=600, deadline=None)
@given(vantages, quorums, st.integers(0, 5), placements)
def test_the_verdict_is_the_model_s(views: dict[str, Vantage], quorum: verdict.Quorum,
                                    min_vantages: int,
                                    placed: dict[str, tuple[str, ...]]) -> None:
    got = verdict.combine(views, TARGETS, NOW, STALE, quorum, min_vantages, placed)
    assert got == {t: model(views, t, quorum, min_vantages, placed) for t in TARGETS}


@settings(max_examples=200, deadline=None)
@given(vantages, quorums, placements, st.sampled_from(TARGETS))
def test_a_vantage_that_does_not_run_a_check_never_moves_its_verdict(
        views: dict[str, Vantage], quorum: verdict.Quorum,
        placed: dict[str, tuple[str, ...]], target: str) -> None:
    where = placed.get(target, ("self",))
    outsider = next((n for n in ("self", "b", "c", "d", "e") if n not in where), None)
    if outsider is None:
        return
    base = verdict.combine(views, TARGETS, NOW, STALE, quorum, 1, {**placed, target: where})
    for says in (True, False):
        loud = {**views, outsider: Vantage({target: says}, NOW)}
        got = verdict.combine(loud, TARGETS, NOW, STALE, quorum, 1, {**placed, target: where})
        assert got[target] == base[target]


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
        elif (cut_off == "keep" or target not in own) and target in last:
            assert got[target] is last[target]  # no own view: its check runs elsewhere
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


@settings(max_examples=300, deadline=None)
@given(vantages, placements, st.dictionaries(st.sampled_from(TARGETS), st.booleans()),
       st.dictionaries(st.sampled_from(TARGETS), st.sampled_from([0.0, 1.5])))
def test_a_target_not_contested_has_every_vantage_saying_its_verdict(
        views: dict[str, Vantage], placed: dict[str, tuple[str, ...]],
        decided: dict[str, bool], waiting: dict[str, float]) -> None:
    """What explain relies on: a target left out of the contested ones has an outcome, no
    held flip, no fresh vantages apart, and every vantage that checks it last said its
    verdict; one shown carries every such vantage's last state."""
    raw = verdict.combine(views, decided, NOW, STALE, "majority", 1, placed)
    got = verdict.contested(views, raw, decided, waiting, placed)
    for target, up in decided.items():
        where = placed.get(target)
        states = {name: v.states[target] for name, v in views.items()
                  if target in v.states and (where is None or name in where)}
        calm = raw[target] is not None and target not in waiting and \
            all(s == up for s in states.values())
        assert (target not in got) == calm
        if target in got:
            assert got[target] == (states, raw[target], up, waiting.get(target, -1.0))


# --- the verdict over time: rise, fall and hold-down on the votes' outcome -----------------

INTERVAL = 1.0
views_now = st.builds(  # what one vantage says at one moment of a schedule
    lambda states, fenced: (states, fenced),
    st.one_of(st.fixed_dictionaries({t: st.booleans() for t in TARGETS}),
              st.dictionaries(st.sampled_from(TARGETS), st.booleans())),
    st.booleans() | st.just(False))
schedule = st.lists(st.tuples(
    st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0]),  # time since the previous evaluation
    st.dictionaries(st.sampled_from(["self", "b", "c"]), views_now, max_size=3)),  # reports
    min_size=1, max_size=40)


def model_at(views: dict[str, Vantage], target: str, now: float, quorum: verdict.Quorum,
             min_vantages: int) -> bool | None:
    votes = [v.states[target] for v in views.values()
             if not v.fenced and now - v.heard <= STALE and target in v.states]
    if len(votes) < max(1, min_vantages):
        return None
    up = sum(votes)
    if quorum == "majority":
        return 2 * up >= len(votes)
    if isinstance(quorum, int):
        return up >= quorum
    assert isinstance(quorum, float)
    return Fraction(up, len(votes)) >= Fraction(quorum).limit_denominator(1_000_000)


def steadied_model(history: list[tuple[float, bool | None]], rise: int, fall: int,
                   hold_down: float) -> list[bool | None]:
    """docs/sites.md, read by looking back: at each evaluation, a verdict that the outcome
    contradicts flips once the outcome has said so at every evaluation for (rise or fall - 1)
    intervals (since the start of its run) and the verdict is older than the hold-down; the
    first outcome of a target is its verdict, and no outcome (None) is no verdict."""
    verdict_now: bool | None = None
    flipped = float("-inf")
    out: list[bool | None] = []
    for i, (when, vote) in enumerate(history):
        if vote is None or verdict_now is None:
            verdict_now = vote if verdict_now is None else verdict_now
            out.append(vote)
            continue
        if vote != verdict_now:
            start = i
            while start > 0 and history[start - 1][1] == vote:
                start -= 1
            steps = (rise if vote else fall) - 1
            if when - history[start][0] >= steps * INTERVAL and when - flipped >= hold_down:
                verdict_now, flipped = vote, when
        out.append(verdict_now)
    return out


@settings(max_examples=400, deadline=None)
@given(schedule, quorums, st.integers(0, 3), st.integers(1, 4), st.integers(1, 4),
       st.sampled_from([0.0, 1.0, 2.5, 6.0]), st.sampled_from(verdict.CUT_OFF))
def test_the_verdict_over_time_is_the_model_s(
        events: list[tuple[float, dict[str, tuple[dict[str, bool], bool]]]],
        quorum: verdict.Quorum, min_vantages: int, rise: int, fall: int, hold_down: float,
        cut_off: str) -> None:
    """Random reports from three vantages over random schedules (so views go stale, fence
    and come back): what is served at each evaluation is the model's, every target."""
    steady = verdict.Steady(rise, fall, hold_down, INTERVAL)
    views: dict[str, Vantage] = {}
    now, last = 0.0, {}
    histories: dict[str, list[tuple[float, bool | None]]] = {t: [] for t in TARGETS}
    served_model: dict[str, bool] = {}
    for gap, reports in events:
        now += gap
        for name, (states, fenced) in reports.items():
            views[name] = Vantage(states, now, fenced)
        own = views["self"].states if "self" in views else {}
        views["self"] = Vantage(own, now, views["self"].fenced if "self" in views else False)
        raw = verdict.combine(views, TARGETS, now, STALE, quorum, min_vantages)
        steadied = steady.step(raw, now)
        last = verdict.settle(steadied, last, own, cut_off)
        held = steady.waiting(now)  # what explain shows as a flip held back
        assert held.keys() == {t for t, up in steadied.items()
                               if raw[t] is not None and up is not None and raw[t] != up}
        assert all(0 < due <= max(rise, fall) * INTERVAL + hold_down for due in held.values())
        for target in TARGETS:
            histories[target].append((now, model_at(views, target, now, quorum,
                                                    min_vantages)))
            want = steadied_model(histories[target], rise, fall, hold_down)[-1]
            if want is None:
                keep = cut_off == "keep" or target not in own
                want = served_model[target] if keep and target in served_model \
                    else own.get(target, True)
            served_model[target] = want
            assert last[target] is want, (target, histories[target])


def test_a_flip_waits_for_fall_evaluations_and_the_hold_down() -> None:
    steady = verdict.Steady(rise=2, fall=3, hold_down=10.0, interval=1.0)
    assert steady.step({"a": True}, 0.0) == {"a": True}  # the first: no change, no hold-down
    assert steady.step({"a": False}, 1.0) == {"a": True}
    assert steady.due == 3.0  # fall 3: at the change, and two intervals later
    assert steady.waiting(1.5) == {"a": 1.5}
    assert steady.step({"a": False}, 2.9) == {"a": True}
    assert steady.step({"a": False}, 3.0) == {"a": False}
    assert steady.step({"a": True}, 5.0) == {"a": False}  # rise 2, but held down until 13
    assert steady.due == 13.0
    assert steady.step({"a": True}, 13.0) == {"a": True}
    assert steady.step({"a": False}, 14.0) == {"a": True}
    assert steady.step({"a": True}, 15.0) == {"a": True}  # the votes came back: no count left
    assert steady.due == float("inf")
