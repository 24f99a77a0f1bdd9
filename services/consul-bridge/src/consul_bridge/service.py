"""The consul-bridge process: leader election, then the bridge loop while leader.

Every bridge runs a :class:`~unify_common.lock.SessionLock` on ``lock_key``; only the holder
runs the :class:`~.bridge.Bridge`. Losing the lock (session invalidated, Consul unreachable
for a renewal) stops publishing at once; the bridge goes back to standing by. A standby
retries every third of the TTL, so it takes over within the TTL once the leader's session is
gone (Consul may take up to twice the TTL to reap an expired session).

consul-bridge owns the events stream and the catalog bucket: it creates them, or updates the
stream to the expected subjects and retention, at start (subscribers only wait for them).

Health (:class:`~unify_common.health.Health`, prefix ``unify_consul_bridge_``, served on
``UNIFY_HEALTH_ADDR``, default ``127.0.0.1:9101``): ready when connected to NATS (``nats``)
and Consul answered the leader lock within its TTL (``consul``), as leader or standby alike,
and no publish or bucket write failed since the last success. Metrics: events published by
subject (each publish counts a success; a failed one ``publish-failed``), one reconcile per
Consul answer turned into events (a service's or a KV prefix's), one apply per catalog bucket
write (a failed one ``bucket-write-failed``), ``build_info``.
"""

from __future__ import annotations

import asyncio
import signal
from importlib.metadata import version

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from unify_common.consulio import make_consul
from unify_common.health import Health
from unify_common.lock import SessionLock
from unify_common.logs import get_logger
from unify_common.natsio import connect_nats, ensure_catalog_bucket, ensure_stream

from .bridge import Bridge
from .settings import BridgeSettings

__all__ = ["MeasuredBridge", "new_health", "run"]

log = get_logger("consul_bridge")


def new_health() -> Health:
    """The bridge's :class:`Health` (no success needed to be ready: a standby publishes
    nothing)."""
    return Health("consul-bridge", version=version("unify-consul-bridge"),
                  require_success=False)


class _CountedJetStream:
    """The JetStream context the bridge publishes through: each publish is counted by
    subject (or as a ``publish-failed`` failure). Everything else goes to ``js``."""

    def __init__(self, js: JetStreamContext, health: Health) -> None:
        self._js = js
        self._health = health

    def __getattr__(self, name: str):
        return getattr(self._js, name)

    async def publish(self, subject: str, *args, **kwargs):
        try:
            ack = await self._js.publish(subject, *args, **kwargs)
        except Exception:
            self._health.record_failure("publish-failed")
            raise
        self._health.events_published.labels(subject=subject).inc()
        self._health.record_success()
        return ack


class _TimedBucket:
    """The catalog bucket the bridge writes: each put or delete is timed as an apply (or
    counted as a ``bucket-write-failed`` failure). Everything else goes to ``bucket``."""

    def __init__(self, bucket: KeyValue, health: Health) -> None:
        self._bucket = bucket
        self._health = health

    def __getattr__(self, name: str):
        return getattr(self._bucket, name)

    async def _timed(self, write):
        try:
            with self._health.time_apply():
                return await write
        except Exception:
            self._health.record_failure("bucket-write-failed")
            raise

    async def put(self, key: str, value: bytes):
        return await self._timed(self._bucket.put(key, value))

    async def delete(self, key: str):
        return await self._timed(self._bucket.delete(key))


class MeasuredBridge(Bridge):
    """A :class:`Bridge` that times each Consul answer it turns into events (a service's
    instances or a KV prefix's entries) as one reconcile."""

    def __init__(self, *args, health: Health, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._health = health

    async def _apply_service(self, *args, **kwargs) -> None:
        with self._health.time_reconcile():
            await super()._apply_service(*args, **kwargs)

    async def _apply_kv(self, *args, **kwargs) -> None:
        with self._health.time_reconcile():
            await super()._apply_kv(*args, **kwargs)


async def run(settings: BridgeSettings, *, stop: asyncio.Event | None = None,
              health: Health | None = None,
              health_addr: tuple[str, int] | None = None) -> None:
    """Run one bridge until ``stop`` is set (or SIGTERM/SIGINT when ``stop`` is None).

    :param health: where to record readiness and metrics (default: a new one).
    :param health_addr: where to serve them (``None``: not served; an address that cannot
        be bound is logged and health is not served).
    :raises nats.errors.NoServersError: NATS unreachable at start.
    """
    stop = stop or _signal_event()
    health = health or new_health()
    if health_addr is not None:
        try:
            await health.start(*health_addr)
        except OSError as err:
            log.error("cannot serve health; running without it",
                address=f"{health_addr[0]}:{health_addr[1]}", error=str(err))
    try:
        await _run(settings, stop, health)
    finally:
        await health.stop()


async def _run(settings: BridgeSettings, stop: asyncio.Event, health: Health) -> None:
    nc = await connect_nats(settings.common, name=f"consul-bridge@{settings.common.node}")
    health.add_check("nats", lambda: None if nc.is_connected else "not connected to NATS")
    js = nc.jetstream()
    await ensure_stream(js, settings.common)
    bucket = await ensure_catalog_bucket(js, settings.common)
    client = make_consul(settings.common)
    changed = asyncio.Event()
    lock = SessionLock(client, key=settings.lock_key, holder=settings.common.node,
                       purpose="consul-bridge", ttl_s=settings.lock_ttl_s,
                       on_acquired=changed.set, on_lost=changed.set)
    loop = asyncio.get_running_loop()

    def consul_check() -> str | None:
        if lock.last_contact == 0.0:
            return "no answer from Consul yet"
        silent = loop.time() - lock.last_contact
        return None if silent < lock.ttl_s else f"no answer from Consul for {silent:.0f} s"

    health.add_check("consul", consul_check)
    counted_js, timed_bucket = _CountedJetStream(js, health), _TimedBucket(bucket, health)
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
                work = asyncio.create_task(MeasuredBridge(
                    settings, client, counted_js, timed_bucket, health=health).run(),
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
