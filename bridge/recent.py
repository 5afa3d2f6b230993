"""A memory of recent items, oldest first, bounded by age, count and bytes.

What an answering agent remembers of the asks it answered (``edge_agent.asks``) and what the
edge bridge remembers of what it published (``bridge.edge.delivered``) are both this: items kept
a while in the order they came, the oldest forgotten first once one bound is passed.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Generic, Protocol, TypeVar


class Dated(Protocol):
    """An item as the memory sees it: when it came (the memory's clock) and what it weighs."""

    @property
    def at(self) -> float: ...

    @property
    def size(self) -> int: ...


K = TypeVar("K", bound=Hashable)
V = TypeVar("V", bound=Dated)


def message_size(headers: Mapping[str, str] | None, *parts: str | bytes) -> int:
    """The bytes of a message's parts (subject, payload, ids) and headers."""
    size = sum(len(part) for part in parts)
    return size + sum(len(name) + len(value) for name, value in (headers or {}).items())


class Recent(Generic[K, V]):
    """Items by key in the order they were added; ``forgotten`` is told of each one dropped."""

    def __init__(
        self,
        keep: float,
        max_count: int,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
        forgotten: Callable[[K, V], None] | None = None,
    ) -> None:
        self.keep, self.max_count, self.max_bytes = keep, max_count, max_bytes
        self.clock = clock
        self.bytes = 0
        self._items: OrderedDict[K, V] = OrderedDict()
        self._forgotten = forgotten

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def add(self, key: K, item: V) -> None:
        """Keep ``item`` (dated by the memory's clock), then forget what is past a bound."""
        self._items[key] = item
        self.bytes += item.size
        self.forget()

    def newest_first(self) -> Iterator[V]:
        return reversed(self._items.values())

    def forget(self) -> None:
        """Drop the oldest items while one is too old or the memory holds too many or too much."""
        oldest = self.clock() - self.keep
        items = self._items
        while items:
            key, first = next(iter(items.items()))
            if first.at >= oldest and len(items) <= self.max_count and self.bytes <= self.max_bytes:
                return
            del items[key]
            self.bytes -= first.size
            if self._forgotten is not None:
                self._forgotten(key, first)
