"""One reconcile: whole catalog -> desired state -> checked config -> HAProxy, plus reports.

Level-triggered and idempotent: the same catalog gives the same bytes and then nothing is
written or reloaded (``Applied`` with method ``unchanged``). Reports go out as events:

* every :class:`~switchboard.model.Problem` as an ``ErrorEvent`` on
  ``unify.error.switchboard`` when it first appears (not again while it persists);
* ``config-check-failed`` when ``haproxy -c`` rejects a rendering (once per rendering; the old
  configuration keeps serving and the catalog messages are acknowledged: retrying the same
  bytes cannot help, the next catalog change renders anew);
* ``Applied`` (``reload``, ``runtime`` or ``unchanged``) after every successful apply, on
  ``unify.applied.switchboard.<node>``.

Transient failures (HAProxy not answering, reload not confirmed) are reported once per
rendering (``reload-failed``) and raised, so the subscriber retries with backoff; the file
already holds the checked configuration, so an HAProxy (re)started meanwhile loads it.

Membership-only changes reach the running worker through the runtime API *before* the file is
checked and swapped (the commands only fill slots the live configuration already has), which
takes ``haproxy -c`` off the path from a catalog change to a serving server. So do host-only
routes between existing backends when the frontends have host maps (``add/set/del map``;
the map files are written with the same content).

New default-profile vhosts (host-only routes on plain HTTP frontends, see
:func:`~switchboard.plan.spare_commands`) take the same shortcut: the runtime API fills a spare
backend with their servers and adds their hosts to the frontend's host map, an ``Applied``
with method ``runtime`` goes out, and the configuration that gives them their own backends is
checked, written (with its map files) and reloaded right after (a second ``Applied``,
``reload``). If ``haproxy -c`` rejects that configuration, the shortcut is taken back.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from functools import partial
from typing import Awaitable, Callable

from unify_common import subjects
from unify_common.state import CatalogState
from unify_common.events import Applied, ErrorEvent, Event
from unify_common.logs import get_logger

from .apply.certstore import load_certificates
from .apply.ports import busy_ports, listening_ports
from .apply.haproxy import ConfigCheckFailed, HAProxySink, ReloadFailed
from .apply.supervisor import HAProxySupervisor
from .desired import build_desired
from .model import Desired, Problem
from .plan import SparePlan, layout_from_config, runtime_commands, slot_layout, spare_commands
from .render import config_hash, render, render_maps
from .settings import SwitchboardSettings

__all__ = ["PortsUnavailable", "Reconciler"]

log = get_logger("switchboard")
SOURCE = "switchboard"
Publish = Callable[[str, Event, str], Awaitable[None]]


def _now_ms() -> int:
    return int(time.time() * 1000)


class PortsUnavailable(OSError):
    """Frontend ports were left out because another program holds them; raised after the
    rest was applied so the subscriber retries (with backoff) until they are free."""


class Reconciler:
    """``await reconciler(state)`` applies ``state``; see the module doc.

    :param publish: ``async (subject, event, msg_id)``, e.g. :meth:`Subscriber.publish`.
    :param supervisor: set when switchboard runs HAProxy itself (``UNIFY_HAPROXY_MANAGE=1``).
    """

    def __init__(self, settings: SwitchboardSettings, sink: HAProxySink, publish: Publish,
                 supervisor: HAProxySupervisor | None = None) -> None:
        self.settings = settings
        self.sink = sink
        self.supervisor = supervisor
        self._publish = publish
        self._node = settings.common.node
        self._live: Desired | None = None
        self._slots: dict[str, tuple[str | None, ...]] | None = None
        self._reported: set[Problem] = set()
        self._rejected_hash = ""
        self._reload_failed_hash = ""
        #: the last applied configuration hash (for status and tests)
        self.applied_hash = ""

    async def __call__(self, state: CatalogState) -> None:
        certificates, cert_problems = load_certificates(self.settings.cert_dir)
        if self._slots is None:
            live = self.sink.live_bytes()
            self._slots = layout_from_config(live.decode(errors="replace")) if live else {}
        spares = self.settings.spare_backends if self.settings.render.host_maps else 0
        build = partial(build_desired, state.instances.values(), certificates=certificates,
                        previous_slots=self._slots, min_slots=self.settings.min_slots,
                        spare_backends=spares)
        desired = build()
        busy = self._busy_ports(desired)
        if busy:
            desired = build(unavailable_ports=busy)
        await self._report(sorted(set(cert_problems) | set(desired.problems)))
        data = render(desired, self.settings.render)
        maps = render_maps(desired, self.settings.render)
        digest = config_hash(data, maps)
        if digest == self._rejected_hash:
            return
        spare = await self._spare_first(desired)
        if spare is not None:
            await self._publish(subjects.applied_subject(SOURCE, self._node), Applied(
                source=SOURCE, node=self._node, method="runtime", config_hash=digest,
                detail=f"revision {state.revision}: new vhosts through spare backends "
                f"({', '.join(f'{b} on {s}' for b, s in spare.spares)}); reload follows",
                observed_at=_now_ms()),
                f"{SOURCE}:{self._node}:applied:{digest}:{state.revision}:spare")
        try:
            method = await self._apply(desired, data, maps)
        except ConfigCheckFailed as err:
            if spare is not None:
                await self._undo_spare(spare)
            self._rejected_hash = digest
            log.error("config rejected by haproxy -c; previous config keeps serving",
                      extra={"fields": {"config_hash": digest, "error": err.output[:500]}})
            await self._publish(subjects.error_subject(SOURCE), ErrorEvent(
                source=SOURCE, reason="config-check-failed", node=self._node,
                message=f"haproxy -c rejected config {digest[:12]}: {err.output[:1500]}",
                observed_at=_now_ms()), f"{SOURCE}:{self._node}:rejected:{digest}")
            return
        except ReloadFailed as err:
            if digest != self._reload_failed_hash:
                self._reload_failed_hash = digest
                await self._publish(subjects.error_subject(SOURCE), ErrorEvent(
                    source=SOURCE, reason="reload-failed", node=self._node,
                    message=f"config {digest[:12]} written but not loaded: {err}",
                    observed_at=_now_ms()), f"{SOURCE}:{self._node}:reload-failed:{digest}")
            raise
        self._rejected_hash = self._reload_failed_hash = ""
        self._live = desired
        self._slots = slot_layout(desired)
        self.applied_hash = digest
        log.info("applied", extra={"fields": {"method": method, "config_hash": digest,
                                              "revision": state.revision}})
        await self._publish(subjects.applied_subject(SOURCE, self._node), Applied(
            source=SOURCE, node=self._node, method=method, config_hash=digest,
            detail=f"revision {state.revision}", observed_at=_now_ms()),
            f"{SOURCE}:{self._node}:applied:{digest}:{state.revision}:{method}")
        if busy:
            raise PortsUnavailable(f"ports {sorted(busy)} are held by another program; "
                                   "everything else is applied, retrying for these")

    def _busy_ports(self, desired: Desired) -> frozenset[int]:
        # Ports HAProxy itself listens on (the last applied state, and the live file, which
        # the running workers loaded) are ours, not "another program's".
        wanted = {fe.port for fe in desired.frontends}
        held = {fe.port for fe in self._live.frontends} if self._live is not None else set()
        if not wanted - held:
            return frozenset()  # the usual case: no new port (and no 2 MB file to read)
        live = self.sink.live_bytes()
        if live:
            held |= listening_ports(live.decode(errors="replace"))
        return busy_ports(self.settings.render.bind, wanted - held)

    async def _spare_first(self, desired: Desired) -> SparePlan | None:
        """New default-profile vhosts: serve them through spare backends at once (see the
        module doc). Returns the plan when the worker took every command, else ``None`` (the
        reload that follows sets the worker straight either way)."""
        if self._live is None or self.sink.reload_pending:
            return None
        plan = spare_commands(self._live, desired, self.settings.render)
        if plan is None:
            return None
        try:
            if await self.sink.runtime(plan.apply):
                return plan
        except (OSError, asyncio.TimeoutError):
            pass
        return None

    async def _undo_spare(self, plan: SparePlan) -> None:
        try:
            await self.sink.runtime(plan.undo)
        except (OSError, asyncio.TimeoutError) as err:
            log.warning("could not take back the spare backends", extra={"fields": {
                "error": str(err)}})

    async def _apply(self, desired: Desired, data: bytes, maps: dict[str, bytes]) -> str:
        commands = (runtime_commands(self._live, desired, self.settings.render)
                    if self._live is not None else None)
        if commands and await self._runtime_first(commands, data, maps):
            return "runtime"
        changed = await self.sink.write(data, maps)
        if self.supervisor is not None and await self.supervisor.ensure_running():
            return "reload"
        if not changed and not self.sink.reload_pending:
            return "unchanged"
        if commands is not None and await self.sink.runtime(commands):
            return "runtime"
        await self.sink.reload()
        return "reload"

    async def _runtime_first(self, commands: list[str], data: bytes,
                             maps: dict[str, bytes]) -> bool:
        """Membership-only change: give the running worker its servers first, then let the
        file catch up (``haproxy -c`` and the atomic swap), so the next reload or restart
        loads the same servers. The commands only carry server addresses, ports, weights and
        states that ``validate`` accepted, into slots the live configuration already has;
        ``haproxy -c`` still guards every byte written. Returns False (nothing done, or
        not all commands taken) to let the normal path decide: write, then runtime or
        reload."""
        if self.sink.reload_pending:
            return False
        try:
            if not await self.sink.runtime(commands):
                return False
        except (OSError, asyncio.TimeoutError):
            return False  # no master: the normal path writes and (re)starts it
        await self.sink.write(data, maps)
        self.sink.reload_pending = False  # the worker already runs what the file now says
        return True

    async def _report(self, problems: list[Problem]) -> None:
        current = set(problems)
        for problem in problems:
            if problem in self._reported:
                continue
            log.warning("input rejected", extra={"fields": {
                "reason": problem.reason, "service": problem.service,
                "instance_id": problem.instance_id, "message": problem.message}})
            ident = hashlib.sha256(repr(problem).encode()).hexdigest()[:24]
            await self._publish(subjects.error_subject(SOURCE), ErrorEvent(
                source=SOURCE, reason=problem.reason, message=problem.message,
                service=problem.service, instance_id=problem.instance_id,
                node=problem.node or self._node, observed_at=_now_ms()),
                f"{SOURCE}:{self._node}:problem:{ident}:{time.time_ns()}")
        self._reported = current
