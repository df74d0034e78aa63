"""The chain check before each step of a roll that cannot be taken back (signer/chain.py), and
what the signer makes of a parent that serves odd DS RRsets (signer/parent.py), on a fake
clock with a fake parent: the keys are real, signed with and checked by dnspython's validator.

The live counterpart, with Knot as the parent and delv validating throughout, is
tests/test_rollover_parent.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

import dns.name
import dns.rdtypes.ANY.DS
import msgspec
import pytest

from healthdns.shared import config, keystate
from healthdns.shared.config import PolicySpec
from healthdns.signer import chain, keyrecords, keyrings, parent
from healthdns.signer.keyring import Keyring
from healthdns.signer.keys import Key, KeyFileError

ZONE = dns.name.from_text("example.test.")
START = 1_000_000.0
DS = dns.rdtypes.ANY.DS.DS


class FakeParent:
    """One parent name server: it serves `serving` (None: it does not answer), or, while
    `follows`, the DS of every key the zone's CDS asks for."""

    def __init__(self) -> None:
        self.serving: list[DS] | None = []
        self.follows = True
        self.asked = 0

    def fetch(self, zone: dns.name.Name, policy: PolicySpec, sep: list[Key],
              gone: list[int]) -> parent.Answer:
        self.asked += 1
        if self.follows:
            self.serving = [keyrecords.ds(zone, k.dnskey) for k in sep]
        return parent.judged(zone, sep, gone, {"192.0.2.53": self.serving})


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def rings(tmp_path: Path, fake: FakeParent, clock: Clock, monkeypatch: pytest.MonkeyPatch,
          algorithm: str = "ED25519", **policy: object) -> keyrings.Keyrings:
    """The keyrings of a zone with TTLs of 1 s and `policy`, asking `fake` as its parent."""
    monkeypatch.setattr(parent, "fetch", fake.fetch)
    doc = {"zones": [{"origin": "example.test", "nameservers": ["ns1.example.net"],
                      "ttl": 1, "ns_ttl": 1, "soa": {"ttl": 1, "minimum": 1},
                      "records": {"www": {"a": ["192.0.2.1"]}},
                      "dnssec": {"algorithm": algorithm, "dnskey_ttl": 1,
                                 "key_dir": str(tmp_path / "keys"),
                                 "policy": {"propagation": 0, "ds_ttl": 1,
                                            "parent_propagation": 0, "check_interval": 1,
                                            **policy}}}]}
    made = keyrings.Keyrings(clock)
    made.configure(config.from_mapping(doc))
    return made


def run(made: keyrings.Keyrings, clock: Clock, seconds: float, until: str = "") -> Keyring:
    """Step the keyrings every 0.25 s of fake time for `seconds`, or until a key's line
    (ROLE TAG STATE) says `until`."""
    ring = made.rings[0]
    end = clock.now + seconds
    while clock.now < end:
        clock.now += 0.25
        made.step()
        if until and until in ", ".join(_keys(ring)):
            break
    return ring


def _keys(ring: Keyring) -> list[str]:
    return [f"{k.role} {k.tag} {k.state}" for k in ring.state.keys]


def ds_of(ring: Keyring, tag: int) -> DS:
    return next(keyrecords.ds(ZONE, k.dnskey) for k in ring.keys if k.tag == tag)


def sep(ring: Keyring, state: str) -> int:
    return next(k.tag for k in ring.state.keys if k.role == "ksk" and k.state == state)


def validates(ring: Keyring, dses: list[DS]) -> bool:
    """Whether what the zone serves now validates from `dses`."""
    return chain.check(ZONE, ring.signing_keys(), ring.cds_keys(), ring.spec,
                       {"the parent": dses}, ring.sample, START) is None


