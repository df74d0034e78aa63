"""What a responder must change to go from one generation's zone tables to the next: a delta
when one can carry the step, the full snapshot otherwise."""

from __future__ import annotations

from healthdns.shared import tables


def fits(old: list[tables.ZoneTable], new: list[tables.ZoneTable]) -> bool:
    """Whether a delta can carry the step from `old` to `new`: a responder applies one over the
    zones, NXDOMAIN answers and NSEC chains it holds, so those must be the same."""
    return len(old) == len(new) and all(
        (o.origin, o.nsec3, o.chain, o.nxdomain) == (n.origin, n.nsec3, n.chain, n.nxdomain)
        for o, n in zip(old, new, strict=True))


def changes(old: tables.ZoneTable, new: tables.ZoneTable) -> tables.ZoneDelta:
    """What a responder must change to go from `old` to `new`.

    Unchanged answers are the very same objects (the render cache reuses them), so an
    identity test finds what changed without comparing bytes; only a resumed signer, whose
    `old` was decoded from its predecessor's snapshot, falls back to comparing them.
    """
    return tables.ZoneDelta(
        origin=new.origin, serial=new.serial, soa=new.soa, soa_signed=new.soa_signed,
        answers={k: v for k, v in new.answers.items() if _differs(old.answers.get(k), v)},
        names={k: v for k, v in new.names.items() if _differs(old.names.get(k), v)},
        removed_answers=[k for k in old.answers if k not in new.answers],
        removed_names=[k for k in old.names if k not in new.names],
        variants=new.variants,
        geo=new.geo,
        proofs={i: p for i, p in enumerate(new.proofs)
                if i >= len(old.proofs) or old.proofs[i] != p},
    )


def _differs(old: tables.Answer | None, new: tables.Answer) -> bool:
    return old is not new and old != new
