"""An algorithm roll (RFC 6781 4.1.4, the conservative order; RFC 7583's names for the
intervals), as a pure state machine beside `signer.rollover`: started when the policy's zone
is given another `algorithm`, it replaces every key (a CSK, or a KSK and a ZSK) at once:

1. start: a key of the new algorithm for each role signs every RRset beside the old keys, its
   DNSKEY not yet published. A validator may ask that every RRset carry a signature of each
   algorithm of the DNSKEY RRset it holds (RFC 4035 2.2), so the signatures come first;
2. after Dprp + TTLsig (every cached RRset carries both): the new DNSKEYs are published, the
   DNSKEY RRset signed by both KSKs;
3. after Dprp + TTLkey (every cached DNSKEY RRset holds them): the CDS and CDNSKEY ask for the
   new KSK's DS alone, the parent swapping the old DS for it;
4. once every parent name server serves the new DS, and TTLds + DprpP more (no cache holds a
   DS RRset without it): the old DNSKEYs are withdrawn, the old keys still signing;
5. after Dprp + TTLkey (no cached DNSKEY RRset holds an old key): the old keys are removed,
   and with them the old algorithm's signatures.

Steps 3, 4 and 5 change what the parent must hold or withdraw a key: each passes the guard
first (`signer.chain`), as a roll's step of `rollover.advance` does. No other roll steps
meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from healthdns.shared.keystate import AlgorithmRoll, KeyEntry, RollState
from healthdns.signer import rollover
from healthdns.signer.rollover import SEP_ROLES, Guard, NewKey, Next, Timings, observe, unguarded

replace = msgspec.structs.replace


def start(state: RollState, algorithm: str, roles: tuple[str, ...], now: float,
          new_key: NewKey) -> tuple[RollState, list[str]]:
    """Step 1: a key of `algorithm` for each of `roles`, signing, unpublished."""
    old = state.algorithm
    keys = [replace(k, algorithm=k.algorithm or old) for k in state.keys]
    made = []
    for role in roles:
        tag, file = new_key(role)
        keys.append(KeyEntry(tag=tag, role=role, file=file, created=now, active=now,
                             algorithm=algorithm))
        made.append(f"{role} {tag}")
    roll = AlgorithmRoll(old=old, started=now)
    return replace(state, algorithm=algorithm, keys=tuple(keys), algorithm_roll=roll), [
        (f"algorithm roll from {old} to {algorithm}: {', '.join(made)} sign beside the old "
        "keys, their DNSKEYs not yet published")]


def advance(state: RollState, t: Timings, now: float, parent: Mapping[int, bool],
            guard: Guard) -> tuple[RollState, list[str]]:
    """The step of the roll due at `now`, if `guard` lets it through."""
    roll = state.algorithm_roll
    assert roll is not None
    told: list[str] = []
    keys = observe(list(state.keys), now, parent, told)
    new = [k for k in keys if k.algorithm == state.algorithm and k.removed is None]
    old = [k for k in keys if k.algorithm == roll.old and k.removed is None]
    served = all(parent.get(k.tag) is True for k in new if k.role in SEP_ROLES)
    if roll.published is None:
        if now >= roll.started + t.zsk_retire:
            keys = [replace(k, published=now) if k in new else k for k in keys]
            roll = replace(roll, published=now)
            told.append("algorithm roll: the new keys' DNSKEYs are published")
    elif roll.submitted is None:
        if now >= roll.published + t.sep_publish:
            after = replace(state, keys=tuple(keys), algorithm_roll=replace(roll, submitted=now))
            if guard(after) is None:
                roll = replace(roll, submitted=now)
                told.append("algorithm roll: the CDS asks for the new DS alone")
    elif roll.ds_seen is None or not served:
        if served:
            roll = replace(roll, ds_seen=now)
            told.append("algorithm roll: every parent name server serves the new DS")
    elif roll.withdrawn is None:
        if now >= roll.ds_seen + t.ds_wait:
            after_keys = [replace(k, withdrawn=now) if k in old else k for k in keys]
            if guard(replace(state, keys=tuple(after_keys))) is None:
                keys, roll = after_keys, replace(roll, withdrawn=now)
                told.append("algorithm roll: the old keys' DNSKEYs are withdrawn; they sign on")
    elif now >= roll.withdrawn + t.sep_publish:
        after_keys = [replace(k, removed=now, retired=k.retired or now) if k in old else k
                      for k in keys]
        done = replace(state, keys=tuple(after_keys), algorithm_roll=None)
        if guard(done) is None:
            return done, [*told, (f"algorithm roll to {state.algorithm} done: the old keys "
                          "are removed, and their signatures")]
    return replace(state, keys=tuple(keys), algorithm_roll=roll), told


def next_step(state: RollState, t: Timings, parent: Mapping[int, bool]) -> Next:
    roll = state.algorithm_roll
    assert roll is not None
    if roll.published is None:
        return Next(roll.started + t.zsk_retire, "algorithm roll: the new DNSKEYs are "
                    "published once every cached RRset carries their signatures")
    if roll.submitted is None:
        return Next(roll.published + t.sep_publish, "algorithm roll: the CDS asks for the new "
                    "DS alone once every cached DNSKEY RRset holds the new keys")
    new_sep = [k for k in state.keys if k.algorithm == state.algorithm
               and k.role in SEP_ROLES and k.removed is None]
    if roll.ds_seen is None or not all(parent.get(k.tag) is True for k in new_sep):
        tags = " ".join(str(k.tag) for k in new_sep)
        return Next(None, f"algorithm roll: DS {tags} is not yet served by every parent name "
                    "server", parent=True)
    if roll.withdrawn is None:
        return Next(roll.ds_seen + t.ds_wait, "algorithm roll: the old DNSKEYs are withdrawn "
                    "once no cache holds a DS RRset without the new DS")
    return Next(roll.withdrawn + t.sep_publish, "algorithm roll: the old keys are removed once "
                "no cached DNSKEY RRset holds them")


def step(state: RollState, algorithm: str, roles: tuple[str, ...], t: Timings, now: float,
         parent: Mapping[int, bool], new_key: NewKey,
         guard: Guard = unguarded) -> tuple[RollState, list[str]]:
    """Every step due at `now` for a zone whose policy says `algorithm` and `roles`: of an
    algorithm roll while one is under way (or to start one), else of the keys' own rolls."""
    if state.algorithm_roll is not None:
        return advance(state, t, now, parent, guard)
    if state.algorithm != algorithm:
        return start(state, algorithm, roles, now, new_key)
    return rollover.advance(state, t, now, parent, new_key, guard)
