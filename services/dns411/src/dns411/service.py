"""The dns411 service shell: NATS catalog in (via :class:`~unify_common.subscriber.Subscriber`),
dnsmasq files/process and Route 53 out.

The subscriber shell decides when to reconcile: catalog changes (debounced), retries after a
failed apply, a lock won (:meth:`Subscriber.request`), and its periodic resync every
``UNIFY_DNS411_TICK`` seconds, which starts a dead dnsmasq child again and heals Route 53
drift once its resync time is due. Every reconcile first looks whether the hosted zone list
is due to be read again (in the background, see :meth:`Reconciler.discover_zones`). After
every reconcile, what the node serves is put into the state bucket
(``UNIFY_DNS411_STATE_BUCKET``, see :mod:`.listing`), in the background: ``unify dns list``
reads it.

Health (:class:`~unify_common.health.Health`, metric prefix ``unify_dns411_``, served on
``UNIFY_HEALTH_ADDR``, default ``127.0.0.1:9103``): checks ``nats`` and, with
``UNIFY_DNSMASQ_MANAGE=1``, ``dnsmasq`` (its child runs); the subscriber shell's metrics
(bucket updates consumed, reports published, reconcile durations, outcomes), each sink's apply
duration (dnsmasq, Route 53), the applied configuration hash (the ``config_hash`` of the last
``Applied`` of a successful reconcile) and every reported problem as an error of its reason.
"""

from __future__ import annotations

import asyncio
from importlib.metadata import version

from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BadRequestError, NotFoundError
from nats.js.kv import KeyValue

from unify_common.consulio import make_consul
from unify_common.dnslisting import STATE_MAX_AGE, node_key
from unify_common.events import Applied, ErrorEvent, Event
from unify_common.health import Health
from unify_common.logs import get_logger
from unify_common.natsio import CatalogMissing
from unify_common.runloop import run_until_stopped
from unify_common.settings import CommonSettings
from unify_common.subscriber import Subscriber

from .apply.dnsmasq import DnsmasqSink
from .apply.dnsmasq_process import ManagedDnsmasq, control_for
from .apply.lock import WriterLock
from .apply.route53 import sink_for
from .listing import Served, build_state, encode_within
from .reconciler import Reconciler
from .settings import Dns411Settings
from .verdict_mirror import VerdictMirror

__all__ = ["Dns411", "build_reconciler", "run"]

log = get_logger("dns411")
#: longest wait of the first reconcile for switchboard's verdicts (:mod:`.verdicts`)
VERDICT_WAIT_S = 2.0


def build_reconciler(settings: Dns411Settings, common: CommonSettings, *,
                     route53_client=None) -> Reconciler:
    """A :class:`Reconciler` with the sinks the settings enable (no publisher yet)."""
    dnsmasq = (DnsmasqSink(settings, control_for(settings))
               if settings.dnsmasq_enabled else None)
    route53 = None
    if settings.route53_enabled:
        route53 = sink_for(settings, route53_client)
    return Reconciler(settings, node=common.node, dnsmasq=dnsmasq, route53=route53)


