"""What explain says of a target decided by peers (supervisor/vantages.py), from a readout:
each vantage's say, its standing and age, and the rule; a held flip, no verdict, a check run
from some sites, and a contested target past the ones the peers process sends."""

from __future__ import annotations

from healthdns.shared.config import PeerSpec, PeersSpec
from healthdns.shared.messages import PeerRow, Votes
from healthdns.supervisor import vantages
from healthdns.supervisor.readout import Readout

SPEC = PeersSpec(name="a", peers=(PeerSpec("b", "http://127.0.0.2:1"),
                                  PeerSpec("c", "http://127.0.0.3:1")), min_vantages=2,
                 placed={"only-ab": ("a", "b")})


def row(name: str, fresh: bool, age: float, fenced: bool = False) -> PeerRow:
    return PeerRow(name, fresh, age, 0, {}, 0, 0, fenced)


def readout(split: dict[str, Votes], total: int | None = None, c_fresh: bool = True,
            c_fenced: bool = False) -> Readout:
    return Readout(peers=(row("c", c_fresh, 9.5 if not c_fresh else 0.4, c_fenced),
                          row("b", True, 0.3)),
                   split=split, split_total=len(split) if total is None else total)


def says(said: dict[str, object]) -> dict[str, tuple[object, object, object]]:
    rows = said["vantages"]
    assert isinstance(rows, list)
    return {r["vantage"]: (r["state"], r["standing"], r["age"]) for r in rows}


def test_an_agreed_target_has_every_vantage_saying_its_verdict() -> None:
    said = vantages.say(readout({}), SPEC, "t", True)
    assert says(said) == {"a": ("up", "fresh", 0.0), "b": ("up", "fresh", 0.3),
                          "c": ("up", "fresh", 0.4)}
    assert said["rule"] == "up: 3 of 3 fresh vantages say up, quorum majority (2 up needed)"
    assert said["held"] is False and said["flip_due"] is None


def test_a_held_flip_is_shown_with_when_it_falls_due() -> None:
    split = {"t": Votes({"a": False, "b": False, "c": True}, False, True, 1.5)}
    said = vantages.say(readout(split), SPEC, "t", True)
    assert said["verdict"] == "up" and said["held"] is True and said["flip_due"] == 1.5
    assert said["rule"] == ("down: 2 of 3 fresh vantages say down, quorum majority (2 up "
                            "needed); held up by rise/fall/hold-down for 1.5 s more")


def test_stale_and_fenced_vantages_do_not_count_in_the_rule() -> None:
    split = {"t": Votes({"a": True, "b": True, "c": False}, True, True)}
    said = vantages.say(readout(split, c_fresh=False), SPEC, "t", True)
    assert says(said)["c"] == ("down", "stale", 9.5)
    assert said["rule"].startswith("up: 2 of 2 fresh vantages say up")
    fenced = vantages.say(readout(split, c_fenced=True), SPEC, "t", True)
    assert says(fenced)["c"][:2] == ("down", "fenced")


def test_no_verdict_says_what_is_served_instead() -> None:
    split = {"t": Votes({"a": True}, None, True)}
    said = vantages.say(readout(split, c_fresh=False), SPEC, "t", True)
    assert said["rule"].startswith("no verdict: ") and "the last verdict kept" in said["rule"]


def test_a_check_run_from_some_sites_names_the_others() -> None:
    said = vantages.say(readout({}), SPEC, "only-ab", False)
    assert says(said)["c"] == ("unknown", vantages.NOT_HERE, 0.4)
    assert said["rule"].startswith("down: 2 of 2 fresh vantages say down")


def test_a_contested_target_not_sent_is_not_guessed() -> None:
    split = {"other": Votes({"a": True, "b": False}, True, True)}
    said = vantages.say(readout(split, total=500), SPEC, "t", True)
    assert {s for s, _, _ in says(said).values()} == {"unknown"}
    assert said["rule"].startswith("not shown:")
