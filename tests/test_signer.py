"""The signer: what is served in each health state, and when a new snapshot is due."""

from __future__ import annotations

import struct
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype

from healthdns.shared import config, messages
from healthdns.signer.main import Signer


def cfg(policy: str = "serve-all") -> config.Config:
    return config.from_mapping({"zones": [{
        "origin": "example.test", "nameservers": ["ns1.example.net"],
        "records": {"www": {"pool": {"addresses": ["192.0.2.1", "192.0.2.2", "2001:db8::1"],
                                     "check": {"port": 80}, "policy": policy}}},
    }]})


def target(c: config.Config, address: str) -> str:
    pool = c.zones[0].records["www"].pool
    assert pool is not None
    return pool.check.target(address)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def ask(snapshot: messages.Snapshot, name: str, rdtype: str) -> dns.message.Message:
    """Answer as a responder would, from the snapshot's tables."""
    wire = dns.name.from_text(name).to_wire()
    qtype = struct.pack(">H", dns.rdatatype.from_text(rdtype))
    table = snapshot.zones[0]
    answer = table.answers.get(wire + qtype) or table.names.get(wire) or table.nxdomain
    header = struct.pack(">HHHHHH", 1, answer.flags, 1, answer.ancount, answer.nscount,
                         answer.arcount)
    soa = table.soa if answer.soa else b""  # responders put the zone's SOA first
    return dns.message.from_wire(header + wire + qtype + b"\x00\x01" + soa + answer.body)


def publish(signer: Signer, states: dict[str, bool], full: bool = False) -> Any:
    published = signer.update(states, full)
    return None if published is None else messages.decode_to_child(published.snapshot)


def addresses(response: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in response.answer for rd in rrset}


def test_only_healthy_addresses_per_family() -> None:
    c = cfg()
    snap = publish(Signer(c), {target(c, "192.0.2.1"): True, target(c, "192.0.2.2"): False,
                               target(c, "2001:db8::1"): True}, full=True)
    assert addresses(ask(snap, "www.example.test", "A")) == {"192.0.2.1"}
    assert addresses(ask(snap, "www.example.test", "AAAA")) == {"2001:db8::1"}


def test_serve_all_when_a_family_is_all_down() -> None:
    c = cfg()
    snap = publish(Signer(c), {target(c, "2001:db8::1"): True}, full=True)
    assert addresses(ask(snap, "www.example.test", "A")) == {"192.0.2.1", "192.0.2.2"}


def test_empty_policy_is_nodata_never_nxdomain() -> None:
    c = cfg("empty")
    snap = publish(Signer(c), {}, full=True)
    response = ask(snap, "www.example.test", "A")
    assert response.rcode() == dns.rcode.NOERROR
    assert not response.answer
    assert response.authority[0].rdtype == dns.rdatatype.SOA


def test_new_serial_only_when_what_is_served_changes() -> None:
    c = cfg()
    clock = Clock()
    signer = Signer(c, now=clock)
    first = publish(signer, {target(c, "192.0.2.1"): True}, full=True)
    clock.now += 10
    assert publish(signer, {target(c, "192.0.2.1"): True}) is None  # nothing changed
    assert publish(signer, {"tcp 198.51.100.1 80 5/2/2/2": False}) is None  # not ours
    second = publish(signer, {target(c, "192.0.2.2"): True})
    assert second.generation == first.generation + 1
    assert second.zones[0].serial == first.zones[0].serial + 10


def test_snapshot_holds_no_dnspython_objects() -> None:
    c = cfg()
    published = Signer(c).update({}, full=True)
    assert published is not None
    decoded = messages.decode_to_child(published.snapshot)
    assert isinstance(decoded, messages.Snapshot)
    assert all(isinstance(k, bytes) for k in decoded.zones[0].answers)


def resumed(c: config.Config, published: Any, clock: Clock) -> Signer:
    """A signer respawned after the one that made `published`, told where it left off."""
    signer = Signer(c, now=clock)
    signer.resume(messages.Resume(published.generation, published.serials, published.prints,
                                  published.snapshot, published.renewal))
    return signer


def test_a_respawned_signer_continues_the_serials() -> None:
    c = cfg()
    clock = Clock()
    first = Signer(c, now=clock)
    published = first.update({}, full=True)
    assert published is not None
    published = first.update({target(c, "192.0.2.1"): True}, full=False)
    assert published is not None
    second = resumed(c, published, clock)  # same second: the clock alone would repeat it
    again = second.update({target(c, "192.0.2.2"): True}, full=False)
    assert again is not None
    assert again.generation == published.generation + 1
    assert again.serials[0] == published.serials[0] + 1


