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
from importlib.metadata import version

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from unify_common.consulio import make_consul
from unify_common.health import Health
from unify_common.lock import SessionLock
from unify_common.logs import get_logger
from unify_common.natsio import connect_nats, ensure_catalog_bucket, ensure_stream
from unify_common.runloop import run_until_stopped

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
    """Run one bridge until ``stop`` is set (or SIGTERM/SIGINT when ``stop`` is None), through
    :func:`unify_common.runloop.run_until_stopped`: a stop request while the bridge is still
    starting (NATS unreachable, stream not declared yet) ends it cleanly too.

    :param health: where to record readiness and metrics (default: a new one).
    :param health_addr: where to serve them (``None``: not served; an address that cannot
        be bound is logged and health is not served).
    :raises nats.errors.Error: / :raises nats.js.errors.APIError: the stream or the bucket
        cannot be declared (no JetStream, no permission).
    """
    process = _BridgeProcess(settings, health or new_health(), health_addr)
    await run_until_stopped(process.start, process.stop, serve=process.serve, stop_event=stop,
                            on_started=lambda: log.info("consul-bridge running",
                                                        node=settings.common.node))


class _BridgeProcess:
    """One bridge process: :meth:`start` connects and declares, :meth:`serve` follows the
    leader lock (running the :class:`Bridge` while it holds it), :meth:`stop` closes what
    :meth:`start` opened (also when it was cancelled half-way)."""

    def __init__(self, settings: BridgeSettings, health: Health,
                 health_addr: tuple[str, int] | None) -> None:
        self.settings = settings
        self.health = health
        self.health_addr = health_addr
        self.nc: NATS | None = None
        self.client = None
        self.lock: SessionLock | None = None
        self.changed = asyncio.Event()

    async def start(self) -> None:
        settings, health = self.settings, self.health
        if self.health_addr is not None:
            try:
                await health.start(*self.health_addr)
            except OSError as err:
                log.error("cannot serve health; running without it",
                          address=f"{self.health_addr[0]}:{self.health_addr[1]}",
                          error=str(err))
        self.nc = nc = await connect_nats(settings.common,
                                          name=f"consul-bridge@{settings.common.node}")
        health.add_check("nats", lambda: None if nc.is_connected else "not connected to NATS")
        js = nc.jetstream()
        await ensure_stream(js, settings.common)
        bucket = await ensure_catalog_bucket(js, settings.common)
        self.client = make_consul(settings.common)
        self.lock = lock = SessionLock(self.client, key=settings.lock_key,
                                       holder=settings.common.node, purpose="consul-bridge",
                                       ttl_s=settings.lock_ttl_s, on_acquired=self.changed.set,
                                       on_lost=self.changed.set)
        loop = asyncio.get_running_loop()

        def consul_check() -> str | None:
            if lock.last_contact == 0.0:
                return "no answer from Consul yet"
            silent = loop.time() - lock.last_contact
            return None if silent < lock.ttl_s else f"no answer from Consul for {silent:.0f} s"

        health.add_check("consul", consul_check)
        self._js, self._bucket = _CountedJetStream(js, health), _TimedBucket(bucket, health)

    async def serve(self) -> None:
        """Follow the leader lock until cancelled: run the bridge while holding it, stand by
        otherwise; a bridge that fails is restarted after 1 s."""
        lock, changed = self.lock, self.changed
        assert lock is not None
        holder = asyncio.create_task(lock.run(), name="leader-lock")
        work: asyncio.Task | None = None
        try:
            while True:
                waiters = {asyncio.create_task(changed.wait())}
                if work is not None:
                    waiters.add(work)
                try:
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in waiters - {work}:
                        waiter.cancel()
                changed.clear()
                if work is not None and work.done():
                    log.error("bridge failed; restarting", exc_info=work.exception())
                    work = None
                    await asyncio.sleep(1.0)
                if lock.holding and work is None:
                    work = asyncio.create_task(MeasuredBridge(
                        self.settings, self.client, self._js, self._bucket,
                        health=self.health).run(), name="bridge")
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

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.http.close()
        if self.nc is not None:
            await self.nc.close()
        await self.health.stop()
