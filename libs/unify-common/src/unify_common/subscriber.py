"""The subscriber shell every catalog consumer (switchboard, dns411, ...) runs in.

A subscriber is level-triggered: whatever arrives (an event, a change in the catalog bucket,
a retry timer), it calls ``reconcile(state)`` with the *whole* current catalog, never a delta.
A lost, repeated or reordered event therefore cannot leave it wrong.

* Events come from a durable JetStream pull consumer (explicit acks). Messages are acked only
  after a reconcile that started after they arrived succeeded; when the reconcile raises, they
  are nak'ed with a delay and redelivered, and the reconcile is retried with capped
  exponential backoff and jitter.
* The catalog comes from a :class:`~unify_common.catalog.CatalogMirror` of the KV bucket.
* Bursts are debounced by :class:`~unify_common.quiescence.Quiescence` (min/max wait).
* Optionally, a *quick* step runs on the first change of the catalog bucket after a
  successful reconcile, at once, before the debounce: for work that is cheap and safe to do
  on the leading edge (switchboard's runtime API commands). It never acks or naks anything,
  and the debounced reconcile still follows as usual.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Awaitable, Callable

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig, DeliverPolicy

from . import subjects
from .catalog import CatalogMirror, CatalogState
from .events import Event
from .logs import get_logger
from .natsio import connect_nats, ensure_catalog_bucket, ensure_stream, publish_event
from .quiescence import Quiescence
from .settings import CommonSettings

__all__ = ["Subscriber"]

log = get_logger("unify.subscriber")
Reconcile = Callable[[CatalogState], Awaitable[None]]


class Subscriber:
    """Run ``reconcile`` whenever the catalog may have changed.

    :param settings: connection settings.
    :param name: component name, used in logs and as the NATS client name.
    :param durable: the durable consumer name; one per independent copy (e.g. one per node
        for switchboard, so every node gets every change).
    :param reconcile: ``async (CatalogState) -> None``; raise to signal a failed apply.
    :param min_wait: seconds of quiet before a reconcile (debounce), default 0.05.
    :param max_wait: longest delay of a reconcile under continuous change, default 1.0.
    :param retry_max: cap of the retry backoff in seconds, default 30.
    :param quick: ``async (CatalogState) -> None`` or ``None``; runs with the whole current
        catalog on the first change of the catalog bucket after a successful reconcile (not
        on event arrivals: the bridge publishes an event before it writes the bucket),
        immediately, without touching the debounce, so the reconcile still follows. At most
        once per reconcile: the next bucket change arms it again only after the next
        reconcile succeeded (none before the first one, none while retrying a failure).
        Should not raise for ordinary failures; an exception is logged and otherwise
        ignored (nothing is nak'ed, nothing retried). It never acks messages.
    """

    def __init__(self, settings: CommonSettings, *, name: str, durable: str,
                 reconcile: Reconcile, min_wait: float = 0.05, max_wait: float = 1.0,
                 retry_max: float = 30.0, quick: Reconcile | None = None) -> None:
        self.settings = settings
        self.name = name
        self.durable = durable
        self._reconcile = reconcile
        self._quick = quick
        self._armed = False  # the last reconcile succeeded and no quick run happened since
        self._quick_due = False
        self._quiet = Quiescence(min_wait=min_wait, max_wait=max_wait)
        self._retry_max = retry_max
        self._wake = asyncio.Event()
        self._pending: list = []
        self._tasks: list[asyncio.Task] = []
        self._failures = 0
        self._stopping = False
        self._retry_at: float | None = None
        self.nc = None
        self.js = None
        self.mirror: CatalogMirror | None = None
        #: number of successful reconciles so far (for status and tests)
        self.reconciles = 0
        #: the last reconcile error message, or ``""`` after a success
        self.last_error = ""
        #: number of quick runs started so far (for status and tests)
        self.quick_runs = 0

    def _touch(self) -> None:
        self._quiet.touch(time.monotonic())
        self._wake.set()

    def _catalog_changed(self) -> None:
        if self._armed and self._quick is not None:
            self._quick_due = True
        self._touch()

    async def start(self) -> None:
        """Connect, load the catalog, create or resume the durable consumer, start the loop.

        :raises nats.errors.NoServersError: NATS is unreachable.
        """
        self.nc = await connect_nats(self.settings, name=self.name)
        self.js = self.nc.jetstream()
        await ensure_stream(self.js, self.settings)
        bucket = await ensure_catalog_bucket(self.js, self.settings)
        self.mirror = CatalogMirror(bucket, on_change=self._catalog_changed)
        await self.mirror.start()
        psub = await self.js.pull_subscribe(
            subjects.CATALOG, durable=self.durable, stream=self.settings.stream,
            config=ConsumerConfig(durable_name=self.durable, deliver_policy=DeliverPolicy.NEW,
                                  ack_wait=60.0, max_ack_pending=10_000),
        )
        self._tasks = [
            asyncio.create_task(self._fetch_loop(psub), name=f"{self.name}-fetch"),
            asyncio.create_task(self._run_loop(), name=f"{self.name}-reconcile"),
        ]
        self._touch()  # the first reconcile happens from the cold-start state

    async def stop(self, *, timeout: float = 5.0) -> None:
        """Stop the loops and close the connection (un-acked messages are redelivered).

        Each step waits at most ``timeout`` seconds: a loop stuck inside the NATS client (it
        can swallow a cancellation while flushing) must not keep the process from exiting.
        """
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout)
        if self.mirror is not None:
            await self.mirror.stop(timeout=timeout)
        if self.nc is not None and not self.nc.is_closed:
            try:
                await asyncio.wait_for(self.nc.close(), timeout)
            except Exception:  # already broken: nothing more to release
                pass

    async def publish(self, subject: str, event: Event, *, msg_id: str) -> None:
        """Publish an event (errors, applied reports) on the stream; failures are logged."""
        try:
            await publish_event(self.js, subject, event, msg_id=msg_id)
        except Exception as err:  # a report must never break the apply path
            log.warning("could not publish event", extra={"fields": {
                "subject": subject, "error": str(err)}})

    async def _fetch_loop(self, psub) -> None:
        while not self._stopping:
            try:
                msgs = await psub.fetch(batch=512, timeout=5)
            except (NatsTimeoutError, asyncio.TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as err:
                if self._stopping:
                    return
                log.warning("fetch failed", extra={"fields": {"error": str(err)}})
                await asyncio.sleep(1)
                continue
            self._pending.extend(msgs)
            self._touch()

    async def _run_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._quick_due:
                await self._run_quick()
            due = self._quiet.due_at()
            if self._retry_at is not None:
                due = self._retry_at if due is None else min(due, self._retry_at)
            timeout = None if due is None else max(0.0, due - time.monotonic())
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
                continue  # re-evaluate the deadline after every wake-up
            except asyncio.TimeoutError:
                pass
            self._quiet.reset()
            self._retry_at = None
            batch, self._pending = self._pending, []
            state = self.mirror.snapshot()
            started = loop.time()
            try:
                await self._reconcile(state)
            except Exception as err:
                self._failures += 1
                delay = min(self._retry_max, 0.25 * 2 ** min(self._failures, 10))
                delay *= random.uniform(0.5, 1.0)
                self._retry_at = time.monotonic() + delay
                self.last_error = str(err)
                self._armed = self._quick_due = False
                log.error("reconcile failed; will retry", extra={"fields": {
                    "component": self.name, "error": str(err), "retry_in_s": round(delay, 2),
                    "attempt": self._failures}}, exc_info=not isinstance(err, OSError))
                await asyncio.gather(*(m.nak(delay=delay) for m in batch),
                                     return_exceptions=True)
                continue
            self._failures = 0
            self.last_error = ""
            self.reconciles += 1
            self._armed = True
            await asyncio.gather(*(m.ack() for m in batch), return_exceptions=True)
            log.debug("reconciled", extra={"fields": {
                "component": self.name, "revision": state.revision, "events": len(batch),
                "ms": round((loop.time() - started) * 1000, 1)}})

    async def _run_quick(self) -> None:
        """One quick run on the current catalog (disarms until the next reconcile succeeds);
        any exception is logged, never raised."""
        self._quick_due = self._armed = False
        self.quick_runs += 1
        state = self.mirror.snapshot()
        started = time.monotonic()
        try:
            await self._quick(state)
        except Exception as err:  # the debounced reconcile still follows and sets it right
            log.warning("quick step failed; the reconcile follows", extra={"fields": {
                "component": self.name, "error": str(err)}}, exc_info=True)
            return
        log.debug("quick step", extra={"fields": {
            "component": self.name, "revision": state.revision,
            "ms": round((time.monotonic() - started) * 1000, 1)}})
