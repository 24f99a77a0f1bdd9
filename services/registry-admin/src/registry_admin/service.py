"""The registry-admin shell.

* A :class:`~unify_common.subscriber.Subscriber` follows the catalog; each reconcile takes the
  registry instances, re-issues the server certificate when its SAN set changed or two thirds
  of its lifetime are gone, writes ``certs.d/<host:port>/ca.crt`` for every name, checks every
  instance's secret fingerprint and starts a rolling restart of instances that do not serve
  the current certificate (one at a time, each waiting until it serves again). The
  subscriber's periodic resync (``UNIFY_RESYNC``) reconciles without catalog changes too, so
  renewal at two thirds of the lifetime needs no event.
* An aiohttp server takes distribution's notifications on ``POST /notify`` (bearer token
  required, 401 otherwise; malformed bodies 400 with the reason), answers at once and
  publishes ``image.pushed`` (only once the tag resolves to the pushed digest) and
  ``image.deleted`` with ``Nats-Msg-Id: registry-<event id>``.
* :class:`~unify_common.health.Health` serves readiness: NATS connected, certificate
  current, every reported secret fingerprint matching.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import hmac
import time
import uuid
from collections.abc import Callable

from aiohttp import web

from unify_common.events import ImageDeleted, ImagePushed
from unify_common.health import Health
from unify_common.logs import get_logger
from unify_common.subjects import registry_image_subject
from unify_common.subscriber import Subscriber

from . import notify, pki, plan, store
from .ops import SOURCE, Operator, restarter_from_settings
from .probe import accepts_upload_state
from .registry_api import RegistryClient, RegistryError
from .restart import Restarter, served_fingerprint
from .secret import fingerprint, probe_problems, secret_problems
from .settings import RegistryAdminSettings

__all__ = ["RegistryAdmin"]

log = get_logger("registry_admin")
VERSION = "0.1.0"
#: the upload-state probe runs when the instances change, while a problem stands, and at
#: least this often (seconds)
PROBE_EVERY_S = 60.0
Clock = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _ms() -> int:
    return int(time.time() * 1000)


class RegistryAdmin(Operator):
    """registry-admin: ``await start()``, ``await stop()``.

    :param restarter: how to restart one instance; default from the settings
        (``UNIFY_REGISTRY_RESTART``).
    :param clock: the current time (UTC, aware); certificate validity is computed from it.
    """

    def __init__(self, settings: RegistryAdminSettings, *, restarter: Restarter | None = None,
                 clock: Clock = _utcnow) -> None:
        super().__init__(settings, restarter=restarter or restarter_from_settings(settings),
                         health=Health(SOURCE, version=VERSION))
        self.clock = clock
        # a full reconcile runs every UNIFY_RESYNC seconds too: renewal needs no catalog change
        self.subscriber = Subscriber(settings.common, name=SOURCE, reconcile=self._reconcile,
                                     health=self.health)  # it adds the "nats" check
        self.ca: pki.Bundle | None = None
        self.server: pki.Bundle | None = None
        #: instance name -> reason, for every instance whose secret differs
        self.secret_mismatches: dict[str, str] = {}
        self.trusted: list[str] = []
        self._reported: set[tuple[str, str]] = set()
        self._lock = asyncio.Lock()
        self._secret_lock = asyncio.Lock()
        self._probed_shape: tuple = ()
        self._probed_at = 0.0
        self._probe_problems: dict[str, str] = {}
        self._rollout_task: asyncio.Task | None = None
        self._rollout_again = False
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=10_000)
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._workers: list[asyncio.Task] = []
        self._runner: web.AppRunner | None = None
        self._registry: RegistryClient | None = None
        self.notify_port = 0

    # ---- lifecycle ----------------------------------------------------------------------

    async def start(self, *, health_addr: tuple[str, int] | None = None) -> None:
        """Load or create the CA and secrets, render the registry configuration, start the
        notification server, the catalog subscription and (if given) the health server.

        :raises ValueError: the CA files are damaged or a secret file is unreadable.
        :raises nats.errors.NoServersError: NATS is unreachable.
        """
        s = self.settings
        if s.mode == "manager":
            self.ca = store.ensure_ca(s.state_dir, self.clock(), days=s.ca_days)
            self.load_secrets()
            self.server = store.read_server(s.tls_dir_path)
            self.write_registry_config(read_only=False)
        self.health.add_check("secret", lambda: "; ".join(self.secret_mismatches.values())
                              or None)
        self.health.add_check("certificate", self._certificate_check)
        if health_addr is not None:
            await self.health.start(*health_addr)
        await self.subscriber.start()
        if s.mode == "manager":
            self._registry = RegistryClient(s.registry_url, s.verify_ca, timeout=5.0)
            await self._registry.__aenter__()
            app = web.Application(client_max_size=notify.MAX_BODY_BYTES)
            app.router.add_post("/notify", self._notify)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, s.notify_host, s.notify_port)
            await site.start()
            self.notify_port = self._runner.addresses[0][1]
            self._workers = [asyncio.create_task(self._worker(), name=f"notify-{i}")
                             for i in range(8)]

    async def stop(self) -> None:
        """Stop everything (a rollout in progress is cancelled between two instances)."""
        tasks = [t for t in [self._rollout_task, *self._workers] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        await self.subscriber.stop()
        if self._registry is not None:
            await self._registry.__aexit__(None, None, None)
        await self.health.stop()

    def _certificate_check(self) -> str | None:
        if self.settings.mode != "manager":
            return None
        if self.server is None:
            return "no server certificate issued yet"
        if self.clock() >= self.server.cert.not_valid_after_utc:
            return "the server certificate has expired"
        return None

    @property
    def js(self):
        """The subscriber's JetStream context."""
        return self.subscriber.js

    @js.setter
    def js(self, value) -> None:
        pass

    # ---- reconcile ----------------------------------------------------------------------

    async def reconcile_now(self) -> None:
        """Reconcile at once with the current catalog (what the periodic resync does)."""
        if self.subscriber.mirror is not None:
            with self.health.time_reconcile():
                await self._reconcile(self.subscriber.mirror.snapshot())
            self.health.record_success()

    async def _reconcile(self, state) -> None:
        # the subscriber times it and records its success or failure in self.health
        async with self._lock:
            await self._reconcile_locked(state)

    async def _reconcile_locked(self, state) -> None:
        s = self.settings
        nodes, rejected = plan.registry_nodes(state, s.service)
        for r in rejected:
            if ("rejected", r.name + r.reason) not in self._reported:
                self._reported.add(("rejected", r.name + r.reason))
                await self.error("invalid-registry-instance", f"{r.name}: {r.reason}",
                                 instance_id=r.instance_id, node=r.node, key=r.name)
        sans = plan.wanted_sans(nodes, service=s.service, domains=s.domains,
                                extra_names=s.extra_names)
        if s.mode == "manager":
            assert self.ca is not None
            server = self.server
            reason = pki.renewal_reason(server, self.ca, sans, self.clock())
            if reason is not None or server is None:  # no server: reason is "missing"
                run_id = uuid.uuid4().hex[:12]
                with self.health.time_apply():
                    server = self.server = pki.issue_server(self.ca, sans, self.clock(),
                                                            days=s.cert_days)
                    store.write_server(s.tls_dir_path, server)
                fp = pki.cert_fingerprint(server.cert_pem)
                log.info("server certificate issued", reason=reason, dns=list(sans.dns),
                         ips=list(sans.ips), fingerprint=fp)
                await self.step("certificate", run_id, "issue", "ok",
                                f"{reason}: {', '.join(sans.dns + sans.ips)}")
            self.health.set_applied_config(pki.cert_fingerprint(server.cert_pem))
            ca_pem = self.ca.cert_pem
        else:
            ca_pem = s.verify_ca.read_bytes()
        dirs = plan.trust_dirs(nodes, sans, extra_ports=s.trust_ports)
        with self.health.time_apply():
            store.write_trust(s.certs_d, dirs, ca_pem)
            store.remove_stale_trust(s.certs_d, dirs)
        self.trusted = dirs
        if s.mode == "manager":
            await self._check_secrets(nodes)
            self._start_rollout(nodes)

    async def _check_secrets(self, nodes: list[plan.Node], *, probe: bool = False) -> None:
        """Fingerprints from the catalog, then the upload-state probe between instances
        (see :mod:`.probe`; ``probe`` forces it); both kinds of problem fail readiness with
        an error event."""
        async with self._secret_lock:
            await self._check_secrets_locked(nodes, probe)

    async def _check_secrets_locked(self, nodes: list[plan.Node], probe: bool) -> None:
        own = fingerprint(self.http_secret)
        problems = secret_problems(own, {n.name: n.secret_fp for n in nodes})
        shape = tuple((n.name, n.endpoint) for n in nodes)
        due = (probe or shape != self._probed_shape or bool(self.secret_mismatches)
               or time.monotonic() - self._probed_at > PROBE_EVERY_S)
        if len(nodes) > 1 and due:
            self._probed_shape, self._probed_at = shape, time.monotonic()
            verified = [n for n in nodes if n.secret_fp == own]
            reference = (verified or nodes)[0]
            verdicts = {}
            for node in nodes:
                if node is not reference:
                    verdicts[node.name] = await accepts_upload_state(
                        reference, node, str(self.settings.verify_ca))
            found = probe_problems(reference.name, verdicts, reference_verified=bool(verified))
            for name, verdict in verdicts.items():
                if verdict is None and name in self._probe_problems:  # keep the last word
                    found.setdefault(name, self._probe_problems[name])
            self._probe_problems = found
        for name, why in self._probe_problems.items():
            if name in {n.name for n in nodes}:
                problems.setdefault(name, why)
        by_name = {n.name: n for n in nodes}
        for name, why in problems.items():
            if ("secret", name) not in self._reported:
                self._reported.add(("secret", name))
                node = by_name[name]
                await self.error("secret-mismatch", why, instance_id=node.instance_id,
                                 node=node.hostname or name, key=name)
        for key in [k for k in self._reported if k[0] == "secret" and k[1] not in problems]:
            self._reported.discard(key)  # fixed: report again if it comes back
        if problems and not self.secret_mismatches:
            self.health.record_failure("secret-mismatch")
        self.secret_mismatches = problems

    # ---- rolling restart ----------------------------------------------------------------

    def _start_rollout(self, nodes: list[plan.Node]) -> None:
        if self._rollout_task is not None and not self._rollout_task.done():
            self._rollout_again = True
            return
        self._rollout_task = asyncio.create_task(self._rollout(nodes), name="rollout")

    async def _rollout(self, nodes: list[plan.Node]) -> None:
        """Restart the instances that do not serve the current certificate, one at a time."""
        assert self.server is not None
        wanted = pki.cert_fingerprint(self.server.cert_pem)
        served = {n.key: await served_fingerprint(n.host, n.port) for n in nodes}
        order = plan.rollout_order(nodes, served, wanted)
        if order and self.restarter is None:
            if ("restart", wanted) not in self._reported:
                self._reported.add(("restart", wanted))
                await self.error("restart-needed", "registries serve an old certificate and "
                                 "UNIFY_REGISTRY_RESTART=none: restart them one at a time: "
                                 + ", ".join(n.name for n in order), key=wanted)
            return
        if order:
            await self.roll(order, wanted, operation="rollout")
            await self._check_secrets(nodes, probe=True)  # restarted ones answer now
        if self._rollout_again:
            self._rollout_again = False
            state = self.subscriber.mirror.snapshot() if self.subscriber.mirror else None
            if state is not None:
                fresh, _ = plan.registry_nodes(state, self.settings.service)
                self._rollout_task = asyncio.create_task(self._rollout(fresh))

    # ---- notifications ------------------------------------------------------------------

    async def _notify(self, request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "")
        wanted = f"Bearer {self.notify_token}"
        if not hmac.compare_digest(given.encode(), wanted.encode()):
            log.warning("notification refused: missing or wrong token", peer=request.remote)
            self.health.count_error("notify-unauthorized")
            return web.Response(status=401, text="token required\n")
        try:
            body = await request.read()
            kept, dropped = notify.parse_envelope(body)
        except web.HTTPRequestEntityTooLarge:
            raise
        except notify.NotificationError as err:
            await self.error("invalid-notification", f"notification rejected: {err}",
                             key=str(request.remote))
            return web.Response(status=400, text=f"{err}\n")
        received = time.monotonic()
        for item in kept:
            try:
                self._queue.put_nowait((item, received))
            except asyncio.QueueFull:
                return web.Response(status=503, text="busy\n")  # the registry retries
        self.health.events_consumed.labels(subject="notify").inc(len(kept) + dropped)
        return web.Response(status=200, text="ok\n")

    async def _worker(self) -> None:
        while True:
            item, received = await self._queue.get()
            try:
                await self._handle(item, received)
            except Exception as err:  # never let one notification stop the worker
                log.error("notification handling failed", error=str(err), exc_info=True)
            finally:
                self._queue.task_done()

    def _first_time(self, event_id: str) -> bool:
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        while len(self._seen) > 50_000:
            self._seen.popitem(last=False)
        return True

    async def _handle(self, item: notify.Pushed | notify.Deleted, received: float) -> None:
        if not self._first_time(item.event_id):
            return
        msg_id = f"registry-{item.event_id}"
        if isinstance(item, notify.Deleted):
            await self.publish(registry_image_subject("deleted"), ImageDeleted(
                repository=item.repository, tag=item.tag, digest=item.digest,
                actor=item.actor, instance=item.instance, registry_event_id=item.event_id,
                deleted_at=item.at_ms, observed_at=_ms()), msg_id)
            return
        reference = item.tag or item.digest
        deadline = received + self.settings.resolve_timeout
        # distribution 2.8 notifies before it writes the tag (distribution#2625): the tag
        # usually resolves a few milliseconds later, so the first retries come quickly;
        # doubling up to 0.25 s keeps the requests bounded (about 45 in 10 s)
        registry = self._registry
        assert registry is not None, "the registry client opens before notifications are served"
        delay, seen = 0.002, None
        while True:
            try:
                seen = await registry.resolve(item.repository, reference)
            except RegistryError as err:
                seen = f"error: {err}"
            if seen == item.digest:
                break
            if time.monotonic() + delay > deadline:
                self._seen.pop(item.event_id, None)
                await self.error("tag-unresolved", f"{item.repository}:{reference} did not "
                                 f"resolve to {item.digest} within "
                                 f"{self.settings.resolve_timeout:g}s (last: {seen})",
                                 key=item.event_id)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)
        await self.publish(registry_image_subject("pushed"), ImagePushed(
            repository=item.repository, tag=item.tag, digest=item.digest, size=item.size,
            media_type=item.media_type, actor=item.actor, instance=item.instance,
            registry_event_id=item.event_id, pushed_at=item.at_ms, observed_at=_ms()),
            msg_id)
        self.health.record_success()
