"""The state file of a zone's own keys (`key_dir/ZONE.state`): its format, shared by the signer,
which alone writes it, and `healthdns-ctl keys`, which reads it.

It holds no secret (key tags, roles and the times of each step), and is JSON so that an
operator can read it too.
"""

from __future__ import annotations

import os

import msgspec

from healthdns.shared import files

MAX_STATE = files.MIB


class KeyEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One key of a zone, with the moment each step of its life was taken (Unix time)."""

    tag: int
    role: str  # csk, ksk or zsk
    file: str  # its file's name in the key folder
    created: float
    # In the DNSKEY RRset since; None: not yet (a key of an algorithm roll signs first).
    published: float | None = None
    active: float | None = None  # signs since
    retired: float | None = None  # signs no more since
    removed: float | None = None  # out of the DNSKEY RRset since
    ds_seen: float | None = None  # every parent name server serves its DS since (KSK, CSK)
    ds_gone: float | None = None  # no parent name server serves its DS since (removed ones)
    # Of an algorithm roll: the key's algorithm ("": the zone's), and for an old key, out of
    # the DNSKEY RRset since (it signs on until its removal).
    algorithm: str = ""
    withdrawn: float | None = None

    @property
    def state(self) -> str:
        if self.removed is not None:
            return "removed"
        if self.withdrawn is not None:
            return "withdrawn"
        if self.published is None:
            return "presigning"
        if self.retired is not None:
            return "retired"
        if self.active is not None:
            return "active"
        return "published" if self.role == "zsk" else "submitted"


class AlgorithmRoll(msgspec.Struct, frozen=True, kw_only=True):
    """A roll from one algorithm to another (RFC 6781 4.1.4), with the moment each step was
    taken: the new keys sign, unpublished, since `started`; are published since `published`;
    are the only ones the CDS asks for since `submitted`; every parent name server serves the
    new DS since `ds_seen`; the old keys are out of the DNSKEY RRset since `withdrawn`."""

    old: str
    started: float
    published: float | None = None
    submitted: float | None = None
    ds_seen: float | None = None
    withdrawn: float | None = None


class RollState(msgspec.Struct, frozen=True, kw_only=True):
    """A zone's keys: what the state file holds."""

    zone: str
    algorithm: str
    keys: tuple[KeyEntry, ...] = ()
    # DNSSEC turned off under the policy (`insecure`): the delete CDS and CDNSKEY served
    # since, no parent name server serving a DS since, and the zone served unsigned since.
    unsigning: float | None = None
    no_ds_since: float | None = None
    unsigned: float | None = None
    algorithm_roll: AlgorithmRoll | None = None
    # What the signer said of the roll when it wrote the file: the next step, its earliest
    # time (None: not by time), whether it waits for the parent, why the step due is held
    # (it would make the zone bogus), what the parent's name servers lacked when last asked
    # (by key tag) and the DS records they served of no key of the zone, in words, for
    # `healthdns-ctl keys`.
    next_when: float | None = None
    next_what: str = ""
    waits_for_parent: bool = False
    held: str | None = None
    parent_asked: float | None = None
    parent_missing: dict[int, str] = {}
    parent_stray: list[str] = []


def path_of(folder: str, zone: str) -> str:
    """The state file of `zone` (any spelling of the name) in `folder`."""
    return os.path.join(folder, f"{label(zone)}.state")


def label(zone: str) -> str:
    return zone.rstrip(".").lower() or "."


def read(path: str) -> RollState:
    """The state in `path`; FileProblem or msgspec.DecodeError if it cannot be read."""
    return msgspec.json.decode(files.read(path, MAX_STATE, follow=False).data, type=RollState)
