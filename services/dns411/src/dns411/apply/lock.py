"""One Route 53 writer at a time: a Consul session lock (Consul "Sessions" page).

Every dns411 with ``UNIFY_ROUTE53_LOCK=1`` runs :meth:`WriterLock.run`: it creates a TTL
session (``behavior=release``, no lock delay), tries ``PUT /v1/kv/<key>?acquire=<session>``
and, once it holds the key, renews the session every third of the TTL. The others keep
trying at the same pace and write dnsmasq only. When the holder stops, its session is
destroyed (or expires after the TTL) and a standby takes over; ``on_acquired`` is then called
so it reconciles at once. Any failed renewal drops ``holding`` immediately: two writers at
once are worse than a few seconds without one.
"""

from __future__ import annotations

import asyncio
from typing import Callable

import consul

from unify_common.logs import get_logger

__all__ = ["WriterLock"]

log = get_logger("dns411.lock")


class WriterLock:
    """Hold ``key`` while alive.

    :param client: a ``consul.aio.Consul``.
    :param key: the KV key used as the lock (its value names the holder).
    :param holder: this instance's name (the node).
    :param ttl_s: session TTL, seconds (Consul accepts 10-86400).
    :param on_acquired: called (no arguments) each time the lock is won.
    """

    def __init__(self, client, *, key: str, holder: str, ttl_s: float = 15.0,
                 on_acquired: Callable[[], None] | None = None) -> None:
        self._consul = client
        self.key = key
        self.holder = holder
        self.ttl_s = max(10.0, ttl_s)
        self.on_acquired = on_acquired or (lambda: None)
        self.session_id: str | None = None
        self.holding = False

    async def step(self) -> bool:
        """One attempt: create the session if needed, renew it, try to acquire.

        :returns: whether the lock is held afterwards.
        """
        try:
            if self.session_id is None:
                self.session_id = await self._consul.session.create(
                    name=f"dns411 route53 {self.holder}", behavior="release",
                    ttl=int(self.ttl_s), lock_delay=0)
            else:
                await self._consul.session.renew(self.session_id)
            if not self.holding:
                if await self._consul.kv.put(self.key, self.holder, acquire=self.session_id):
                    self.holding = True
                    log.info("Route 53 writer lock acquired", extra={"fields": {"key": self.key}})
                    self.on_acquired()
        except consul.NotFound:
            self._lost("session expired")
            self.session_id = None
        except asyncio.CancelledError:
            raise
        except Exception as err:  # Consul down or refusing: stop writing until sure again
            self._lost(str(err) or type(err).__name__)
        return self.holding

    def _lost(self, why: str) -> None:
        if self.holding:
            log.warning("Route 53 writer lock lost", extra={"fields": {"reason": why}})
        self.holding = False

    async def run(self) -> None:
        """Call :meth:`step` every third of the TTL until cancelled."""
        while True:
            await self.step()
            await asyncio.sleep(self.ttl_s / 3)

    async def release(self) -> None:
        """Release the key and destroy the session (best effort, for shutdown)."""
        self.holding = False
        if self.session_id is None:
            return
        try:
            await self._consul.kv.put(self.key, self.holder, release=self.session_id)
            await self._consul.session.destroy(self.session_id)
        except Exception:  # shutting down anyway
            pass
        self.session_id = None
