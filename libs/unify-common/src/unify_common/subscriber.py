"""The subscriber shell every catalog consumer (switchboard, dns411, ...) runs in.

A subscriber is level-triggered: whatever wakes it, it calls ``reconcile(state)`` with the
*whole* current catalog, never a delta, so a lost, repeated or reordered change cannot leave
it wrong. It has one wake-up channel, the catalog bucket:

* The catalog comes from a :class:`~unify_common.catalog.CatalogMirror` of the KV bucket (an
  ephemeral ordered consumer, deleted when the subscriber stops and expired by the server if
  the process dies). The subscriber keeps no durable consumer and acknowledges nothing, so
  a new container (a new node name) leaves nothing behind on the server. The events stream
  stays for audit, ``unify events`` and the reports subscribers publish.
* When to reconcile is decided by :class:`~unify_common.quiescence.Schedule` on a clock
  passed in: bucket changes are debounced (min/max wait), a failed reconcile is retried by
  one timer with capped exponential backoff and jitter, a full reconcile runs every
  ``resync`` seconds even when nothing changed (``UNIFY_RESYNC``), and :meth:`request` asks
  for one at once.
* Optionally, a *quick* step runs on the first change of the catalog bucket after a
  successful reconcile, at once, before the debounce: for work that is cheap and safe to do
  on the leading edge (switchboard's runtime API commands). The debounced reconcile still
  follows as usual.

The stream and the bucket belong to consul-bridge: a subscriber only waits for them
(:func:`~unify_common.natsio.wait_for_catalog`) and never changes their configuration.

Given a :class:`~unify_common.health.Health`, the shell records what every subscriber shares:
the ``nats`` readiness check (connected), bucket updates as events consumed (subject
``$KV.<bucket>.>``, one count per put or delete, the initial load included), reports as
events published (by subject; a failed publish counts as error kind ``publish-failed``), the
reconcile duration, and each reconcile's outcome (success, or a failure whose kind is the
exception's class name in dashes, e.g. ``ApplyFailed`` -> ``apply-failed``).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from .catalog import CatalogMirror, CatalogState
from .events import Event
from .health import Health
from .logs import get_logger
from .natsio import connect_nats, publish_event, wait_for_catalog
from .quiescence import Schedule
from .settings import CommonSettings

__all__ = ["Subscriber", "failure_kind"]

log = get_logger("unify.subscriber")
Reconcile = Callable[[CatalogState], Awaitable[None]]


class Subscriber:
    """Run ``reconcile`` whenever the catalog may have changed, on failure again, and
    periodically.

    :param settings: connection settings (``settings.resync`` is the default ``resync``).
    :param name: component name, used in logs and as the NATS client name.
    :param reconcile: ``async (CatalogState) -> None``; raise to signal a failed apply (it is
        retried with backoff).
    :param min_wait: seconds of quiet before a reconcile (debounce), default 0.05.
    :param max_wait: longest delay of a reconcile under continuous change, default 1.0.
    :param retry_base: first retry delay in seconds (doubling, with jitter), default 0.25.
    :param retry_max: cap of the retry backoff in seconds, default 30.
    :param resync: seconds after a reconcile before a full one runs although nothing changed
        (0: never); default ``settings.resync`` (``UNIFY_RESYNC``, 300).
    :param catalog_wait: seconds :meth:`start` waits for consul-bridge to have declared the
        stream and the bucket, default 120.
    :param quick: ``async (CatalogState) -> None`` or ``None``; runs with the whole current
        catalog on the first change of the catalog bucket after a successful reconcile,
        immediately, without touching the debounce, so the reconcile still follows. At most
        once per reconcile: the next bucket change arms it again only after the next
        reconcile succeeded (none before the first one, none while retrying a failure).
        Should not raise for ordinary failures; an exception is logged and otherwise
        ignored (nothing is retried).
    :param clock: monotonic seconds (``time.monotonic``); the schedule runs on it.
    :param rng: ``(a, b) -> float`` in ``[a, b)``, the retry jitter (``random.uniform``).
    :param health: where to record readiness and metrics (see the module doc), or ``None``.
    """

    def __init__(self, settings: CommonSettings, *, name: str, reconcile: Reconcile,
                 min_wait: float = 0.05, max_wait: float = 1.0, retry_base: float = 0.25,
                 retry_max: float = 30.0, resync: float | None = None,
                 catalog_wait: float = 120.0, quick: Reconcile | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 rng: Callable[[float, float], float] = random.uniform,
                 health: Health | None = None) -> None:
        self.settings = settings
        self.health = health
        self._counted = 0  # bucket updates already counted as consumed
        self._kv_subject = f"$KV.{settings.catalog_bucket}.>"
        if health is not None:
            health.add_check("nats", lambda: None if self.nc is not None and
                             self.nc.is_connected else "not connected to NATS")
        self.name = name
        self._reconcile = reconcile
        self._quick = quick
        self._clock = clock
        self._catalog_wait = catalog_wait
        self._armed = False  # the last reconcile succeeded and no quick run happened since
        self._quick_due = False
        self.schedule = Schedule(min_wait=min_wait, max_wait=max_wait, retry_base=retry_base,
                                 retry_max=retry_max,
                                 resync=settings.resync if resync is None else resync, rng=rng)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self.mirror: CatalogMirror | None = None
        #: number of successful reconciles so far (for status and tests)
        self.reconciles = 0
        #: the last reconcile error message, or ``""`` after a success
        self.last_error = ""
        #: number of quick runs started so far (for status and tests)
        self.quick_runs = 0
        #: why the reconciles so far started (``request``, ``change``, ``retry``, ``resync``)
        self.reasons: dict[str, int] = {}

    def request(self) -> None:
        """Reconcile as soon as possible (e.g. a lock was won), through the same loop, so it
        never runs beside another reconcile."""
        self.schedule.request(self._clock())
        self._wake.set()

    def _count_consumed(self) -> None:
        if self.health is not None and self.mirror is not None:
            fresh, self._counted = self.mirror.updates - self._counted, self.mirror.updates
            if fresh:
                self.health.events_consumed.labels(subject=self._kv_subject).inc(fresh)

    def _catalog_changed(self) -> None:
        self._count_consumed()
        if self._armed and self._quick is not None:
            self._quick_due = True
        self.schedule.changed(self._clock())
        self._wake.set()

    async def start(self) -> None:
        """Connect, wait for the catalog bucket, load it and start the loop (the first
        reconcile follows at once).

        :raises nats.errors.NoServersError: NATS is unreachable.
        :raises unify_common.natsio.CatalogMissing: consul-bridge has not declared the stream
            or the bucket within ``catalog_wait`` seconds.
        """
        self.nc = nc = await connect_nats(self.settings, name=self.name)
        try:
            self.js = js = nc.jetstream()
            bucket = await wait_for_catalog(js, self.settings, timeout=self._catalog_wait,
                                            log=log)
            self.mirror = CatalogMirror(bucket, on_change=self._catalog_changed)
            await self.mirror.start()
            self._count_consumed()  # the initial load
        except BaseException:
            await self._close_nats(5.0)
            raise
        self.request()  # the first reconcile happens from the cold-start state
        self._tasks = [asyncio.create_task(self._run_loop(), name=f"{self.name}-reconcile")]

    async def stop(self, *, timeout: float = 5.0) -> None:
        """Stop the loop, delete the bucket watch and close the connection.

        Each step waits at most ``timeout`` seconds: a loop stuck inside the NATS client (it
        can swallow a cancellation while flushing) must not keep the process from exiting.
        """
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout)
        if self.mirror is not None:
            await self.mirror.stop(timeout=timeout)
        await self._close_nats(timeout)

    async def _close_nats(self, timeout: float) -> None:
        if self.nc is not None and not self.nc.is_closed:
            try:
                await asyncio.wait_for(self.nc.close(), timeout)
            except Exception:  # already broken: nothing more to release
                pass

    async def publish(self, subject: str, event: Event, *, msg_id: str) -> None:
        """Publish an event (errors, applied reports) on the stream; failures are logged."""
        try:
            if self.js is None:
                raise ConnectionError("not connected to NATS yet")
            await publish_event(self.js, subject, event, msg_id=msg_id)
        except Exception as err:  # a report must never break the apply path
            log.warning("could not publish event", subject=subject, error=str(err))
            if self.health is not None:
                self.health.count_error("publish-failed")
            return
        if self.health is not None:
            self.health.events_published.labels(subject=subject).inc()

    async def _run_loop(self) -> None:
        while True:
            if self._quick_due:
                await self._run_quick()
            now = self._clock()
            reason = self.schedule.reason(now)
            if reason is None:
                due = self.schedule.due_at()
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(),
                                           None if due is None else max(0.0, due - now))
                except TimeoutError:
                    pass
                continue  # re-evaluate after every wake-up and every deadline
            self.schedule.begin()
            await self._run_reconcile(reason)

    async def _run_reconcile(self, reason: str) -> None:
        """One reconcile of the current catalog; the outcome goes to the schedule."""
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        assert self.mirror is not None, "start() loads the mirror first"
        state = self.mirror.snapshot()
        started = self._clock()
        try:
            if self.health is not None:
                with self.health.time_reconcile():
                    await self._reconcile(state)
            else:
                await self._reconcile(state)
        except Exception as err:
            if self.health is not None:
                self.health.record_failure(failure_kind(err))
            delay = self.schedule.failed(self._clock())
            self.last_error = str(err)
            self._armed = self._quick_due = False
            log.error("reconcile failed; will retry", component=self.name, error=str(err),
                      retry_in_s=round(delay, 2), attempt=self.schedule.failures,
                      exc_info=not isinstance(err, OSError))
            return
        self.schedule.succeeded(self._clock())
        if self.health is not None:
            self.health.record_success()
        self.last_error = ""
        self.reconciles += 1
        self._armed = True
        log.debug("reconciled", component=self.name, revision=state.revision, reason=reason,
                  ms=round((self._clock() - started) * 1000, 1))

    async def _run_quick(self) -> None:
        """One quick run on the current catalog (disarms until the next reconcile succeeds);
        any exception is logged, never raised."""
        self._quick_due = self._armed = False
        self.quick_runs += 1
        assert self.mirror is not None and self._quick is not None, "armed only with both"
        state = self.mirror.snapshot()
        started = self._clock()
        try:
            await self._quick(state)
        except Exception as err:  # the debounced reconcile still follows and sets it right
            log.warning("quick step failed; the reconcile follows", component=self.name,
                        error=str(err), exc_info=True)
            return
        log.debug("quick step", component=self.name, revision=state.revision,
                  ms=round((self._clock() - started) * 1000, 1))


def failure_kind(err: BaseException) -> str:
    """The error kind of a failed reconcile: the exception's class name in lower case with
    dashes (``ApplyFailed`` -> ``apply-failed``, ``OSError`` -> ``os-error``)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-",
                  type(err).__name__).lower()
