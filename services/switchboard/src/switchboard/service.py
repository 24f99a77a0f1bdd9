"""The switchboard shell: a :class:`~unify_common.subscriber.Subscriber` per node whose
reconcile is :class:`~switchboard.reconciler.Reconciler` (and whose quick step, run on the
first catalog change before the debounce, is :meth:`~switchboard.reconciler.Reconciler.quick`),
plus HAProxy supervision when switchboard runs HAProxy itself. Every node follows the whole
catalog bucket and keeps nothing on the NATS server (no durable consumer). It publishes its
per-vhost verdicts in the verdict bucket (:mod:`switchboard.verdicts`), rewritten every third
of their max age.

Health (:class:`~unify_common.health.Health`, metric prefix ``unify_switchboard_``, served on
``UNIFY_HEALTH_ADDR``, default ``127.0.0.1:9102``): checks ``nats`` and, with
``UNIFY_HAPROXY_MANAGE=1``, ``haproxy`` (the HAProxy it runs is up); the subscriber shell's
metrics (bucket updates consumed, reports published, reconcile durations, outcomes), apply
durations, the applied configuration hash (the one of the ``Applied`` events), and every
reported problem as an error of its reason (``reload-failed`` is counted once per failed
attempt, as the subscriber's failure kind).
"""

from __future__ import annotations

import asyncio
from importlib.metadata import version

from unify_common.events import ErrorEvent, Event
from unify_common.health import Health
from unify_common.logs import get_logger
from unify_common.subscriber import Subscriber

from .apply.haproxy import HAProxySink, ReloadFailed
from .apply.supervisor import HAProxySupervisor
from .reconciler import Reconciler
from .settings import SwitchboardSettings
from .verdicts import VerdictPublisher

__all__ = ["SwitchboardService", "build_service"]

log = get_logger("switchboard")
#: longest wait for each step of stopping the NATS side
STOP_TIMEOUT_S = 5.0


class SwitchboardService:
    """switchboard on one node: ``await start()``, ``await stop()``."""

    def __init__(self, settings: SwitchboardSettings) -> None:
        self.settings = settings
        self.sink = HAProxySink(config_path=settings.config_path,
                                master_socket=settings.master_socket_path,
                                haproxy_bin=settings.haproxy_bin,
                                reload_timeout=settings.reload_timeout)
        self.supervisor = (HAProxySupervisor(self.sink, log_path=settings.config_path.with_name(
            "haproxy.log")) if settings.manage else None)
        self.health = Health("switchboard", version=version("unify-switchboard"))
        self.subscriber = Subscriber(settings.common, name="switchboard",
                                     reconcile=self._reconcile, quick=self._quick,
                                     min_wait=settings.debounce, max_wait=settings.max_wait,
                                     health=self.health)
        self.verdicts = VerdictPublisher(settings.verdict_bucket, settings.verdict_ttl,
                                         settings.common.node)
        self.reconciler = Reconciler(settings, self.sink, self._publish, self.supervisor,
                                     verdicts=self.verdicts)
        self.reconciler.time_apply = self.health.time_apply
        self._watch: asyncio.Task | None = None
        self._refresh: asyncio.Task | None = None
        self._haproxy_problem: str | None = "haproxy not started yet"
        if self.supervisor is not None:
            self.health.add_check("haproxy", self._haproxy_check)

    def _haproxy_check(self) -> str | None:
        process = self.supervisor.process if self.supervisor is not None else None
        if process is not None:  # the master switchboard started
            return None if process.returncode is None else \
                f"haproxy exited with status {process.returncode}"
        return self._haproxy_problem  # none started: what the watch loop last found

    async def _reconcile(self, state) -> None:
        try:
            await self.reconciler(state)
        finally:  # PortsUnavailable is raised after an apply
            if self.reconciler.applied_hash:
                self.health.set_applied_config(self.reconciler.applied_hash)

    async def _quick(self, state) -> None:
        # runtime API only, on the leading edge of a burst (see Reconciler.quick)
        await self.reconciler.quick(state)

    async def _publish(self, subject: str, event: Event, msg_id: str) -> None:
        if isinstance(event, ErrorEvent) and event.reason != "reload-failed":
            self.health.count_error(event.reason)
        await self.subscriber.publish(subject, event, msg_id=msg_id)

    async def start(self, *, health_addr: tuple[str, int] | None = None) -> None:
        """Serve health on ``health_addr`` (``None``: not served; an address that cannot be
        bound is logged and health is not served), connect to NATS and start reconciling
        (the first reconcile follows at once)."""
        self.settings.config_path.parent.mkdir(parents=True, exist_ok=True)
        if health_addr is not None:
            try:
                await self.health.start(*health_addr)
            except OSError as err:
                log.error("cannot serve health; running without it", address=f"{health_addr[0]}:{health_addr[1]}",
                    error=str(err))
        await self.subscriber.start()
        try:
            js = self.subscriber.js
            if js is None:  # start() connects or raises; never met
                raise RuntimeError("no JetStream context after the subscriber started")
            await self.verdicts.open(js)
            await self.verdicts.refresh()  # a reconcile may have offered them already
        except Exception as err:  # routing goes on; dns411 then sees no verdicts of this node
            log.error("cannot open the verdict bucket; verdicts are not published",
                      bucket=self.settings.verdict_bucket, error=str(err))
        else:
            self._refresh = asyncio.create_task(self.verdicts.run_refresh(),
                                                name="verdict-refresh")
        if self.supervisor is not None:
            self._watch = asyncio.create_task(self._watch_haproxy(self.supervisor),
                                              name="haproxy-watch")

    async def _watch_haproxy(self, supervisor: HAProxySupervisor) -> None:
        while True:
            await asyncio.sleep(2.0)
            if self.sink.live_bytes() is None or self.reconciler.applied_hash == "":
                continue
            try:
                if await supervisor.ensure_running():
                    log.warning("haproxy was not running; started it again")
                self._haproxy_problem = None  # ours runs, or a master it did not start answers
            except ReloadFailed as err:
                self._haproxy_problem = f"cannot start haproxy: {err}"
                log.error("cannot start haproxy", error=str(err))

    async def stop(self) -> None:
        """Stop reconciling; stop HAProxy too when switchboard started it."""
        for task in (self._watch, self._refresh):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self._stop_subscriber()
        if self.supervisor is not None:
            await self.supervisor.stop()
        await self.health.stop()

    async def _stop_subscriber(self) -> None:
        await self.subscriber.stop(timeout=STOP_TIMEOUT_S)  # every step bounded


def build_service(settings: SwitchboardSettings) -> SwitchboardService:
    """The service for ``settings`` (not started)."""
    return SwitchboardService(settings)