class Dns411:
    """The running service: ``await start()`` then ``await stop()``.

    ``subscriber.reconciles`` counts successful reconciles; ``reconciler`` exposes the last
    desired state and plan.
    """

    def __init__(self, settings: Dns411Settings, common: CommonSettings, *,
                 route53_client=None) -> None:
        self.settings = settings
        self.reconciler = build_reconciler(settings, common, route53_client=route53_client)
        self.health = Health("dns411", version=version("unify-dns411"))
        self.subscriber = Subscriber(common, name="dns411", reconcile=self._reconcile,
                                     min_wait=settings.debounce, resync=settings.tick,
                                     health=self.health)
        self.reconciler.publish = self._publish
        self.reconciler.time_apply = self.health.time_apply
        self.reconciler.on_served = self._served
        self._node = common.node
        self._state_kv: KeyValue | None = None  # the state bucket, opened at the first put
        self._state_pending: Served | None = None
        self._state_task: asyncio.Task | None = None
        #: number of state documents put into the state bucket so far
        self.states_published = 0
        self._reported_hash = ""  # config_hash of the last Applied published
        dnsmasq = self.reconciler.dnsmasq
        if dnsmasq is not None and isinstance(dnsmasq.control, ManagedDnsmasq):
            control = dnsmasq.control
            self.health.add_check("dnsmasq", lambda: None if control.pid is not None
                                  else "dnsmasq is not running")
        self._consul = None
        self._lock_task: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()
        self._zones_task: asyncio.Task | None = None
        if settings.route53_enabled and settings.route53_lock:
            self._consul = make_consul(common)
            self.reconciler.lock = WriterLock(self._consul, key=settings.lock_key,
                                              holder=common.node, ttl_s=settings.lock_ttl,
                                              on_acquired=self._takeover,
                                              purpose="dns411 route53")

    def _takeover(self) -> None:
        """The writer lock was won: reconcile now rather than at the next catalog change
        (through the subscriber's loop, so never beside another reconcile)."""
        self.subscriber.request()

    async def _reconcile(self, state) -> None:
        self._discover_zones()  # only when due (UNIFY_ROUTE53_ZONE_TTL)
        if self.reconciler.verdicts is not None:  # at start: switchboard's verdicts first
            await self.reconciler.verdicts.wait_loaded(VERDICT_WAIT_S)
        await self.reconciler(state)  # raises when a sink failed: nothing new is in force
        if self._reported_hash:
            self.health.set_applied_config(self._reported_hash)

    def _discover_zones(self) -> None:
        """Run :meth:`Reconciler.discover_zones` in the background (one at a time): a slow
        or unreachable Route 53 must not hold back a reconcile, which needs the zones only
        when it plans Route 53, after dnsmasq."""
        if self._zones_task is None or self._zones_task.done():
            self._zones_task = asyncio.get_running_loop().create_task(
                self.reconciler.discover_zones(), name="dns411-zones")
            self._background.add(self._zones_task)
            self._zones_task.add_done_callback(self._background.discard)

    async def _publish(self, subject: str, event: Event, msg_id: str) -> None:
        if isinstance(event, ErrorEvent):
            self.health.count_error(event.reason)
        elif isinstance(event, Applied):
            self._reported_hash = event.config_hash
        await self.subscriber.publish(subject, event, msg_id=msg_id)

    def _served(self, served: Served) -> None:
        """Publish what a reconcile left served, in the background (the reconcile loop never
        waits for it); while one put runs, only the newest snapshot waits for the next."""
        self._state_pending = served
        if self._state_task is None or self._state_task.done():
            self._state_task = asyncio.get_running_loop().create_task(
                self._publish_states(), name="dns411-state")
            self._background.add(self._state_task)
            self._state_task.add_done_callback(self._background.discard)

    async def _publish_states(self) -> None:
        """Put each pending snapshot into the state bucket (see :mod:`.listing`). A failure
        is logged and counted (error kind ``state-publish-failed``); the next reconcile
        publishes again."""
        while self._state_pending is not None:
            served, self._state_pending = self._state_pending, None
            try:
                nc = self.subscriber.nc
                if nc is None:
                    raise RuntimeError("not connected to NATS")
                state = await asyncio.to_thread(build_state, served, self.settings,
                                                node=self._node)
                data = await asyncio.to_thread(encode_within, state, nc.max_payload)
                kv = self._state_kv or await self._open_state_bucket()
                self._state_kv = kv
                await kv.put(node_key(self._node), data)
                self.states_published += 1
            except Exception as err:  # NATS away, bucket refused: the next reconcile retries
                self._state_kv = None
                self.health.count_error("state-publish-failed")
                log.warning("cannot publish the served records",
                            bucket=self.settings.state_bucket,
                            error=f"{type(err).__name__}: {str(err)[:300]}")

    async def _open_state_bucket(self) -> KeyValue:
        """The state bucket, created when missing (dns411 owns it: one key per node, history
        1, entries expire ``STATE_MAX_AGE`` seconds after their last update)."""
        js = self.subscriber.js
        if js is None:
            raise RuntimeError("not connected to NATS")
        try:
            return await js.key_value(self.settings.state_bucket)
        except NotFoundError:
            try:
                return await js.create_key_value(KeyValueConfig(
                    bucket=self.settings.state_bucket, history=1, ttl=STATE_MAX_AGE,
                    storage=StorageType.FILE,
                    description="what each dns411 node serves (unify dns list)"))
            except BadRequestError:  # another dns411 created it in between
                return await js.key_value(self.settings.state_bucket)

    async def start(self, *, health_addr: tuple[str, int] | None = None) -> None:
        """Serve health on ``health_addr`` (``None``: not served; an address that cannot be
        bound is logged and health is not served), discover the hosted zones in the
        background (Route 53 on), connect and begin reconciling.

        :raises nats.errors.NoServersError:."""
        if health_addr is not None:
            try:
                await self.health.start(*health_addr)
            except OSError as err:
                log.error("cannot serve health; running without it", address=f"{health_addr[0]}:{health_addr[1]}",
                    error=str(err))
        self._discover_zones()
        if self.reconciler.lock is not None:
            await self.reconciler.lock.step()  # know who writes before the first reconcile
            self._lock_task = asyncio.create_task(self.reconciler.lock.run(),
                                                  name="dns411-writer-lock")
        await self.subscriber.start()
        # switchboard's verdicts: a change (or an expiry) asks for a reconcile
        assert self.subscriber.js is not None, "start() connected it"
        verdicts = VerdictMirror(self.subscriber.js, self.settings.verdict_bucket,
                                 on_change=self.subscriber.request)
        self.reconciler.verdicts = verdicts
        verdicts.start()

    async def stop(self) -> None:
        """Stop reconciling; a dnsmasq child is stopped too."""
        if self.reconciler.verdicts is not None:
            await self.reconciler.verdicts.stop()
        await self.subscriber.stop()
        for task in [self._lock_task, *list(self._background)]:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self.reconciler.lock is not None:
            await self.reconciler.lock.release()
        if self._consul is not None:
            await self._consul.http.close()
        if self.reconciler.dnsmasq is not None:
            await asyncio.to_thread(self.reconciler.dnsmasq.control.stop)
        await self.health.stop()


async def run(settings: Dns411Settings, common: CommonSettings) -> None:
    """Run until SIGTERM or SIGINT.

    :raises SystemExit: (status 1) consul-bridge has not declared the stream and the catalog
        bucket within the subscriber's wait (logged).
    """
    service = Dns411(settings, common)
    try:
        await run_until_stopped(
            lambda: service.start(health_addr=settings.health_addr), service.stop,
            on_started=lambda: log.info("dns411 running", node=common.node, mode=settings.mode,
                health=service.health.bound))
    except CatalogMissing as err:
        log.error("cannot start", error=str(err))
        raise SystemExit(1) from None
