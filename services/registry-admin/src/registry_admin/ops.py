"""The operations registry-admin and ``unify registry gc`` share: publishing events (with a
bounded retry), error and step events, rendering the registries' configuration and the
rolling restart (one instance at a time, each serving again before the next)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

from unify_common.atomic import write_atomic
from unify_common.events import ErrorEvent, Event, RegistryStep
from unify_common.health import Health
from unify_common.logs import get_logger
from unify_common.natsio import publish_event
from unify_common.subjects import error_subject, registry_step_subject

from . import plan, store
from .restart import Restarter, command_restarter, docker_restarter, wait_serving
from .settings import RegistryAdminSettings

__all__ = ["Operator", "SOURCE", "restarter_from_settings"]

log = get_logger("registry_admin")
SOURCE = "registry-admin"


def _ms() -> int:
    return int(time.time() * 1000)


def restarter_from_settings(settings: RegistryAdminSettings) -> Restarter | None:
    """The restarter ``UNIFY_REGISTRY_RESTART`` names (``None`` for ``none``)."""
    if settings.restart == "command":
        return command_restarter(settings.restart_command, timeout=settings.restart_timeout)
    if settings.restart == "docker":
        return docker_restarter(timeout=settings.restart_timeout)
    return None


class Operator:
    """Holds the settings, the restarter and the secrets the registry configuration needs.
    ``js`` (a JetStream context or ``None``) is where events go; without it they are only
    logged. ``on_step`` (optional) sees every step, e.g. to print it."""

    def __init__(self, settings: RegistryAdminSettings, *, restarter: Restarter | None,
                 health: Health | None = None) -> None:
        self.settings = settings
        self.restarter = restarter
        self.health = health or Health(SOURCE)
        self.http_secret = ""
        self.notify_token = ""
        self._js = None
        self.on_step: Callable[[str, str, str, str, str], None] | None = None
        #: rollouts started by :meth:`roll` (for status and tests)
        self.rollouts = 0

    @property
    def js(self):
        """The JetStream context events are published on (``None``: not connected)."""
        return self._js

    @js.setter
    def js(self, value) -> None:
        self._js = value

    def load_secrets(self) -> None:
        """Load (or generate once) the shared secret and the notification token."""
        s = self.settings
        self.http_secret = store.ensure_secret(s.state_dir, "http-secret", s.http_secret_file)
        self.notify_token = store.ensure_secret(s.state_dir, "notify-token",
                                                s.notify_token_file)

    def write_registry_config(self, *, read_only: bool) -> bool:
        """Render the configuration every instance reads (0600); ``True`` when it changed."""
        s = self.settings
        s.config_file.parent.mkdir(parents=True, exist_ok=True)
        data = store.render_registry_config(
            storage_dir=s.storage_dir, tls_dir=s.tls_dir_path, port=s.listen_port,
            secret=self.http_secret, notify_url=s.notify_url, notify_token=self.notify_token,
            read_only=read_only)
        return write_atomic(s.config_file, data, mode=0o600)

    # ---- publishing ---------------------------------------------------------------------

    async def publish(self, subject: str, event: Event, msg_id: str) -> bool:
        """Publish with up to 3 attempts (bounded); ``False`` when all failed (logged)."""
        if self.js is None:
            log.info("event not published (no NATS connection)", subject=subject)
            return False
        for attempt in range(3):
            js = self.js
            try:
                if js is None:
                    raise RuntimeError("not connected")
                await publish_event(js, subject, event, msg_id=msg_id)
                self.health.events_published.labels(subject=subject).inc()
                return True
            except Exception as err:
                if attempt == 2:
                    log.error("could not publish event", subject=subject, error=str(err))
                    self.health.record_failure("publish")
                    return False
                await asyncio.sleep(0.2 * (attempt + 1))
        return False

    async def error(self, reason: str, message: str, *, instance_id: str = "",
                    node: str = "", key: str = "") -> None:
        """Log and publish an error event (id from reason, key and message)."""
        log.warning(message, reason=reason, node=node, instance_id=instance_id)
        self.health.count_error(reason)
        msg_id = f"{SOURCE}-{reason}-{uuid.uuid5(uuid.NAMESPACE_URL, key + message).hex}"
        await self.publish(error_subject(SOURCE), ErrorEvent(
            source=SOURCE, reason=reason, message=message, service=self.settings.service,
            instance_id=instance_id, node=node, observed_at=_ms()), msg_id)

    async def step(self, operation: str, run_id: str, step: str, status: str,
                   detail: str = "", instance: str = "") -> None:
        """Publish one :class:`RegistryStep`."""
        if self.on_step is not None:
            self.on_step(operation, step, status, detail, instance)
        await self.publish(registry_step_subject(operation), RegistryStep(
            source=SOURCE, operation=operation, run_id=run_id, step=step, status=status,
            detail=detail, instance=instance, observed_at=_ms()),
            f"{SOURCE}-{run_id}-{uuid.uuid4().hex}")

    async def roll(self, order: list[plan.Node], wanted_fp: str, *, operation: str,
                   run_id: str | None = None) -> bool:
        """Restart ``order`` one at a time; each must serve ``wanted_fp`` again before the
        next. Stops at the first failure (error event); ``True`` when all succeeded."""
        run_id = run_id or uuid.uuid4().hex[:12]
        assert self.restarter is not None
        self.rollouts += 1
        for node in order:
            await self.step(operation, run_id, "restart", "started", instance=node.name)
            try:
                await self.restarter(node)
                await wait_serving(node, wanted_fp, str(self.settings.verify_ca),
                                   timeout=self.settings.restart_timeout)
            except (RuntimeError, TimeoutError, OSError) as err:
                await self.step(operation, run_id, "restart", "failed", str(err), node.name)
                await self.error("restart-failed", f"{node.name}: {err}; the rollout stops "
                                 "here, the other instances keep serving",
                                 instance_id=node.instance_id, node=node.hostname,
                                 key=run_id)
                self.health.record_failure("restart")
                return False
            await self.step(operation, run_id, "restart", "ok", instance=node.name)
        return True
