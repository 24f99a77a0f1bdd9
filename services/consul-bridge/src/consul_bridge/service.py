"""The consul-bridge process: leader election, then the bridge loop while leader.

Every bridge runs a :class:`~unify_common.lock.SessionLock` on ``lock_key``; only the holder
runs the :class:`~.bridge.Bridge`. Losing the lock (session invalidated, Consul unreachable
for a renewal) stops publishing at once; the bridge goes back to standing by. A standby
retries every third of the TTL, so it takes over within the TTL once the leader's session is
gone (Consul may take up to twice the TTL to reap an expired session).
"""

from __future__ import annotations

import asyncio
import signal

from unify_common.consulio import make_consul
from unify_common.lock import SessionLock
from unify_common.logs import get_logger
from unify_common.natsio import connect_nats, ensure_catalog_bucket, ensure_stream

from .bridge import Bridge
from .settings import BridgeSettings

__all__ = ["run"]

log = get_logger("consul_bridge")


async def run(settings: BridgeSettings, *, stop: asyncio.Event | None = None) -> None:
    """Run one bridge until ``stop`` is set (or SIGTERM/SIGINT when ``stop`` is None).

    :raises nats.errors.NoServersError: NATS unreachable at start.
    """
    stop = stop or _signal_event()
    nc = await connect_nats(settings.common, name=f"consul-bridge@{settings.common.node}")
    js = nc.jetstream()
    await ensure_stream(js, settings.common)
    bucket = await ensure_catalog_bucket(js, settings.common)
    client = make_consul(settings.common)
    changed = asyncio.Event()
    lock = SessionLock(client, key=settings.lock_key, holder=settings.common.node,
                       purpose="consul-bridge", ttl_s=settings.lock_ttl_s,
                       on_acquired=changed.set, on_lost=changed.set)
    holder = asyncio.create_task(lock.run(), name="leader-lock")
    work: asyncio.Task | None = None
    try:
        while not stop.is_set():
            waiters = {asyncio.create_task(changed.wait()), asyncio.create_task(stop.wait())}
            if work is not None:
                waiters.add(work)
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters - {work}:
                waiter.cancel()
            changed.clear()
            if work is not None and work.done():
                log.error("bridge failed; restarting", exc_info=work.exception())
                work = None
                await asyncio.sleep(1.0)
            if lock.holding and work is None and not stop.is_set():
                work = asyncio.create_task(Bridge(settings, client, js, bucket).run(),
                                           name="bridge")
            elif not lock.holding and work is not None:
                log.warning("not the leader any more; standing by")
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
                work = None
    finally:
        for task in (work, holder):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (work, holder) if t), return_exceptions=True)
        await lock.release()
        await client.http.close()
        await nc.close()


def _signal_event() -> asyncio.Event:
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, event.set)
    return event
