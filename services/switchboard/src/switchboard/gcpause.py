"""Pause Python's cyclic garbage collector around a burst of allocations (pure helper).

Building the desired state and rendering it at 10,000 instances allocates a few hundred
thousand short-lived objects (tuples, strings, structs), none of them in reference cycles:
they die by reference counting. With the collector running, those allocations trigger
collections that walk every object the process holds (the whole catalog), which doubled the
cost of a build. Pausing it for the build changes no result; objects left over are examined by
the next collection as usual.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused"]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic collector for the ``with`` block; re-enable it afterwards only when
    it was enabled before (nesting and callers that disabled it themselves are respected)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
