"""Server slot assignment: which ``server s<i>`` line of a backend holds which instance (pure).

Slots let membership change through HAProxy's runtime API without a reload (HAProxy 2.6
management guide, 9.3: ``set server <backend>/<server> addr|state``): a backend is rendered with
more ``server`` lines than instances, the spare ones ``disabled``.

Rule: when the previous layout of the backend has at least as many slots as there are
instances, every instance that still exists keeps its slot and new instances fill the free
slots lowest first (in ``key`` order); otherwise the backend gets a fresh layout of
``max(min_slots, next power of two >= 2 * count)`` slots filled in ``key`` order.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["assign_slots", "fresh_capacity"]


def fresh_capacity(count: int, min_slots: int) -> int:
    """Slots of a fresh layout for ``count`` instances (see the module doc)."""
    capacity = 1
    while capacity < 2 * count:
        capacity *= 2
    return max(min_slots, capacity)


def assign_slots(keys: Sequence[str], previous: Sequence[str | None] | None,
                 min_slots: int) -> tuple[str | None, ...]:
    """Place instance ``keys`` (unique) into slots.

    :param keys: catalog keys of the backend's instances, any order.
    :param previous: the backend's last layout (``None`` entries are free slots), or ``None``.
    :param min_slots: smallest number of slots of a fresh layout (>= 1).
    :returns: one entry per slot: a key or ``None``.
    """
    present = set(keys)
    if previous is not None and len(previous) >= len(present):
        layout: list[str | None] = [k if k in present else None for k in previous]
        placed = set(layout)
        placed.discard(None)
        if len(placed) == len(present):
            return tuple(layout)
        newcomers = iter(sorted(present - placed))
        for index, key in enumerate(layout):
            if key is None:
                layout[index] = next(newcomers, None)
        return tuple(layout)
    capacity = fresh_capacity(len(present), min_slots)
    return tuple(sorted(present)) + (None,) * (capacity - len(present))
