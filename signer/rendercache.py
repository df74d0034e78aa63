"""What a zone rendered last time (`signer.render`), reused for names whose content did not
change: a health change re-renders (and re-signs) only the names it touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

from healthdns.shared.tables import Answer

# What a name's answers are made of (`render._content`): RRset items, rotating items, NSEC rdata.
Content = tuple[object, object, bytes | None]


class Rendered(NamedTuple):
    """What one name rendered into, and from what. A tuple, and its answers one flat tuple:
    the cache holds one per name for the process's life (10,000 names: no dict per name).
    What it was made from (`render._content`) is three fields of it, not a tuple of its own
    (0.5 MiB)."""

    items: object  # its RRsets as items
    rotating: object  # its rotating answers' rdata sets, as items, or None
    proof: bytes | None  # the NSEC rdata proving its NODATA, or the one before it
    default: Answer  # the name's entry in `ZoneTable.names`
    variants: dict[bytes, list[Answer]] | None  # its rotating answers, if any
    answers: tuple[bytes | Answer, ...]  # key, answer, key, answer... (`ZoneTable.answers`)

    def made_from(self, content: Content) -> bool:
        return self.items == content[0] and self.rotating == content[1] \
            and self.proof == content[2]

    def pairs(self) -> Iterator[tuple[bytes, Answer]]:
        flat = self.answers
        for i in range(0, len(flat), 2):
            yield cast(bytes, flat[i]), cast(Answer, flat[i + 1])


@dataclass
class RenderCache:
    """What one zone rendered last time, reused for names whose content did not change.

    A health change then re-renders (and re-signs) only the names it touched, and the
    unchanged answers stay the same objects, which is how the signer finds what to send.
    Cleared when signatures are renewed.
    """

    names: dict[bytes, Rendered] = field(default_factory=dict)
    order: list[bytes] = field(default_factory=list)  # the chain's names, in order
    keys: list[Any] = field(default_factory=list)  # their sort keys (NSEC) or hashes (NSEC3)
    # owner -> its NSEC (NSEC3) rdata, the same object while the chain and its types stay
    nsecs: dict[bytes, bytes] = field(default_factory=dict)
    # owner -> its NXDOMAIN proof (see `_proof`): the NSEC rdata it was made for is inside it
    proofs: dict[bytes, bytes] = field(default_factory=dict)
    # What the names' bodies were rendered after, in negative answers: the SOA template's
    # lengths and names (a body's pointers count on them).
    soa_shape: tuple[object, ...] = ()

    def clear(self) -> None:
        self.names.clear()
        self.proofs.clear()
