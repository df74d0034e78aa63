"""Key rolls as a pure state machine: the timings of RFC 7583 applied to one zone's keys.

Nothing here reads a clock, a file or the network: `advance` is given the time, what the
parent serves and a way to make a key, and returns the new state with a line per step taken.
`signer.keyring` does the rest (key files, the state file, asking the parent).

Every step is dated by the moment it is taken, and every wait is measured from the step before
it, so a clock that jumps forward takes one step, never a cascade: each phase still lasts its
minimum from the moment it began. A clock that jumps back only makes the next step later.

The rolls (RFC 7583 names: Dprp the zone's propagation, TTLkey the DNSKEY TTL, TTLsig the
longest TTL of a signed RRset, TTLds the parent's DS TTL):

- ZSK, pre-publication (3.2.1): the new key is published; after Ipub = Dprp + TTLkey every
  cached DNSKEY RRset holds it, and it signs in the old key's place (the signer re-signs the
  whole zone at once); after Iret = Dprp + TTLsig no cached signature is the old key's, and its
  DNSKEY is removed.
- KSK and CSK, double-RRset (3.3.3): the new key's DNSKEY is published and its DS asked for
  at once (CDS and CDNSKEY list both keys, RFC 7344); once its DNSKEY has propagated (Dprp +
  TTLkey) and every parent name server serves the new DS, and then TTLds plus the parent's
  propagation have passed (no cache holds a DS RRset without it), it signs in the old key's
  place; after Dprp + TTLkey (a CSK: the longer of TTLkey and TTLsig) the old DNSKEY goes, and
  with it its CDS, which asks the parent to withdraw the old DS. Until it goes, the old key
  still signs the DNSKEY RRset (beside the new one, RFC 7583 3.3.3's double signature): a
  parent that takes the new DS back, or serves the old one alone from a stale copy, leaves the
  zone valid, and the removal waits for it.

Before a step that cannot be taken back (a key that stops signing, a key withdrawn, which for
a KSK or CSK also asks the parent to withdraw its DS), `advance` asks its `guard` whether the
keys after the step still validate from the parent's DS set down to signed answers; a step it
refuses is not taken, and is tried again at the next call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import msgspec

from healthdns.shared.config import PolicySpec
from healthdns.shared.keystate import KeyEntry, RollState

ZONE_ROLES = ("csk", "zsk")  # sign the zone's RRsets
SEP_ROLES = ("csk", "ksk")  # sign the DNSKEY RRset; their DS is at the parent
KEPT_REMOVED = 2  # removed keys kept in the state per role, so `keys` can show the last roll


@dataclass(frozen=True)
class Timings:
    """The intervals of RFC 7583 for one zone, in seconds."""

    zsk_publish: float  # Ipub of a ZSK: Dprp + TTLkey
    zsk_retire: float  # Iret of a ZSK: Dprp + TTLsig
    sep_publish: float  # a KSK's or CSK's DNSKEY before it signs: Dprp + TTLkey
    ds_wait: float  # after every parent name server serves the new DS: TTLds + DprpP
    sep_retire: float  # a KSK's: Dprp + TTLkey; a CSK's: Dprp + max(TTLkey, TTLsig)
    lifetimes: Mapping[str, float]  # by role; 0: never rolled by itself

    def publish(self, role: str) -> float:
        return self.zsk_publish if role == "zsk" else self.sep_publish

    def retire(self, role: str) -> float:
        return self.zsk_retire if role == "zsk" else self.sep_retire


def timings(policy: PolicySpec, dnskey_ttl: int, max_ttl: int) -> Timings:
    """The intervals of a zone whose longest signed TTL is `max_ttl`."""
    key = policy.propagation + dnskey_ttl
    sig = policy.propagation + max_ttl
    return Timings(zsk_publish=key, zsk_retire=sig, sep_publish=key,
                   ds_wait=policy.ds_ttl + policy.parent_propagation,
                   sep_retire=max(key, sig) if policy.csk else key,
                   lifetimes={r: float(policy.lifetime(r)) for r in policy.roles()})


NewKey = Callable[[str], tuple[int, str]]  # role -> (key tag, file name) of a key just made
# The state a step would leave -> None when its keys validate, else why not (it waits).
Guard = Callable[[RollState], str | None]


def unguarded(state: RollState) -> str | None:
    return None


def bootstrap(zone: str, algorithm: str, roles: tuple[str, ...], now: float,
              new_key: NewKey) -> RollState:
    """The first keys of a zone: published and signing at once (nothing was cached before).

    Their DS is the operator's to give the parent (or the parent's to take from CDS).
    """
    entries = []
    for role in roles:
        tag, file = new_key(role)
        entries.append(KeyEntry(tag=tag, role=role, file=file, created=now, published=now,
                                active=now))
    return RollState(zone=zone, algorithm=algorithm, keys=tuple(entries))


def advance(state: RollState, t: Timings, now: float, parent: Mapping[int, bool],
            new_key: NewKey, guard: Guard = unguarded) -> tuple[RollState, list[str]]:
    """Every step due at `now` that `guard` lets through, and a line saying each.

    `parent`: by key tag, True when every parent name server serves that key's DS, False
    when none does (a tag missing: some do, or not known). A new key is made by `new_key`
    and recorded before it is used.
    """
    told: list[str] = []
    keys = list(state.keys)
    keys = observe(keys, now, parent, told)

    def keyed(after: list[KeyEntry]) -> str | None:
        return guard(msgspec.structs.replace(state, keys=tuple(after)))

    for role in sorted({k.role for k in keys}):
        keys = _roll(keys, role, t, now, parent, new_key, keyed, told)
    return msgspec.structs.replace(state, keys=_pruned(keys)), told


def unsign(state: RollState, t: Timings, now: float,
           no_ds: bool) -> tuple[RollState, list[str]]:
    """The steps of a zone whose DNSSEC is turned off under its policy (RFC 8078 4): it
    serves the delete CDS and CDNSKEY, signed, until no parent name server serves a DS
    (`no_ds`: every one answered, without a DS), then TTLds and the parent's propagation
    longer (no cache holds a DS any more), and only then is served unsigned. No key is made
    or rolled meanwhile."""
    replace = msgspec.structs.replace
    if state.unsigned is not None:
        return state, []
    if state.unsigning is None:
        return replace(state, unsigning=now), [
            ("serves the delete CDS and CDNSKEY (RFC 8078): the parent may remove its DS; "
             "signed until no parent name server serves one")]
    if not no_ds:
        if state.no_ds_since is None:
            return state, []
        return replace(state, no_ds_since=None), ["a parent name server serves a DS again"]
    if state.no_ds_since is None:
        return replace(state, no_ds_since=now), ["no parent name server serves a DS any more"]
    if now < state.no_ds_since + t.ds_wait:
        return state, []
    keys = tuple(replace(k, removed=k.removed if k.removed is not None else now,
                         ds_gone=k.ds_gone if k.ds_gone is not None else now)
                 for k in state.keys)
    return replace(state, keys=keys, unsigned=now, algorithm_roll=None), [
        "served unsigned: no parent name server serves a DS, and no cache holds one"]


def restarted(state: RollState, now: float) -> RollState:
    """`state` with the wait of each phase under way counted again from `now`, the moment a
    restarted signer's first generation is served: its predecessor, killed, may have taken a
    step (written to the state) whose zone never reached the responders. Waits for the
    parent are not counted from a step of ours, and stay."""
    replace = msgspec.structs.replace
    keys = []
    for k in state.keys:
        if k.removed is None and k.published is not None and k.active is None:
            k = replace(k, published=max(k.published, now))
        elif k.removed is None and k.retired is not None:
            k = replace(k, retired=max(k.retired, now))
        elif k.removed is None and k.withdrawn is not None:
            k = replace(k, withdrawn=max(k.withdrawn, now))
        keys.append(k)
    roll = state.algorithm_roll
    if roll is not None and roll.withdrawn is not None:
        roll = replace(roll, withdrawn=max(roll.withdrawn, now))
    elif roll is not None and roll.submitted is None and roll.published is not None:
        roll = replace(roll, published=max(roll.published, now))
    elif roll is not None and roll.published is None:
        roll = replace(roll, started=max(roll.started, now))
    return replace(state, keys=tuple(keys), algorithm_roll=roll)


def resign(state: RollState) -> tuple[RollState, list[str]]:
    """DNSSEC turned on again before the zone went unsigned: the delete CDS is withdrawn,
    the keys' CDS served again, and their rolls go on."""
    if state.unsigning is None or state.unsigned is not None:
        return state, []
    return msgspec.structs.replace(state, unsigning=None, no_ds_since=None), [
        "signs on: the delete CDS and CDNSKEY are withdrawn, its keys' CDS served again"]