def test_the_old_ksk_stays_while_the_parent_serves_its_ds_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent takes the new DS back after the new KSK signs: the old KSK still signs the
    DNSKEY RRset, so the zone stays valid, and its removal waits, saying why, until the
    parent serves the new DS again."""
    fake, clock = FakeParent(), Clock()
    made = rings(tmp_path, fake, clock, monkeypatch, ksk_lifetime=10, zsk_lifetime=0)
    ring = run(made, clock, 30, until="retired")
    old, new = sep(ring, "retired"), sep(ring, "active")
    fake.follows, fake.serving = False, [ds_of(ring, old)]  # a stale copy at the registrar
    ring = run(made, clock, 10)
    assert sep(ring, "retired") == old  # still published, still signing the DNSKEY RRset
    assert validates(ring, [ds_of(ring, old)]) and validates(ring, [ds_of(ring, new)])
    assert ring.held is not None
    assert f"the DS RRset served by 192.0.2.53 (DS {old}) is of no key of the DNSKEY RRset " \
           "after this step" in ring.held
    shown = keystate.read(keystate.path_of(str(tmp_path / "keys"), "example.test"))
    assert f"ksk {old}: removal once no cache holds what it signed; held: " in shown.next_what
    assert shown.held == ring.held
    assert shown.waits_for_parent and made.rolls() == [("example.test", 0.0, True)]
    asked = fake.asked
    run(made, clock, 5)
    assert 4 <= fake.asked - asked <= 6  # asked again every check_interval, not in a loop
    fake.serving = [ds_of(ring, old), ds_of(ring, new)]
    ring = run(made, clock, 3)
    assert ring.held is None
    assert [k.state for k in ring.state.keys if k.tag == old] == ["removed"]


def test_a_ds_of_no_key_of_ours_is_warned_about_and_alone_holds_the_roll(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    fake, clock = FakeParent(), Clock()
    made = rings(tmp_path, fake, clock, monkeypatch, ksk_lifetime=10, zsk_lifetime=10)
    ring = made.rings[0]
    stray = DS(1, 43, 1234, 15, 2, b"\x01" * 32)  # type: ignore[no-untyped-call]
    first = sep(ring, "active")
    fake.follows, fake.serving = False, [ds_of(ring, first), stray]
    with caplog.at_level(logging.WARNING, logger="healthdns.signer"):
        ring = run(made, clock, 10, until="submitted")
        new = sep(ring, "submitted")
        fake.serving = [ds_of(ring, first), ds_of(ring, new), stray]
        ring = run(made, clock, 10, until=f"ksk {first} removed")
    warned = [r.getMessage() for r in caplog.records if "of no key of this zone" in r.getMessage()]
    assert warned == [("example.test: 192.0.2.53 serves DS 1234 (algorithm 15, digest type 2), "
                       "which is of no key of this zone")]  # once, not at every ask
    assert [k.state for k in ring.state.keys if k.tag == first] == ["removed"]  # rolled on
    shown = keystate.read(keystate.path_of(str(tmp_path / "keys"), "example.test"))
    assert shown.parent_stray == warned[0].split(": ", 1)[1:]  # for `healthdns-ctl keys`
    # The parent serves the stray DS alone: the zone is bogus already; no step is taken that
    # it could not validate (the ZSK's), and the next KSK waits for its DS.
    fake.serving = [stray]
    ring = run(made, clock, 20)
    assert ring.held is not None and "(DS 1234) is of no key of the DNSKEY RRset" in ring.held
    assert sep(ring, "active") == new and "submitted" in _keys(ring)[-1] + " ".join(_keys(ring))


def test_a_parent_that_does_not_answer_holds_a_ksk_step_not_a_zsk_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, clock = FakeParent(), Clock()
    made = rings(tmp_path, fake, clock, monkeypatch, ksk_lifetime=10, zsk_lifetime=10)
    ring = made.rings[0]
    while not any(k.role == "ksk" and k.state == "retired" for k in ring.state.keys):
        ring = run(made, clock, 0.25)
    fake.follows, fake.serving = False, None
    zsks = {k.tag for k in ring.state.keys if k.role == "zsk"}
    ring = run(made, clock, 15)
    assert ring.held is not None
    assert "the parent's DS RRset cannot be checked: 192.0.2.53 did not answer" in ring.held
    assert any(k.role == "ksk" and k.state == "retired" for k in ring.state.keys)
    # ZSK steps change nothing the parent holds: they go on, checked inside the zone.
    assert {k.tag for k in ring.state.keys if k.role == "zsk"} - zsks


def test_a_ds_of_another_digest_type_counts_as_served(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A registrar that makes SHA-384 DS records from CDNSKEY: the roll goes on."""
    fake, clock = FakeParent(), Clock()
    made = rings(tmp_path, fake, clock, monkeypatch, ksk_lifetime=10, zsk_lifetime=0)
    ring = made.rings[0]
    first = sep(ring, "active")
    fake.follows = False
    sha384 = [keyrecords.ds(ZONE, k.dnskey, 4) for k in ring.keys if k.tag == first]
    fake.serving = sha384
    ring = run(made, clock, 10, until="submitted")
    new = sep(ring, "submitted")
    fake.serving = sha384 + [keyrecords.ds(ZONE, k.dnskey, 4) for k in ring.keys
                             if k.tag == new]
    ring = run(made, clock, 10, until="removed")
    assert sep(ring, "active") == new and ring.held is None


