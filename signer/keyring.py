"""A zone's own keys under a policy: their files, the state of their rolls, and its steps.

`key_dir` holds, per zone, one state file (`ZONE.state`, JSON) and a key file per key
(`ZONE-ROLE-TAG.pem`). The folder is mode 700 and every file in it 600, owned by the user the
signer runs as. Every write survives a SIGKILL at any moment:

- a new key's file is written and synced (file and folder) before the state names it; killed
  in between, the file is an orphan, deleted at the next start, and a key is made anew;
- the state is written to a temporary file, synced, renamed over the old one, and the folder
  synced: a reader sees the old state or the new, never a part;
- a removed key's file is deleted only after the state that removed it is on disk.

So a signer started again reads exactly the step it took last and continues from there.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping, Sequence

import dns.name
import msgspec
from dns.dnssectypes import Algorithm

from healthdns.shared import files, keystate
from healthdns.shared.config import DnssecSpec
from healthdns.shared.keystate import RollState
from healthdns.signer import algorithmroll, chain, keys, parent, rollover
from healthdns.signer.keys import Key, KeyFileError
from healthdns.signer.rollover import Timings

log = logging.getLogger("healthdns.signer.keys")


class Keyring:
    """One zone's keys in `key_dir` and its roll, stepped by `step`."""

    def __init__(self, zone: str, spec: DnssecSpec, t: Timings, now: float,
                 sample: Sequence[chain.Sample] = (), fetch: parent.Fetch | None = None) -> None:
        assert spec.policy is not None and spec.key_dir is not None
        self.zone, self.spec, self.t = zone, spec, t
        self.origin = dns.name.from_text(zone)
        self.folder = spec.key_dir
        self.algorithm = Algorithm[spec.algorithm]
        self.label = keystate.label(zone)
        self.sample = sample  # RRsets signed and validated before each step (`chain.check`)
        self.fetch = fetch  # asks the parent's name servers; None: there is no parent to ask
        self.parent: dict[int, bool] = {}  # by key tag: every parent name server serves its DS
        self.parent_asked: float | None = None
        self.answer: parent.Answer | None = None  # the parent's answer at `parent_asked`
        self.missing: dict[int, str] = {}
        self.held: str | None = None  # why the step due is not taken (the chain would break)
        self.held_at = 0.0
        self.delete = keys.delete_marker()
        _make_folder(self.folder)
        self.state = RollState(zone=zone, algorithm=spec.algorithm)  # no key tag taken yet
        found = self._read()
        if found is None and spec.policy.insecure:
            self.state = RollState(zone=zone, algorithm=spec.algorithm, unsigned=now)
            self._write()
        elif found is None or (found.unsigned is not None and not spec.policy.insecure):
            self.state = rollover.bootstrap(zone, spec.algorithm, spec.policy.roles(), now,
                                             self._new_key)
            self._write()
            log.info("%s: made its first keys: %s", self.label, _listed(self.state))
        elif found.algorithm_roll is not None and found.algorithm != spec.algorithm:
            raise KeyFileError(f"{self._state_file()}: an algorithm roll from "
                               f"{found.algorithm_roll.old} to {found.algorithm} is under way; "
                               f"it cannot be turned to {spec.algorithm}: set algorithm = "
                               f"\"{found.algorithm}\" until `healthdns-ctl keys` says it is done")
        else:
            self.state = found
            log.info("%s: resuming its keys: %s", self.label, _listed(self.state))
        self.keys = self._load(self.state)
        self._clean()

    def step(self, now: float) -> bool:
        """Take every step due that keeps the chain valid; whether the keys the zone serves
        changed."""
        before = self.state
        refused: list[str] = []
        assert self.spec.policy is not None
        if self.spec.policy.insecure:
            state, told = rollover.unsign(before, self.t, now, self._no_ds(now))
        else:
            state, told = rollover.resign(before)
            state, more = algorithmroll.step(state, self.spec.algorithm,
                                             self.spec.policy.roles(), self.t, now,
                                             self.parent, self._new_key,
                                             self._guard(now, refused))
            told += more
        self._hold(refused[0] if refused else None, now)
        if state == before:
            return False
        # The keys of the new state are read before it is taken: a key file gone or damaged
        # leaves the zone at the step it was (the error says which file), never past it.
        loaded = self._load(state)
        self.state = state
        self._write()
        for line in told:
            log.info("%s: %s", self.label, line)
        self.keys = loaded
        self._clean()
        return _served(state) != _served(before)

    def restart_waits(self, now: float) -> None:
        """The zone is served by this process from `now` on: the wait of the phase under
        way counts again from it (see `rollover.restarted`)."""
        state = rollover.restarted(self.state, now)
        if state != self.state:
            self.state = state
            self._write()
            log.info("%s: the wait of the step under way counts again from now: the zone "
                     "this signer serves may not have reached the responders before", self.label)

    def next_step(self) -> rollover.Next:
        assert self.spec.policy is not None
        state = self.state
        if self.spec.policy.insecure and state.unsigning is None and state.unsigned is None:
            return rollover.Next(0.0, "serves the delete CDS and CDNSKEY (policy.insecure)")
        if not self.spec.policy.insecure and state.unsigning is not None \
                and state.unsigned is None:
            return rollover.Next(0.0, "withdraws the delete CDS and CDNSKEY")
        if state.unsigned is None and state.algorithm != self.spec.algorithm:
            return rollover.Next(0.0, f"an algorithm roll to {self.spec.algorithm} starts")
        step = rollover.next_step(state, self.t, self.parent) if state.algorithm_roll is None \
            else algorithmroll.next_step(state, self.t, self.parent)
        if self.held is None:
            return step
        return rollover.Next(None, f"{step.what}; held: {self.held}", parent=True)

    @property
    def unsigned(self) -> bool:
        """Whether the zone is served unsigned (DNSSEC turned off, see `rollover.unsign`)."""
        return self.state.unsigned is not None

    def _no_ds(self, now: float) -> bool:
        """Whether no parent name server serves a DS for the zone, every one answering (asked
        again before the zone goes unsigned: that step cannot be taken back)."""
        due = self.state.no_ds_since is not None \
            and now >= self.state.no_ds_since + self.t.ds_wait
        if (due or self.answer is None) and self.parent_asked != now:
            self.ask_parent(now)
        answer = self.answer
        return answer is not None and not answer.silent and bool(answer.sets) \
            and not any(answer.sets.values())

    def ask_parent(self, now: float) -> parent.Answer:
        """Ask the parent's name servers for the zone's DS RRset, and take in what they say."""
        cds = {k.tag for k in rollover.cds(self.state)}
        sep = [k for k in self.keys if k.tag in cds]
        # Other KSKs and CSKs of the zone whose DS may still be served: removed ones, and the
        # old keys of an algorithm roll (their DS is no stray).
        gone = [k.tag for k in self.state.keys if k.role in rollover.SEP_ROLES
                and k.tag not in cds and k.ds_gone is None]
        assert self.spec.policy is not None
        answer = parent.Answer({}, {}, silent=["no parent name server is known"]) \
            if self.fetch is None else self.fetch(self.origin, self.spec.policy, sep, gone)
        for tag, why in answer.missing.items():
            log.info("%s: DS %d: %s", self.label, tag, why)
        before = self.answer.stray if self.answer is not None else []
        for line in answer.stray:
            if line not in before:
                log.warning("%s: %s", self.label, line)
        self.answer = answer
        self.heard(answer.served, now, answer.missing)
        if answer.stray != before:
            self._write()
        return answer

    def _guard(self, now: float, refused: list[str]) -> rollover.Guard:
        """The check of each step that cannot be taken back: the keys after it validate from
        the parent's DS RRsets (asked again for a step that changes what the parent must
        hold; for others, as last asked within `check_interval`) down to the sample."""
        def guard(state: RollState) -> str | None:
            touches_parent = _at_parent(self.state) != _at_parent(state)
            assert self.spec.policy is not None
            stale = self.answer is None or self.parent_asked is None \
                or now >= self.parent_asked + self.spec.policy.check_interval
            if (touches_parent or stale) and self.parent_asked != now:
                self.ask_parent(now)
            assert self.answer is not None
            why = chain.why_not(self.origin, self._load(state), rollover.cds(state),
                                self.spec, self.answer, touches_parent, self.sample, now)
            if why is not None:
                refused.append(why)
            return why
        return guard

    def _hold(self, why: str | None, now: float) -> None:
        """Note why the step due waits (None: it does not), said once per reason."""
        if why == self.held:
            if why is not None:
                self.held_at = now
            return
        if why is None:
            log.info("%s: the chain of trust validates again: the roll goes on", self.label)
        else:
            log.warning("%s: a key roll's step waits: it would leave the zone bogus: %s",
                        self.label, why)
        self.held, self.held_at = why, now
        self._write()

    def waits_for_parent(self) -> list[keystate.KeyEntry]:
        """KSKs or CSKs whose DS the parent is to serve, or to stop serving (every one while
        the zone is on its way to unsigned, or an algorithm roll waits for the new DS)."""
        roll = self.state.algorithm_roll
        if (self.state.unsigning is not None and self.state.unsigned is None) \
                or (roll is not None and roll.submitted is not None and roll.withdrawn is None):
            return rollover.cds(self.state)
        return [k for k in self.state.keys if k.role in rollover.SEP_ROLES and (
            (k.removed is None and k.active is None)
            or (k.removed is not None and k.ds_gone is None))]

    def heard(self, served: Mapping[int, bool], now: float,
              missing: Mapping[int, str] | None = None) -> None:
        """What the parent's name servers serve, asked at `now`; `missing`: by key tag, why
        its DS does not count as served, in words."""
        told = dict(missing or {})
        news = (dict(served), told) != (self.parent, self.missing)
        self.parent = dict(served)
        self.parent_asked = now
        self.missing = told
        if news:  # what `healthdns-ctl keys` shows changed; the time asked alone is no news
            self._write()

    def signing_keys(self) -> list[Key]:
        """The keys of the DNSKEY RRset, each marked whether it signs (ZoneSigner's form)."""
        return self.keys

    def cds_keys(self) -> list[Key]:
        """The keys whose CDS and CDNSKEY the zone serves; RFC 8078's delete form while the
        zone is on its way to unsigned."""
        if self.state.unsigning is not None:
            return [self.delete]
        tags = {k.tag for k in rollover.cds(self.state)}
        return [k for k in self.keys if k.tag in tags]

    def _state_file(self) -> str:
        return keystate.path_of(self.folder, self.zone)

    def _new_key(self, role: str) -> tuple[int, str]:
        """Make a key and write its file, synced, before any state names it."""
        for _ in range(8):  # a tag already used by a key of this zone: another key
            private = keys.generate(self.algorithm)
            made = keys.made(private, role, self.algorithm)
            if made.tag not in {k.tag for k in self.state.keys}:
                break
        name = f"{self.label}-{role}-{made.tag}.pem"
        path = os.path.join(self.folder, name)
        if os.path.exists(path):  # an orphan of a write the state never named
            os.unlink(path)
        keys.write(private, path, role)
        _sync(path)
        _sync(self.folder)
        return made.tag, name

    def _read(self) -> RollState | None:
        path = self._state_file()
        if not os.path.exists(path):
            return None
        try:
            return keystate.read(path)
        except (files.FileProblem, msgspec.DecodeError) as e:
            raise KeyFileError(f"{path}: the state of this zone's keys cannot be read ({e}); "
                               "the signer will not make new keys over it: restore it or "
                               "move the zone's files away to start anew") from None

    def _write(self) -> None:
        step = self.next_step()
        self.state = msgspec.structs.replace(
            self.state, next_when=step.when, next_what=step.what, waits_for_parent=step.parent,
            held=self.held, parent_asked=self.parent_asked, parent_missing=self.missing,
            parent_stray=list(self.answer.stray) if self.answer is not None else [])
        path = self._state_file()
        temporary = path + ".new"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(msgspec.json.format(msgspec.json.encode(self.state)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
        _sync(self.folder)

    def _load(self, state: RollState) -> list[Key]:
        """The key files of every key in `state`'s DNSKEY RRset or signing, checked against
        it."""
        signing = {k.tag for k in rollover.signing(state)}
        keys_only = {k.tag for k in rollover.signing_keys_only(state.keys)}
        loaded = []
        shown = {k.tag for k in rollover.published(state)}
        for entry in rollover.loaded(state):
            path = os.path.join(self.folder, entry.file)
            algorithm = Algorithm[entry.algorithm or state.algorithm]
            key = keys.load(path, entry.role, algorithm, f"{self.label} {entry.role} "
                            f"{entry.tag}")
            if key.tag != entry.tag:
                raise KeyFileError(f"{path}: holds the key with tag {key.tag}, the state says "
                                   f"{entry.tag}: the file was replaced")
            loaded.append(Key(key.role, key.private, key.dnskey,
                              published_only=entry.tag not in (signing | keys_only),
                              keys_only=entry.tag in keys_only,
                              hidden=entry.tag not in shown))
        return loaded

    def _clean(self) -> None:
        """Delete this zone's key files no published key uses (removed keys, orphans)."""
        wanted = {k.file for k in rollover.loaded(self.state)}
        prefix = f"{self.label}-"
        for name in os.listdir(self.folder):
            if name.startswith(prefix) and name.endswith(".pem") and name not in wanted:
                os.unlink(os.path.join(self.folder, name))
                log.info("%s: deleted the key file %s, which no published key uses",
                         self.label, name)


def _make_folder(folder: str) -> None:
    """`folder`, made mode 700 if missing; an existing one others can enter is refused."""
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        status = os.stat(folder)
    except OSError as e:
        raise KeyFileError(f"key_dir: {folder}: {e.strerror}") from None
    mode = stat.S_IMODE(status.st_mode)
    if mode & 0o077:
        raise KeyFileError(f"key_dir: {folder} has mode {mode:03o}: group and others must have "
                           f"no access to the folder of private keys; chmod 700 {folder}")
    if status.st_uid != os.geteuid():
        raise KeyFileError(f"key_dir: {folder} is owned by uid {status.st_uid}, not by the "
                           f"user the signer runs as (uid {os.geteuid()}): it writes new "
                           "keys there")


def _sync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _served(state: RollState) -> tuple[object, ...]:
    """What the zone serves of its keys: the DNSKEY RRset, which keys sign, the CDS."""
    return (tuple(k.tag for k in rollover.published(state)),
            tuple(k.tag for k in rollover.signing(state)),
            tuple(k.tag for k in rollover.signing_keys_only(state.keys)),
            tuple(k.tag for k in rollover.cds(state)), state.unsigning is None, state.unsigned)


def _at_parent(state: RollState) -> tuple[object, ...]:
    """What of the zone's keys the parent's DS RRset must fit: the keys that sign the DNSKEY
    RRset, and the DS the zone asks for (CDS)."""
    sep = [k for k in rollover.signing(state) if k.role in rollover.SEP_ROLES]
    return (sorted(k.tag for k in sep + rollover.signing_keys_only(state.keys)),
            sorted(k.tag for k in rollover.cds(state)))


def _listed(state: RollState) -> str:
    return ", ".join(f"{k.role} {k.tag} ({k.state})" for k in state.keys)