def observe(keys: list[KeyEntry], now: float, parent: Mapping[int, bool],
             told: list[str]) -> list[KeyEntry]:
    """Note when the parent first serves a new key's DS, and stops serving an old one's."""
    out = []
    for k in keys:
        served = parent.get(k.tag)
        if k.role in SEP_ROLES and k.removed is None and k.ds_seen is None and served:
            k = msgspec.structs.replace(k, ds_seen=now)
            told.append(f"{k.role} {k.tag}: every parent name server serves its DS")
        elif k.removed is not None and k.ds_gone is None and served is False:
            k = msgspec.structs.replace(k, ds_gone=now)
            told.append(f"{k.role} {k.tag}: no parent name server serves its DS any more")
        out.append(k)
    return out


def _roll(keys: list[KeyEntry], role: str, t: Timings, now: float,
          parent: Mapping[int, bool], new_key: NewKey,
          guard: Callable[[list[KeyEntry]], str | None], told: list[str]) -> list[KeyEntry]:
    current = _current(keys, role)
    waiting = _successor(keys, role)
    for k in list(keys):
        if k.role == role and k.retired is not None and k.removed is None \
                and now >= k.retired + t.retire(role):
            after = [msgspec.structs.replace(k, removed=now) if o is k else o for o in keys]
            if guard(after) is None:
                keys = after
                told.append(f"{role} {k.tag}: removed from the DNSKEY RRset"
                            + (" and its CDS: the parent may withdraw its DS"
                               if role in SEP_ROLES else ""))
    if waiting is not None and current is not None and _ready(waiting, t, now, parent):
        after = [msgspec.structs.replace(k, active=now) if k is waiting else
                 msgspec.structs.replace(k, retired=now) if k is current else k for k in keys]
        if guard(after) is None:
            keys = after
            told.append(f"{role} {waiting.tag} signs in the place of {current.tag}")
    elif waiting is None and current is not None and current.active is not None:
        lifetime = t.lifetimes.get(role, 0.0)
        if lifetime and now >= current.active + lifetime - t.publish(role):
            tag, file = new_key(role)
            keys.append(KeyEntry(tag=tag, role=role, file=file, created=now, published=now))
            told.append(f"{role} {tag}: made and published, to follow {current.tag}"
                        + (" (its DS asked for by CDS)" if role in SEP_ROLES else ""))
    return keys