def test_a_step_the_chain_check_refuses_leaves_the_state_file_as_it_was(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Held steps are not half taken: the state read back at a restart is the one before."""
    fake, clock = FakeParent(), Clock()
    made = rings(tmp_path, fake, clock, monkeypatch, ksk_lifetime=10, zsk_lifetime=0)
    ring = run(made, clock, 30, until="retired")
    fake.follows, fake.serving = False, [ds_of(ring, sep(ring, "retired"))]
    ring = run(made, clock, 5)
    path = keystate.path_of(str(tmp_path / "keys"), "example.test")
    read = keystate.read(path)
    assert msgspec.structs.replace(read, next_when=None, next_what="", waits_for_parent=False,
                                   parent_asked=None, parent_missing={}).keys == ring.state.keys
    again = Keyring("example.test.", ring.spec, ring.t, clock.now)
    assert again.state.keys == ring.state.keys


def test_a_clock_that_jumps_back_takes_no_step_early(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A day back in the middle of a ZSK roll: nothing happens until the step's own time."""
    fake, clock = FakeParent(), Clock()
    made = rings(tmp_path, fake, clock, monkeypatch, zsk_lifetime=10)
    ring = run(made, clock, 30, until=" published")
    new = next(k for k in ring.state.keys if k.state == "published")
    before = ring.state
    clock.now -= 86400
    ring = run(made, clock, 60)
    assert ring.state.keys == before.keys
    assert made.due() is not None and made.due() >= new.published + ring.t.zsk_publish
    clock.now = new.published + ring.t.zsk_publish + 0.1
    made.step()
    active = next(k for k in ring.state.keys if k.tag == new.tag)
    assert active.active is not None and active.active - active.published >= ring.t.zsk_publish


def test_dnssec_turned_off_serves_the_delete_cds_until_the_parent_has_no_ds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC 8078 4 under a policy: signed, with the delete CDS and CDNSKEY, until every parent
    name server serves no DS (a DS that comes back starts the wait again) and TTLds has
    passed; then unsigned, its key files gone."""
    fake, clock = FakeParent(), Clock()
    made = rings(tmp_path, fake, clock, monkeypatch, csk=True)
    ring = made.rings[0]
    fake.follows = False
    fake.serving = [ds_of(ring, k.tag) for k in ring.keys]
    made = rings(tmp_path, fake, clock, monkeypatch, csk=True, insecure=True)
    ring = made.rings[0]
    assert made.due() is not None and made.due() <= clock.now  # due at once
    made.step()
    [delete] = ring.cds_keys()
    assert delete.dnskey.to_text() == "0 3 0 AA=="
    assert ring.signing_keys() and not ring.unsigned  # still signed
    ring = run(made, clock, 5)
    assert not ring.unsigned and made.rolls() == [("example.test", 0.0, True)]
    assert "unsigned once no parent name server serves a DS" in ring.next_step().what
    fake.serving = []
    run(made, clock, 0.5)
    fake.serving = [ds_of(ring, k.tag) for k in ring.keys]  # a server that lags behind
    ring = run(made, clock, 0.5)
    assert ring.state.no_ds_since is None
    fake.serving = []
    gone = clock.now
    ring = run(made, clock, 10, until="removed")
    assert ring.unsigned and ring.state.unsigned is not None
    assert ring.state.no_ds_since is not None
    assert ring.state.unsigned - ring.state.no_ds_since >= ring.t.ds_wait
    assert ring.state.unsigned >= gone + ring.t.ds_wait
    assert ring.signing_keys() == []
    assert not [p for p in (tmp_path / "keys").iterdir() if p.suffix == ".pem"]


def test_a_parent_that_does_not_answer_keeps_the_zone_signed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, clock = FakeParent(), Clock()
    made = rings(tmp_path, fake, clock, monkeypatch, csk=True, insecure=True)
    assert made.rings[0].unsigned  # a zone new under `insecure` is unsigned from the start
    rings(tmp_path, fake, clock, monkeypatch, csk=True)  # signed: new keys
    fake.follows, fake.serving = False, None
    made = rings(tmp_path, fake, clock, monkeypatch, csk=True, insecure=True)
    ring = run(made, clock, 10)
    assert not ring.unsigned and ring.signing_keys()


def test_dnssec_turned_on_again_withdraws_the_delete_cds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, clock = FakeParent(), Clock()
    first = rings(tmp_path, fake, clock, monkeypatch, csk=True).rings[0].cds_keys()
    made = rings(tmp_path, fake, clock, monkeypatch, csk=True, insecure=True)
    run(made, clock, 1)
    assert made.rings[0].cds_keys()[0].dnskey.algorithm == 0
    made = rings(tmp_path, fake, clock, monkeypatch, csk=True)
    ring = run(made, clock, 1)
    assert [k.dnskey for k in ring.cds_keys()] == [k.dnskey for k in first]
    assert ring.state.unsigning is None


def test_an_algorithm_roll_validates_at_every_step(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """ED25519 to ECDSAP256SHA256 with real keys: after every step what the zone serves
    validates from the DS the parent serves; the new keys sign before their DNSKEYs are
    published, and the old ones after theirs are withdrawn."""
    fake, clock = FakeParent(), Clock()
    rings(tmp_path, fake, clock, monkeypatch, ksk_lifetime=0, zsk_lifetime=0)
    made = rings(tmp_path, fake, clock, monkeypatch, "ECDSAP256SHA256", ksk_lifetime=0,
                 zsk_lifetime=0)
    ring = run(made, clock, 0.25)
    with pytest.raises(KeyFileError, match=r"an algorithm roll from ED25519 to "
                       r"ECDSAP256SHA256 is under way; it cannot be turned to ED25519"):
        rings(tmp_path, fake, clock, monkeypatch, ksk_lifetime=0, zsk_lifetime=0)
    made = rings(tmp_path, fake, clock, monkeypatch, "ECDSAP256SHA256", ksk_lifetime=0,
                 zsk_lifetime=0)
    ring = made.rings[0]
    phases: list[str] = []
    fake.follows = False  # a registrar that swaps the DS a second after the CDS changed
    copied: list[tuple[float, list[DS]]] = []
    while ring.state.algorithm_roll is not None or not phases:
        wanted = [keyrecords.ds(ZONE, k.dnskey) for k in ring.cds_keys()]
        if not copied or copied[-1][1] != wanted:
            copied.append((clock.now + (1 if copied else 0), wanted))
        if clock.now >= copied[-1][0]:
            fake.serving = copied[-1][1]
        ring = run(made, clock, 0.25)
        served = list(fake.serving or [])
        assert validates(ring, served), (ring.state, served)
        phase = ", ".join(_keys(ring))
        if not phases or phases[-1] != phase:
            phases.append(phase)
        assert clock.now < START + 60
    states = [" ".join(sorted({line.split()[2] for line in p.split(", ")})) for p in phases]
    assert states == ["active presigning", "active", "active withdrawn", "active removed"]
    live = [k for k in ring.keys]
    assert {k.dnskey.algorithm for k in live} == {13} and not any(k.hidden for k in live)
    assert "of no key of this zone" not in caplog.text  # the old DS is the zone's, no stray


def test_a_clock_that_jumps_forward_takes_one_step_not_a_cascade(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A year ahead in the middle of a ZSK roll: the new key signs, and the old one stays
    published for its whole retire interval, counted from the jump."""
    fake, clock = FakeParent(), Clock()
    made = rings(tmp_path, fake, clock, monkeypatch, zsk_lifetime=10)
    ring = run(made, clock, 30, until=" published")
    clock.now += 365 * 86400
    made.step()
    made.step()
    zsks = {k.state: k for k in ring.state.keys if k.role == "zsk"}
    assert sorted(zsks) == ["active", "retired"]
    assert zsks["retired"].retired == clock.now
    clock.now += ring.t.zsk_retire - 0.1
    made.step()
    assert "retired" in {k.state for k in ring.state.keys}


def test_a_restarted_signer_counts_the_wait_under_way_from_its_first_generation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed right after it published a new ZSK in its state, a signer's zone may never have
    shown it: its successor takes no step before its own first generation is served, and
    counts the new key's wait from then."""
    fake, clock = FakeParent(), Clock()
    made = rings(tmp_path, fake, clock, monkeypatch, zsk_lifetime=10)
    ring = run(made, clock, 30, until=" published")
    new = next(k for k in ring.state.keys if k.state == "published")
    clock.now = new.published + ring.t.zsk_publish + 5  # its wait is over, by the state
    again = keyrings.Keyrings(clock, served=False)
    again.configure(config.from_mapping(_doc(made)))
    assert again.due() is None and again.step() == set()
    again.first_served()
    assert again.rings[0].state.keys != ring.state.keys
    assert again.due() == clock.now + ring.t.zsk_publish
    again.step()
    assert "published" in {k.state for k in again.rings[0].state.keys}
    clock.now += ring.t.zsk_publish
    again.step()
    assert "retired" in {k.state for k in again.rings[0].state.keys}


def _doc(made: keyrings.Keyrings) -> dict[str, object]:
    """The configuration document `rings` made `made` from (the same zone, keys, policy)."""
    ring = made.rings[0]
    assert ring.spec.policy is not None
    policy = {f: getattr(ring.spec.policy, f) for f in ring.spec.policy.__struct_fields__}
    return {"zones": [{"origin": "example.test", "nameservers": ["ns1.example.net"],
                       "ttl": 1, "ns_ttl": 1, "soa": {"ttl": 1, "minimum": 1},
                       "records": {"www": {"a": ["192.0.2.1"]}},
                       "dnssec": {"algorithm": ring.spec.algorithm, "dnskey_ttl": 1,
                                  "key_dir": ring.spec.key_dir,
                                  "policy": {**policy,
                                             "parent_nameservers":
                                                 list(ring.spec.policy.parent_nameservers)}}}]}
