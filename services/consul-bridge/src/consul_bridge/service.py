"""The consul-bridge process: leader election, then the bridge loop while leader."""

from __future__ import annotations

import asyncio
import signal

from unify_common.consulio import make_consul
from unify_common.logs import get_logger
from unify_common.natsio import connect_nats, ensure_catalog_bucket, ensure_stream

from .bridge import Bridge
from .leader import LeaderLock, LostLeadership
from .settings import BridgeSettings

__all__ = ["run"]

log = get_logger("consul_bridge")


async def run(settings: BridgeSettings, *, stop: asyncio.Event | None = None) -> None:
    """Run one bridge until ``stop`` is set (or SIGTERM/SIGINT when ``stop`` is None).

    Standby bridges wait for the leader lock; the leader publishes. Losing the lock stops
    publishing at once and the bridge goes back to waiting.

    :raises nats.errors.NoServersError: NATS unreachable at start.
    """
    stop = stop or _signal_event()
    nc = await connect_nats(settings.common, name=f"consul-bridge@{settings.common.node}")
    js = nc.jetstream()
    await ensure_stream(js, settings.common)
    bucket = await ensure_catalog_bucket(js, settings.common)
    client = make_consul(settings.common)
    lock = LeaderLock(client, key=settings.lock_key, holder=settings.common.node,
                      ttl_s=settings.lock_ttl_s)
    stopper = asyncio.create_task(stop.wait())
    try:
        while not stop.is_set():
            acquire = asyncio.create_task(lock.acquire())
            await asyncio.wait({acquire, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                acquire.cancel()
                break
            bridge = Bridge(settings, client, js, bucket)
            work = asyncio.create_task(bridge.run(), name="bridge")
            hold = asyncio.create_task(lock.hold(), name="leader-hold")
            done, _ = await asyncio.wait({work, hold, stopper},
                                         return_when=asyncio.FIRST_COMPLETED)
            work.cancel()
            hold.cancel()
            await asyncio.gather(work, hold, return_exceptions=True)
            if hold in done and isinstance(hold.exception(), LostLeadership):
                log.warning("lost leadership; standing by", extra={"fields": {
                    "reason": str(hold.exception())}})
                continue
            if work in done and work.exception() is not None:
                log.error("bridge failed", exc_info=work.exception())
                await lock.release()
                await asyncio.sleep(1.0)
    finally:
        stopper.cancel()
        await lock.release()
        await client.http.close()
        await nc.close()


def _signal_event() -> asyncio.Event:
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, event.set)
    return event