def _ready(k: KeyEntry, t: Timings, now: float, parent: Mapping[int, bool]) -> bool:
    """Whether a published successor may sign now."""
    if k.published is None or now < k.published + t.publish(k.role):
        return False
    if k.role == "zsk":
        return True
    # The DS must still be served now: a parent that took it back is waited for again.
    return k.ds_seen is not None and now >= k.ds_seen + t.ds_wait and parent.get(k.tag) is True


def _current(keys: list[KeyEntry], role: str) -> KeyEntry | None:
    active = [k for k in keys if k.role == role and k.active is not None and k.retired is None]
    return max(active, key=lambda k: k.active or 0.0, default=None)


def _successor(keys: list[KeyEntry], role: str) -> KeyEntry | None:
    return next((k for k in keys if k.role == role and k.active is None
                 and k.removed is None), None)


def _pruned(keys: list[KeyEntry]) -> tuple[KeyEntry, ...]:
    """Removed keys beyond the last few of each role are forgotten (a KSK's or CSK's only once
    its DS is gone from the parent)."""
    out: list[KeyEntry] = []
    for k in reversed(keys):
        older = sum(1 for o in out if o.role == k.role and o.removed is not None)
        if k.removed is None or older < KEPT_REMOVED \
                or (k.role in SEP_ROLES and k.ds_gone is None):
            out.append(k)
    return tuple(reversed(out))


