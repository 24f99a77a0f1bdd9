"""One holder at a time: a Consul session lock (Consul "Sessions" page).

Every candidate runs :meth:`SessionLock.run`: it creates a TTL session (``behavior=release``,
no lock delay), tries ``PUT /v1/kv/<key>?acquire=<session>`` and, once it holds the key,
renews the session every third of the TTL. The others keep trying at the same pace. When the
holder stops, its session is destroyed (or expires after the TTL) and a standby takes over;
``on_acquired`` is then called. A session Consul reports gone drops ``holding`` at once and
calls ``on_lost``. A renewal that merely fails (timeout, Consul busy or restarting) is
tolerated while less than half a TTL has passed since the last good one — the session cannot
have expired yet, so no one else can hold the key — and drops the lock after that: two
holders at once are worse than a few seconds without one.
A candidate whose attempts fail (Consul unreachable, or refusing: an ACL token without
session or key rights) logs it once, until an attempt goes through again.

Used by consul-bridge (one publisher) and dns411 (one Route 53 writer).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import consul

from .logs import get_logger

__all__ = ["SessionLock"]

log = get_logger("unify.lock")


class SessionLock:
    """Hold ``key`` while alive.

    :param client: a ``consul.aio.Consul``.
    :param key: the KV key used as the lock (its value names the holder).
    :param holder: this instance's name (the node).
    :param purpose: words naming the lock in the session name and logs.
    :param ttl_s: session TTL, seconds (Consul accepts 10-86400).
    :param on_acquired: called (no arguments) each time the lock is won.
    :param on_lost: called (no arguments) each time a held lock is lost.
    """

    def __init__(self, client: consul.aio.Consul, *, key: str, holder: str,
                 purpose: str = "lock",
                 ttl_s: float = 15.0, on_acquired: Callable[[], None] | None = None,
                 on_lost: Callable[[], None] | None = None) -> None:
        self._consul = client
        self.key = key
        self.holder = holder
        self.purpose = purpose
        self.ttl_s = max(10.0, ttl_s)
        self.on_acquired = on_acquired or (lambda: None)
        self.on_lost = on_lost or (lambda: None)
        self.session_id: str | None = None
        self.holding = False
        self._last_ok = 0.0
        self._refused: str | None = None

    @property
    def last_contact(self) -> float:
        """``loop.time()`` of Consul's last good answer to this lock (0.0: none yet)."""
        return self._last_ok

    async def step(self) -> bool:
        """One attempt: create the session if needed, renew it, try to acquire.

        :returns: whether the lock is held afterwards.
        """
        loop = asyncio.get_running_loop()
        bound = self.ttl_s / 3
        try:
            if self.session_id is None:
                self.session_id = await asyncio.wait_for(self._consul.session.create(
                    name=f"{self.purpose} {self.holder}", behavior="release",
                    ttl=int(self.ttl_s), lock_delay=0), bound)
            elif not await asyncio.wait_for(self._consul.session.renew(self.session_id), bound):
                raise consul.NotFound("session gone")
            self._last_ok = loop.time()
            if not self.holding:
                if await asyncio.wait_for(self._consul.kv.put(
                        self.key, self.holder, acquire=self.session_id), bound):
                    self.holding = True
                    log.info("lock acquired", lock=self.purpose, key=self.key)
                    self.on_acquired()
            self._refused = None
        except consul.NotFound:
            self._lost("session expired")
            self.session_id = None
        except asyncio.CancelledError:
            raise
        except Exception as err:  # Consul down, busy or refusing
            why = str(err) or type(err).__name__
            if self.holding and loop.time() - self._last_ok < self.ttl_s / 2:
                log.warning("lock renewal failed; still within the TTL", lock=self.purpose,
                            reason=why)
            elif self.holding:
                self._lost(why)
            elif self._refused is None:  # once until Consul answers again (e.g. an ACL denial)
                self._refused = why
                log.warning("lock attempt failed; retrying", lock=self.purpose, reason=why)
        return self.holding

    def _lost(self, why: str) -> None:
        if self.holding:
            log.warning("lock lost", lock=self.purpose, reason=why)
            self.holding = False
            self.on_lost()

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
