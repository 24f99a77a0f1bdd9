"""Protection against mass deregistration on a transient empty or partial Consul answer.

After an agent restart Consul can answer "no services" for a moment, and a bridge that trusted
it would deregister the whole cluster. The guard defers removals that look like that until the
same absence has been seen for ``confirm_s`` seconds; additions and updates are never held.
Pure: the caller passes the clock.
"""

from __future__ import annotations

__all__ = ["RemovalGuard"]


class RemovalGuard:
    """Decide which removals may be published now.

    A removal is *suspicious* when, within one observation, it would remove more than
    ``max_ratio`` of all known instances (and more than ``min_count`` of them), or when it
    follows a Consul index reset (the agent restarted) by less than ``confirm_s``.
    Suspicious removals are released only once they have stayed absent ``confirm_s`` seconds.

    :param confirm_s: seconds an absence must persist before a suspicious removal goes out.
    :param max_ratio: share of known instances one observation may remove without suspicion.
    :param min_count: removals up to this many are never suspicious by size alone.
    """

    def __init__(self, *, confirm_s: float = 10.0, max_ratio: float = 0.5,
                 min_count: int = 2) -> None:
        self.confirm_s = confirm_s
        self.max_ratio = max_ratio
        self.min_count = min_count
        self._absent_since: dict[str, float] = {}
        self._reset_at: float | None = None

    def index_reset(self, now: float) -> None:
        """Record that Consul's index went backwards (agent restart or data loss)."""
        self._reset_at = now

    def filter(self, removals: set[str], *, scope: set[str], known: int, now: float) -> set[str]:
        """Return the subset of ``removals`` (catalog keys) that may be published now.

        :param removals: keys absent from the latest answer for one scope (one service).
        :param scope: every key of that scope published so far (held ones that are back in
            the answer are forgotten).
        :param known: number of instances published in all scopes.
        :param now: the current time in seconds (any monotonic clock).
        """
        for key in scope - removals:
            self._absent_since.pop(key, None)  # it came back: forget the pending removal
        if not removals:
            return set()
        recently_reset = self._reset_at is not None and now - self._reset_at < self.confirm_s
        massive = len(removals) > self.min_count and len(removals) > self.max_ratio * max(known, 1)
        if not recently_reset and not massive:
            for key in removals:
                self._absent_since.pop(key, None)
            return set(removals)
        released = set()
        for key in removals:
            since = self._absent_since.setdefault(key, now)
            if now - since >= self.confirm_s:
                released.add(key)
        for key in released:
            del self._absent_since[key]
        return released

    def held(self) -> int:
        """How many removals are currently held back."""
        return len(self._absent_since)

    def next_check(self) -> float | None:
        """When the earliest held removal may be released (same clock), or ``None``."""
        if not self._absent_since:
            return None
        return min(self._absent_since.values()) + self.confirm_s