def published(state: RollState) -> list[KeyEntry]:
    """The keys of the DNSKEY RRset."""
    return [k for k in state.keys
            if k.published is not None and k.removed is None and k.withdrawn is None]


def loaded(state: RollState) -> list[KeyEntry]:
    """The keys whose files the zone needs: those published, and those that sign without
    being published (of an algorithm roll)."""
    return [k for k in state.keys if k.removed is None]


def signing(state: RollState) -> list[KeyEntry]:
    return [k for k in state.keys if k.active is not None and k.retired is None]


def signing_keys_only(keys: Iterable[KeyEntry]) -> list[KeyEntry]:
    """Retired KSKs and CSKs not yet removed: they sign the DNSKEY RRset (and CDS, CDNSKEY)
    beside their successor, nothing else."""
    return [k for k in keys if k.role in SEP_ROLES and k.retired is not None
            and k.removed is None]


def cds(state: RollState) -> list[KeyEntry]:
    """The keys whose DS the parent should hold (RFC 7344): every KSK or CSK published; in
    an algorithm roll, those of the old algorithm until the new DS is asked for, then those
    of the new one alone."""
    sep = [k for k in published(state) if k.role in SEP_ROLES]
    roll = state.algorithm_roll
    if roll is None:
        return sep
    wanted = roll.old if roll.submitted is None else state.algorithm
    return [k for k in sep if (k.algorithm or state.algorithm) == wanted]


@dataclass(frozen=True)
class Next:
    """The next step of a zone's keys: when at the earliest (None: nothing due by time), and
    what it waits for, in words."""

    when: float | None
    what: str
    parent: bool = False  # it waits for the parent's name servers


def next_step(state: RollState, t: Timings, parent: Mapping[int, bool]) -> Next:
    """The earliest step to come, with what it waits for."""
    if state.unsigned is not None:
        return Next(None, "none: the zone is served unsigned (policy.insecure)")
    if state.unsigning is not None:
        if state.no_ds_since is None:
            return Next(None, "unsigned once no parent name server serves a DS (the delete "
                        "CDS asks for their removal)", parent=True)
        return Next(state.no_ds_since + t.ds_wait, "unsigned once no cache holds a DS")
    steps: list[Next] = []
    for role in sorted({k.role for k in state.keys}):
        steps.append(_next_of_role(list(state.keys), role, t, parent))
    timed = [s for s in steps if s.when is not None]
    waiting = [s for s in steps if s.parent]
    if waiting and (not timed or all(s.parent for s in timed)):
        return waiting[0]
    return min(timed, key=lambda s: s.when or 0.0, default=Next(None, "no roll is planned"))


def _next_of_role(keys: list[KeyEntry], role: str, t: Timings,
                  parent: Mapping[int, bool]) -> Next:
    retiring = [k for k in keys if k.role == role and k.retired is not None
                and k.removed is None]
    if retiring:
        k = retiring[0]
        return Next(k.retired + t.retire(role) if k.retired is not None else None,
                    f"{role} {k.tag}: removal once no cache holds what it signed")
    current, waiting = _current(keys, role), _successor(keys, role)
    if waiting is not None:
        return _next_of_successor(waiting, current, t, parent)
    if current is None or current.active is None or not t.lifetimes.get(role):
        return Next(None, f"{role}: no roll is planned")
    return Next(current.active + t.lifetimes[role] - t.publish(role),
                f"{role} {current.tag}: a successor is made and published")


def _next_of_successor(k: KeyEntry, current: KeyEntry | None, t: Timings,
                       parent: Mapping[int, bool]) -> Next:
    after = current.tag if current is not None else "none"
    assert k.published is not None  # a successor is published when made
    propagated = k.published + t.publish(k.role)
    if k.role == "zsk":
        return Next(propagated, f"zsk {k.tag}: signs in the place of {after} once every "
                    "cache holds its DNSKEY")
    if k.ds_seen is None or parent.get(k.tag) is not True:
        return Next(None, f"{k.role} {k.tag}: its DS is not yet served by every parent name "
                    "server", parent=True)
    return Next(max(propagated, k.ds_seen + t.ds_wait),
                f"{k.role} {k.tag}: signs in the place of {after} once no cache holds a "
                "DS RRset without it")
