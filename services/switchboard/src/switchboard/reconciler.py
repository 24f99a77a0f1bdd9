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

Both shortcuts also run on the leading edge of a burst, before the subscriber's debounce:
:meth:`Reconciler.quick` (the subscriber's quick step) sends the same runtime commands to the
worker as soon as the catalog changes, and reports an ``Applied`` ``runtime`` with an empty
``config_hash`` and a ``detail`` starting with ``ahead of the file:``. It writes no file and
never reloads; the debounced reconcile follows as above (render, ``haproxy -c``, write, reload
if needed) with its own report, so a burst still gives one reload.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from contextlib import nullcontext
from typing import Awaitable, Callable

from unify_common import subjects
from unify_common.state import CatalogState
from unify_common.events import Applied, ErrorEvent, Event
from unify_common.logs import get_logger

from .apply.certstore import load_certificates
from .apply.ports import busy_ports, listening_ports
from .apply.haproxy import ConfigCheckFailed, HAProxySink, ReloadFailed
from .apply.supervisor import HAProxySupervisor
from .desired import build_desired, frontend_ports
from .model import Desired, Problem
from .plan import (SparePlan, layout_from_config, ports_from_config, runtime_commands,
                   slot_layout, spare_commands)
from .render import config_hash, render, render_maps
from .settings import SwitchboardSettings

__all__ = ["PortsUnavailable", "Reconciler"]

log = get_logger("switchboard")
SOURCE = "switchboard"
Publish = Callable[[str, Event, str], Awaitable[None]]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _runtime_summary(commands: list[str]) -> str:
    """What runtime commands change, for a report, e.g. ``"2 server slots and 1 host map
    entry changed"`` (a part is left out when its count is zero)."""
    maps = sum(c.split()[1] == "map" for c in commands)
    slots = len({c.split()[2] for c in commands if c.split()[1] != "map"})
    parts = []
    if slots:
        parts.append(f"{slots} server slot{'' if slots == 1 else 's'}")
    if maps:
        parts.append(f"{maps} host map {'entry' if maps == 1 else 'entries'}")
    return " and ".join(parts) + " changed"


def _spare_summary(plan: SparePlan) -> str:
    """E.g. ``new vhosts through spare backends (be_http_docs_1a2b on be_spare_1)``."""
    return ("new vhosts through spare backends "
            f"({', '.join(f'{b} on {s}' for b, s in plan.spares)})")


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
        self._boot_ports: dict[int, str] = {}  # port -> kind in the live file at start
        self._reported: set[Problem] = set()
        self._rejected_hash = ""
        self._reload_failed_hash = ""
        #: frontend ports another program held at the last reconcile
        self._unavailable: frozenset[int] = frozenset()
        #: spare plan the quick step put into the worker, for the reconcile that follows
        self._quick_spare: SparePlan | None = None
        #: the last applied configuration hash (for status and tests)
        self.applied_hash = ""
        #: ``() -> context manager`` timing each apply (the service sets Health.time_apply)
        self.time_apply = nullcontext

    async def __call__(self, state: CatalogState) -> None:
        certificates, cert_problems = load_certificates(self.settings.cert_dir)
        if self._slots is None:
            live = self.sink.live_bytes()
            text = live.decode(errors="replace") if live else ""
            self._slots, self._boot_ports = layout_from_config(text), ports_from_config(text)
        desired = self._build(state, certificates)
        busy = self._busy_ports(desired)
        if busy:
            desired = self._build(state, certificates, busy)
        self._unavailable = busy
        await self._report(sorted(set(cert_problems) | set(desired.problems)))
        data = render(desired, self.settings.render)
        maps = render_maps(desired, self.settings.render)
        digest = config_hash(data, maps)
        quick_spare, self._quick_spare = self._quick_spare, None
        if digest == self._rejected_hash:
            if quick_spare is not None:
                await self._undo_spare(quick_spare)
            return
        if quick_spare is not None:
            # Serving since the quick step (which reported it). Whatever else the burst
            # brought, only a reload empties the spares again: no runtime path this time.
            spare, force_reload = quick_spare, True
        else:
            spare, force_reload = await self._spare_first(desired), False
        if spare is not None and quick_spare is None:
            await self._publish(subjects.applied_subject(SOURCE, self._node), Applied(
                source=SOURCE, node=self._node, method="runtime", config_hash=digest,
                detail=f"revision {state.revision}: {_spare_summary(spare)}; reload follows",
                observed_at=_now_ms()),
                f"{SOURCE}:{self._node}:applied:{digest}:{state.revision}:spare")
        try:
            with self.time_apply():
                method = await self._apply(desired, data, maps, force_reload=force_reload)
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

    def _build(self, state: CatalogState, certificates,
               unavailable: frozenset[int] = frozenset()) -> Desired:
        """The desired state of ``state`` from where the worker stands (its slots and port
        kinds), with the configured spares; ``unavailable`` ports left out."""
        spares = self.settings.spare_backends if self.settings.render.host_maps else 0
        return build_desired(state.instances, certificates=certificates,
                             previous_slots=self._slots, min_slots=self.settings.min_slots,
                             spare_backends=spares, unavailable_ports=unavailable,
                             previous_ports=self._previous_ports())

    def _previous_ports(self) -> dict[int, str]:
        """Each frontend port's kind in what HAProxy runs: the last applied state, or at
        start the live file's (a port keeps its kind while still claimed for it)."""
        if self._live is not None:
            return frontend_ports(self._live)
        return self._boot_ports

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
        if plan is None or not await self._runtime_quietly(plan.apply):
            return None
        return plan

    async def _undo_spare(self, plan: SparePlan) -> bool:
        """Take a spare plan back out of the worker; False when it did not take it all."""
        try:
            if await self.sink.runtime(plan.undo):
                return True
        except (OSError, asyncio.TimeoutError) as err:
            log.warning("could not take back the spare backends", extra={"fields": {
                "error": str(err)}})
        return False

    async def quick(self, state: CatalogState) -> None:
        """The leading-edge step (the subscriber's ``quick``): bring the running worker to
        ``state`` through the runtime API alone, before the debounced reconcile does the rest.

        Does something only when the last reconcile left HAProxy running what it applied
        (no reload pending) and the change is runtime-only: membership, weights, health and
        host-map routes between existing backends (:func:`~switchboard.plan.runtime_commands`),
        or new default-profile vhosts through spare backends
        (:func:`~switchboard.plan.spare_commands`). Writes no file, never reloads, reports
        no problems (the reconcile that follows does). After the worker took every command
        it publishes an ``Applied`` ``runtime`` with an empty ``config_hash`` and a
        ``detail`` ``ahead of the file: <what>; revision <n>``. A master that does not
        answer or refuses a command means nothing was done quickly: no report, and the
        reconcile that follows sets the worker straight either way.

        :param state: the whole current catalog.
        """
        if self._live is None or self.sink.reload_pending or self._quick_spare is not None:
            return
        certificates, _ = load_certificates(self.settings.cert_dir)
        # Runtime commands cannot add a frontend, so no probe of new ports: the ports held by
        # another program at the last reconcile stay left out as they were.
        desired = self._build(state, certificates, self._unavailable)
        commands = runtime_commands(self._live, desired, self.settings.render)
        if commands:
            if not await self._runtime_quietly(commands):
                return
            # The worker now runs these servers and routes: the reconcile that follows
            # finds no command left, checks and writes the file and reports ``runtime``.
            self._live = desired
            self._slots = slot_layout(desired)
            done = _runtime_summary(commands)
        elif commands is None:
            plan = spare_commands(self._live, desired, self.settings.render)
            if plan is None or not await self._runtime_quietly(plan.apply):
                return
            # The worker's structure is still the old one (``_live`` stays): the reconcile
            # that follows reloads (taking this plan back if ``haproxy -c`` says no), and
            # does not apply a spare plan again (``add map`` would add the hosts twice).
            self._quick_spare = plan
            done = _spare_summary(plan)
        else:
            return
        detail = f"ahead of the file: {done}; revision {state.revision}"
        log.info("applied at runtime ahead of the file", extra={"fields": {
            "detail": detail, "revision": state.revision}})
        await self._publish(subjects.applied_subject(SOURCE, self._node), Applied(
            source=SOURCE, node=self._node, method="runtime", config_hash="", detail=detail,
            observed_at=_now_ms()), f"{SOURCE}:{self._node}:applied:quick:{state.revision}")

    async def _runtime_quietly(self, commands) -> bool:
        """``sink.runtime(commands)``, with a master that does not answer counted as False."""
        try:
            return await self.sink.runtime(commands)
        except (OSError, asyncio.TimeoutError):
            return False

    async def _apply(self, desired: Desired, data: bytes, maps: dict[str, bytes], *,
                     force_reload: bool = False) -> str:
        """Get the worker to ``desired`` (``data`` and ``maps`` rendered from it); returns
        the ``Applied`` method. ``force_reload``: no runtime path, reload even when the file
        is unchanged (the worker's state is not known)."""
        commands = (runtime_commands(self._live, desired, self.settings.render)
                    if self._live is not None and not force_reload else None)
        if commands and await self._runtime_first(commands, data, maps):
            return "runtime"
        changed = await self.sink.write(data, maps)
        if self.supervisor is not None and await self.supervisor.ensure_running():
            return "reload"
        if not changed and not self.sink.reload_pending and not force_reload:
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
        if self.sink.reload_pending or not await self._runtime_quietly(commands):
            return False  # (no master: the normal path writes and (re)starts it)
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
