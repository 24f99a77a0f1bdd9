"""Debounce with a minimum and a maximum wait (quiescence), driven by a clock passed in."""

from __future__ import annotations

__all__ = ["Quiescence"]


class Quiescence:
    """Decide when a burst of changes has settled.

    The first change after an idle period fixes a deadline ``max_wait`` seconds away; every
    change (re)starts a ``min_wait`` timer. :meth:`due_at` is the earlier of the timer and
    the deadline, so a burst gives one run and continuous churn still runs every ``max_wait``.
    Times are seconds from any monotonic clock; the caller passes ``now``.

    >>> q = Quiescence(min_wait=0.1, max_wait=1.0)
    >>> q.touch(0.0); q.touch(0.05); q.due_at()
    0.15000000000000002
    """

    def __init__(self, *, min_wait: float, max_wait: float) -> None:
        if not 0 <= min_wait <= max_wait:
            raise ValueError("need 0 <= min_wait <= max_wait")
        self.min_wait = min_wait
        self.max_wait = max_wait
        self._timer: float | None = None
        self._deadline: float | None = None

    @property
    def pending(self) -> bool:
        """True between the first change of a burst and :meth:`reset`."""
        return self._timer is not None

    def touch(self, now: float) -> None:
        """Record a change seen at ``now``."""
        if self._deadline is None:
            self._deadline = now + self.max_wait
        self._timer = now + self.min_wait

    def due_at(self) -> float | None:
        """When the run is due, or ``None`` when nothing is pending."""
        if self._timer is None or self._deadline is None:
            return None
        return min(self._timer, self._deadline)

    def reset(self) -> None:
        """Forget the pending burst (call when the run starts)."""
        self._timer = None
        self._deadline = None
