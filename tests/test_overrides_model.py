"""Admin overrides against a model: random drains, forces, removals and the passing of time.

The model keeps the whole history of requests and derives each answer from it (the latest
request for an address that was neither removed nor expired since), so it shares no state
with `Overrides`, which keeps only what is in force.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthdns.supervisor.overrides import Override, OverrideError, Overrides
from healthdns.supervisor.state import Kept, StateFile

ADDRESSES = ("192.0.2.1", "192.0.2.2", "192.0.2.3")
NAMES = ("www.example.test", "api.example.test")
# Check targets: the served addresses each one decides (two share a check).
TARGETS = (("192.0.2.1",), ("192.0.2.2", "192.0.2.3"))

Event = tuple[str, str, str, float | None]  # (op, subject, action, expires)

ops = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(ADDRESSES + NAMES),
              st.sampled_from(("drain", "force")),
              st.one_of(st.none(), st.floats(0.5, 5.0))),
    st.tuples(st.just("remove"), st.sampled_from(ADDRESSES + NAMES), st.just(""),
              st.none()),
    st.tuples(st.just("wait"), st.just(""), st.just(""), st.floats(0.1, 3.0)),
)


def in_force(history: list[tuple[float, Event]], subject: str, now: float) -> str | None:
    """The model: the action of the latest `set` of `subject` not undone since."""
    action: str | None = None
    for when, (op, who, what, expires) in history:
        if who != subject:
            continue
        if op == "set":
            action = what if expires is None or when + expires > now else None
        elif op == "remove":
            action = None
    return action


@settings(max_examples=300, deadline=None)
@given(st.lists(ops, max_size=30), st.lists(st.booleans(), min_size=2, max_size=2))
def test_overrides_follow_the_model(events: list[Event], probed: list[bool]) -> None:
    overrides = Overrides(set(ADDRESSES), set(NAMES))
    history: list[tuple[float, Event]] = []
    now = 1000.0
    for event in events:
        op, subject, action, value = event
        if op == "wait":
            now += value or 0.0
            overrides.expire(now)
            continue
        if op == "set":
            field = "name" if subject in NAMES else "address"
            overrides.set(Override(**{field: subject}, action=action, created=now,  # type: ignore[arg-type]
                                   expires=None if value is None else now + value), now)
        else:
            overrides.remove(subject)
        history.append((now, event))
        overrides.expire(now)
        for served, up in zip(TARGETS, probed, strict=True):
            actions = {in_force(history, a, now) for a in served}
            expected = False if "drain" in actions else (up or "force" in actions)
            assert overrides.effective(up, served) is expected
        assert overrides.names() == {n: in_force(history, n, now) == "force" for n in NAMES
                                     if in_force(history, n, now) is not None}


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(ADDRESSES + NAMES),
                          st.sampled_from(("drain", "force")),
                          st.one_of(st.none(), st.floats(1.0, 100.0)),
                          st.text(max_size=20)), max_size=6))
def test_the_state_file_keeps_every_override(tmp_path_factory: pytest.TempPathFactory,
                                             sets: list[tuple[str, str, float | None, str]]
                                             ) -> None:
    path = tmp_path_factory.mktemp("state") / "state.json"
    kept = Overrides(set(ADDRESSES), set(NAMES))
    for subject, action, expires, reason in sets:
        field = "name" if subject in NAMES else "address"
        kept.set(Override(**{field: subject}, action=action, reason=reason,  # type: ignore[arg-type]
                          expires=None if expires is None else 1000.0 + expires), 1000.0)
    state = StateFile(str(path), bytes(32))
    state.save(Kept(kept.listing()))
    loaded = state.load(1000.0)
    assert loaded is not None
    restored = Overrides(set(ADDRESSES), set(NAMES))
    assert restored.restore(loaded.overrides, 1000.0) == []
    assert restored.listing() == kept.listing()
    assert not list(path.parent.glob(".state.json.*"))  # no temporary file left behind


def test_restoring_drops_what_no_longer_applies_and_says_so() -> None:
    overrides = Overrides(set(ADDRESSES), set(NAMES))
    problems = overrides.restore([Override(address="192.0.2.9", action="drain"),
                                  Override(address="192.0.2.1", action="force", expires=10.0),
                                  Override(name="www.example.test", action="drain")], 20.0)
    assert problems == [
        ("override of '192.0.2.9' dropped: address: '192.0.2.9' is not an address of any "
         "checked pool"),
        "override of '192.0.2.1' dropped: expires: the time has already passed"]
    assert overrides.names() == {"www.example.test": False}


def test_an_override_names_one_subject() -> None:
    overrides = Overrides(set(ADDRESSES), set(NAMES))
    with pytest.raises(OverrideError, match="address, name: give one of them"):
        overrides.set(Override(address="192.0.2.1", name="www.example.test", action="drain"),
                      0.0)
