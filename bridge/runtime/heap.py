"""The garbage collector of a long-running bridge process, set once it has started.

Python's collector visits the objects a generation holds; the oldest generation of a started
bridge holds everything loading made (modules, the policy's compiled tables, gRPC, the
configuration: about 70,000 objects), and the in-flight messages that lived through two younger
collections join it and die there. Measured on the edge bridge at throughput (60,000 messages,
``gc.callbacks``), the collector took 0.61 s of about 4.5 s of CPU: ten full collections of
about 40 ms each, and 1,400 younger ones. What is loaded at start is never garbage, so it is
frozen out of every collection (``gc.freeze``), and the youngest generation is collected every
10,000 allocations instead of 700, so that objects of a batch in flight are gone before they
would be promoted: the same run then spent 0.06 s in the collector. Objects are still freed when
their last reference goes; only a cycle made at start and dropped later (a reloaded policy's
first engine, once) stays until the process ends.
"""

from __future__ import annotations

import gc

YOUNG = 10_000
"""Allocations (less deallocations) between collections of the youngest generation."""


def settle() -> None:
    """Freeze what the started process holds, and collect the young less often."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, old)
