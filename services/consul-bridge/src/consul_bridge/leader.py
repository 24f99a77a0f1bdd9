"""Leader election between bridges with a Consul session lock.

Only the holder of ``lock_key`` publishes. The session has a TTL (renewed every third of it),
``behavior=release`` and a lock delay of 0, so when the holder dies the session expires and a
standby acquires the key within the TTL (Consul may take up to twice the TTL to reap a session;
see Consul's "Sessions" page).
"""

from __future__ import annotations

import asyncio

import consul

from unify_common.logs import get_logger

__all__ = ["LeaderLock", "LostLeadership"]

log = get_logger("consul_bridge.leader")


class LostLeadership(RuntimeError):
    """The session was invalidated or could not be renewed: stop publishing at once."""


class LeaderLock:
    """Acquire and hold ``key`` with a TTL session named after ``holder``.

    :param client: a ``consul.aio.Consul``.
    :param key: the Consul KV key used as the lock; its value is the holder's name.
    :param holder: this bridge's name (the node), written as the key's value.
    :param ttl_s: session TTL in seconds (Consul accepts 10 to 86400).
    """

    def __init__(self, client, *, key: str, holder: str, ttl_s: float = 10.0) -> None:
        self._consul = client
        self.key = key
        self.holder = holder
        self.ttl_s = max(10.0, ttl_s)
        self.session_id: str | None = None

    async def acquire(self) -> None:
        """Block until this process holds the lock (retrying through Consul errors)."""
        index = 0
        while True:
            try:
                if self.session_id is None:
                    self.session_id = await self._consul.session.create(
                        name=f"consul-bridge {self.holder}", behavior="release",
                        ttl=int(self.ttl_s), lock_delay=0)
                if await self._consul.kv.put(self.key, self.holder, acquire=self.session_id):
                    log.info("leader lock acquired", extra={"fields": {"key": self.key}})
                    return
                # Someone else holds it: keep our session alive and wait for a change.
                if not await self._consul.session.renew(self.session_id):
                    self.session_id = None
                    continue
                index, _ = await self._consul.kv.get(self.key, index=index,
                                                     wait=f"{max(1, int(self.ttl_s / 3))}s")
            except consul.NotFound:
                self.session_id = None  # our session expired while waiting
            except asyncio.CancelledError:
                raise
            except Exception as err:  # Consul or connection errors: retry
                log.warning("leader lock: Consul error, retrying", extra={"fields": {
                    "error": str(err) or type(err).__name__}})
                await asyncio.sleep(1.0)

    async def hold(self) -> None:
        """Renew the session until it is lost; then raise :class:`LostLeadership`.

        Transient Consul errors are tolerated until a whole TTL passed without a renewal.
        """
        loop = asyncio.get_running_loop()
        last_ok = loop.time()
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                if not await self._consul.session.renew(self.session_id):
                    raise consul.NotFound("session gone")
                last_ok = loop.time()
            except consul.NotFound:
                self.session_id = None
                raise LostLeadership("leader session invalidated") from None
            except asyncio.CancelledError:
                raise
            except Exception as err:
                if loop.time() - last_ok >= self.ttl_s:
                    self.session_id = None
                    raise LostLeadership(f"could not renew for a TTL: {err}") from None
                log.warning("leader lock: renew failed", extra={"fields": {"error": str(err)}})

    async def release(self) -> None:
        """Give the lock up and destroy the session (best effort)."""
        if self.session_id is None:
            return
        try:
            await self._consul.kv.put(self.key, self.holder, release=self.session_id)
            await self._consul.session.destroy(self.session_id)
        except Exception:  # shutting down anyway
            pass
        self.session_id = None
