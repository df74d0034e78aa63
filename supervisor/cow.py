"""A dict that the supervisor loop keeps up to date and hands, whole, to the immutable readouts
the control endpoint's threads read: copied on write, not on every readout.

A readout takes the dict itself (`hand`); the loop's next change copies it first, so the
readout never sees a later change. A readout with nothing changed since the last one costs
nothing, and one after a few changes costs one copy of the dict at C speed: at 20,000 targets,
building each readout's dicts anew (an object per target, in Python) held the loop for most of
a second's GIL time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class CowDict(Generic[K, V]):
    def __init__(self, items: Iterable[tuple[K, V]] = ()) -> None:
        self._items: dict[K, V] = dict(items)
        self._handed = False  # a readout holds `_items`: copy before the next change

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: K) -> bool:
        return key in self._items

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def __setitem__(self, key: K, value: V) -> None:
        self._own()[key] = value

    def pop(self, key: K) -> None:
        if key in self._items:
            del self._own()[key]

    def hand(self) -> dict[K, V]:
        """The dict as it is now, for a readout: nothing changes it from now on."""
        self._handed = True
        return self._items

    def _own(self) -> dict[K, V]:
        if self._handed:
            self._items = dict(self._items)
            self._handed = False
        return self._items
