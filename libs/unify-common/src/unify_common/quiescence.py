"""When to run a reconcile: debounce with a minimum and a maximum wait (quiescence), and the
subscriber shell's whole schedule (changes, requests, retries, resyncs), both driven by a
clock passed in."""

from __future__ import annotations

import random
from collections.abc import Callable

from .retry import backoff_delay

__all__ = ["Quiescence", "Schedule"]


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


class Schedule:
    """When a subscriber reconciles: the timing rules of the subscriber shell, with no I/O.

    Four things make a reconcile due; :meth:`due_at` is the earliest of them:

    * a *change* (:meth:`changed`): debounced by :class:`Quiescence` (``min_wait`` of quiet,
      at most ``max_wait`` after the first change of a burst);
    * a *request* (:meth:`request`): due at once (a cold start, a lock won);
    * a *retry* after a failed reconcile (:meth:`failed`): one timer, ``retry_base * 2**n``
      seconds after the n-th consecutive failure, capped at ``retry_max``, times a random
      factor in [0.5, 1) (:func:`~unify_common.retry.backoff_delay`);
    * a *resync*: ``resync`` seconds after the last reconcile ended, a full reconcile even
      though nothing changed (``resync`` 0: never).

    Whatever the reason, one reconcile serves them all: :meth:`begin` clears every pending
    reason; :meth:`succeeded` or :meth:`failed` sets the next resync (and retry). Times are
    seconds of one monotonic clock, passed in by the caller.

    >>> s = Schedule(min_wait=0.1, max_wait=1.0, resync=300.0)
    >>> s.changed(10.0); s.due_at(), s.reason(10.1)
    (10.1, 'change')
    """

    def __init__(self, *, min_wait: float, max_wait: float, retry_base: float = 0.25,
                 retry_max: float = 30.0, resync: float = 300.0,
                 rng: Callable[[float, float], float] = random.uniform) -> None:
        if retry_base <= 0 or retry_max < retry_base:
            raise ValueError("need 0 < retry_base <= retry_max")
        if resync < 0:
            raise ValueError("resync must be 0 (never) or more seconds")
        self.quiet = Quiescence(min_wait=min_wait, max_wait=max_wait)
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.resync = resync
        self._rng = rng
        self._requested_at: float | None = None
        #: when the pending retry is due (``None``: none pending)
        self.retry_at: float | None = None
        #: when the next resync is due (``None`` before the first reconcile, or never)
        self.resync_at: float | None = None
        #: consecutive failed reconciles
        self.failures = 0

    def changed(self, now: float) -> None:
        """The catalog changed at ``now``."""
        self.quiet.touch(now)

    def request(self, now: float) -> None:
        """Reconcile as soon as possible (no debounce)."""
        if self._requested_at is None:
            self._requested_at = now

    def due_at(self) -> float | None:
        """When the next reconcile is due, or ``None`` when nothing will make one due."""
        times = [t for t in (self._requested_at, self.quiet.due_at(), self.retry_at,
                             self.resync_at) if t is not None]
        return min(times) if times else None

    def reason(self, now: float) -> str | None:
        """Why a reconcile is due at ``now`` (``request``, ``change``, ``retry`` or
        ``resync``, in that order of precedence), or ``None`` when none is due yet."""
        for name, at in (("request", self._requested_at), ("change", self.quiet.due_at()),
                         ("retry", self.retry_at), ("resync", self.resync_at)):
            if at is not None and at <= now:
                return name
        return None

    def begin(self) -> None:
        """A reconcile starts: it takes in every change, request, retry and resync so far."""
        self.quiet.reset()
        self._requested_at = self.retry_at = self.resync_at = None

    def succeeded(self, now: float) -> None:
        """The reconcile that began last succeeded at ``now``."""
        self.failures = 0
        self.resync_at = now + self.resync if self.resync > 0 else None

    def failed(self, now: float) -> float:
        """The reconcile that began last failed at ``now``; returns the retry delay."""
        self.failures += 1
        delay = backoff_delay(self.failures, base=self.retry_base, cap=self.retry_max,
                              rng=self._rng)
        self.retry_at = now + delay
        self.resync_at = now + self.resync if self.resync > 0 else None
        return delay