def test_a_respawned_signer_changes_nothing_that_did_not_change() -> None:
    c = cfg()
    clock = Clock()
    first = Signer(c, now=clock)
    published = first.update({target(c, "192.0.2.1"): True}, full=True)
    assert published is not None
    second = resumed(c, published, clock)
    clock.now += 60
    # The supervisor hands it the same health: no new serial, no snapshot for anybody.
    assert second.update({target(c, "192.0.2.1"): True}, full=True) is None
    # The next real change is a delta from the predecessor's generation, holding only what
    # changed, and it brings a responder that held that generation to the fresh snapshot.
    changed = second.update({target(c, "192.0.2.2"): True}, full=False)
    assert changed is not None and changed.delta
    delta = messages.decode_to_child(changed.delta)
    assert isinstance(delta, messages.Delta) and delta.base == published.generation
    changed_keys = set(delta.zones[0].answers)
    www = dns.name.from_text("www.example.test").to_wire()
    apex = dns.name.from_text("example.test").to_wire()
    assert changed_keys and all(k.startswith((www, apex)) for k in changed_keys)
    from healthdns.responder.table import Table

    before = messages.decode_to_child(published.snapshot)
    after = messages.decode_to_child(changed.snapshot)
    assert isinstance(before, messages.Snapshot) and isinstance(after, messages.Snapshot)
    followed, fresh = Table(before).apply(delta), Table(after)
    assert (followed.answers, followed.names) == (fresh.answers, fresh.names)


def test_a_respawned_signer_renews_what_its_predecessor_signed(tmp_path: Any) -> None:
    c = signed_cfg(tmp_path)
    clock = Clock()
    published = Signer(c, now=clock).update({}, full=True)
    assert published is not None and published.renewal > clock.now
    second = resumed(c, published, clock)
    assert second.update({}, full=True) is None  # nothing changed
    assert second.next_renewal() == published.renewal  # but its signatures will fall due
    clock.now = published.renewal
    renewed = second.publish()
    assert renewed is not None and renewed.serials[0] > published.serials[0]
    assert renewed.renewal > clock.now + 86400


def test_queued_health_reports_make_one_generation() -> None:
    """Every report already queued when the signer starts a generation belongs in it."""
    import multiprocessing

    from test_signer_watch import next_word

    from healthdns.shared import child

    c = cfg()
    ctx = multiprocessing.get_context("spawn")
    parent, child_end = ctx.Pipe()
    messages.send(parent, messages.Start(0, config.encode(c)))
    messages.send(parent, messages.Health({}, full=True))
    for address in ("192.0.2.1", "192.0.2.2", "2001:db8::1"):
        messages.send(parent, messages.Health({target(c, address): True}, full=False))
    process = ctx.Process(target=child.enter, args=("signer", child_end))
    process.start()  # only now: all four reports are queued before it reads the first
    child_end.close()
    try:
        first = next_word(parent, 20)
        assert isinstance(first, messages.Published) and first.generation == 1
        snap = messages.decode_to_child(first.snapshot)
        assert addresses(ask(snap, "www.example.test", "A")) == {"192.0.2.1", "192.0.2.2"}
        choices = next_word(parent, 20)  # what /status shows of it
        assert isinstance(choices, messages.Choices) and choices.generation == 1
        assert next_word(parent, 0.5) is None  # and no generation per report after it
    finally:
        messages.send(parent, messages.Bye())
        process.join(5)
        if process.exitcode is None:
            process.kill()


def signed_cfg(tmp_path: Any) -> config.Config:
    import msgspec

    from healthdns.signer import keys

    key = tmp_path / "csk.pem"
    keys.write(keys.generate(keys.Algorithm.ED25519), str(key))
    document = msgspec.to_builtins(cfg())
    document["zones"][0]["dnssec"] = {"csk": str(key), "algorithm": "ED25519",
                                      "validity": 10 * 86400, "refresh": 4 * 86400}
    return config.from_mapping(document)


def test_signatures_are_renewed_in_one_batch_before_they_expire(tmp_path: Any) -> None:
    c = signed_cfg(tmp_path)
    clock = Clock()
    signer = Signer(c, now=clock)
    first = signer.update({}, full=True)
    assert first is not None
    zone_signer = signer.signers[0]
    assert zone_signer is not None
    made = zone_signer.signed
    renewal = signer.next_renewal()
    assert renewal is not None
    # Renewal falls between 6 days (validity - refresh) less 10% jitter and 6 days.
    assert 5.4 * 86400 <= renewal - clock.now <= 6 * 86400
    clock.now += 86400
    assert signer.publish() is None  # nothing is due yet
    clock.now = renewal
    renewed = signer.publish()
    assert renewed is not None and renewed.generation == first.generation + 1
    assert zone_signer.signed == 2 * made  # every signature renewed, in this one generation
    assert (signer.next_renewal() or 0) > clock.now + 5 * 86400
