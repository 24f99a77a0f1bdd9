"""One reconcile: whole catalog -> desired state -> checked config -> HAProxy, plus reports.

Level-triggered and idempotent: the same catalog gives the same bytes and then nothing is
written or reloaded (``Applied`` with method ``unchanged``). Reports go out as events:

* every :class:`~unify_common.problems.Problem` as an ``ErrorEvent`` on
  ``unify.error.switchboard`` when it first appears (not again while it persists), through
  one :class:`~unify_common.problems.ProblemReporter`;
* the per-vhost verdicts of every applied state (accepted, or rejected with the reason) in
  the verdict bucket, for dns411 (:mod:`switchboard.verdicts`), when they change;
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

What the worker runs is one frozen :class:`~switchboard.decision.LiveState` (applied desired
state, slot layout, port kinds, reload pending, spare in flight), owned by the reconciler and
replaced after each step; which of the paths above a change takes (unchanged, runtime, spare,
reload) is the one answer of the pure :func:`~switchboard.decision.decide`. The slot layout
and port kinds of each configuration written are kept beside it
(:mod:`switchboard.apply.layoutfile`), so a restarted switchboard builds on them.

Both shortcuts also run on the leading edge of a burst, before the subscriber's debounce:
:meth:`Reconciler.quick` (the subscriber's quick step) sends the same runtime commands to the
worker as soon as the catalog changes, and reports an ``Applied`` ``runtime`` with an empty
``config_hash`` and a ``detail`` starting with ``ahead of the file:``. It writes no file and
never reloads; the debounced reconcile follows as above (render, ``haproxy -c``, write, reload
if needed) with its own report, so a burst still gives one reload.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace

from unify_common import subjects
from unify_common.events import Applied, ErrorEvent, Event
from unify_common.logs import get_logger
from unify_common.problems import ProblemReporter
from unify_common.state import CatalogState

from .apply.certstore import CertificateStore
from .apply.haproxy import ConfigCheckFailed, HAProxySink, ReloadFailed
from .apply.layoutfile import load_layout, save_layout
from .apply.ports import busy_ports, listening_ports
from .apply.supervisor import HAProxySupervisor
from .decision import LiveState, Reload, Runtime, Spare, Unchanged, decide
from .desired import DesiredBuilder, frontend_ports
from .model import Desired
from .plan import SparePlan, slot_layout
from .render import Renderer, config_hash, render_maps
from .settings import SwitchboardSettings
from .verdicts import VerdictPublisher

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

    What the running worker holds is one :class:`~switchboard.decision.LiveState`, owned by
    the reconciler alone and replaced after each step; how to get it to a new desired state
    is :func:`~switchboard.decision.decide`'s one answer, which this shell carries out.

    :param publish: ``async (subject, event, msg_id)``, e.g. :meth:`Subscriber.publish`.
    :param supervisor: set when switchboard runs HAProxy itself (``UNIFY_HAPROXY_MANAGE=1``).
    :param verdicts: where the per-vhost verdicts of each applied state go (``None``: not
        published).
    """

    def __init__(self, settings: SwitchboardSettings, sink: HAProxySink, publish: Publish,
                 supervisor: HAProxySupervisor | None = None,
                 verdicts: VerdictPublisher | None = None) -> None:
        self.settings = settings
        self.sink = sink
        self.supervisor = supervisor
        self._publish = publish
        self._node = settings.common.node
        #: what the worker runs; ``None`` until the first step reads the live file's layout
        self._live: LiveState | None = None
        self._starts_seen = 0  # supervisor.starts already accounted for
        # what carries over from one step to the next to make it cheap, owned here
        self._certificates = CertificateStore(settings.cert_dir)
        self._builder = DesiredBuilder()
        self._renderer = Renderer()
        self._layout_saved = False  # the layout file was written by this process
        self.verdicts = verdicts
        # what was reported, so each report goes out once
        self._problems = ProblemReporter(SOURCE, self._node, publish)
        self._rejected_hash = ""
        self._reload_failed_hash = ""
        #: frontend ports another program held at the last reconcile
        self._unavailable: frozenset[int] = frozenset()
        #: the last applied configuration hash (for status and tests)
        self.applied_hash = ""
        #: ``() -> context manager`` timing each apply (the service sets Health.time_apply)
        self.time_apply: Callable[[], AbstractContextManager[object]] = nullcontext

    @property
    def live(self) -> LiveState | None:
        """What the worker runs as far as switchboard knows (``None`` before the first
        reconcile)."""
        return self._live

    def _current(self) -> LiveState:
        """The live state: at the first call the slot layout and port kinds of the live
        file (:func:`~switchboard.apply.layoutfile.load_layout`), the worker itself not yet
        known; a master the supervisor started since the last call loaded the file, so no
        reload is pending any more."""
        live = self._live
        if live is None:
            slots, ports = load_layout(self.sink.config_path, self.sink.live_bytes())
            live = LiveState(slots=slots, ports=ports)
        if self.supervisor is not None and self.supervisor.starts != self._starts_seen:
            self._starts_seen = self.supervisor.starts
            live = replace(live, reload_pending=False)
        self._live = live
        return live

    def _known(self) -> LiveState:
        """The live state once :meth:`_current` has read it (every step after its start).

        :raises AssertionError: before that.
        """
        live = self._live
        assert live is not None, "the live state is read at the start of each step"
        return live

    async def __call__(self, state: CatalogState) -> None:
        certificates, cert_problems = self._certificates.load()
        live = self._current()
        desired = self._build(state, certificates, live)
        busy = self._busy_ports(desired, live)
        if busy:
            desired = self._build(state, certificates, live, busy)
        self._unavailable = busy
        await self._problems.report(set(cert_problems) | set(desired.problems))
        data = self._renderer.render(desired, self.settings.render)
        maps = render_maps(desired, self.settings.render)
        digest = config_hash(data, maps)
        if digest == self._rejected_hash:
            if live.spare is not None:  # the quick step's spare: take it back
                await self._undo_spare(live.spare)
                self._live = replace(live, spare=None)
            return
        decided = decide(live, desired, self.settings.render)
        decision: Unchanged | Runtime | Reload
        if isinstance(decided, Spare):
            decision = await self._take_spare(decided.plan, digest, state.revision)
        else:
            decision = decided
        try:
            with self.time_apply():
                method = await self._carry_out(decision, desired, data, maps)
        except ConfigCheckFailed as err:
            if isinstance(decision, Reload) and decision.undo is not None:
                await self._undo_spare(decision.undo)
                self._live = replace(self._known(), spare=None)
            self._rejected_hash = digest
            log.error("config rejected by haproxy -c; previous config keeps serving",
                      config_hash=digest, error=err.output[:500])
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
        self._live = LiveState(applied=desired, slots=slot_layout(desired),
                               ports=frontend_ports(desired))
        self.applied_hash = digest
        log.info("applied", method=method, config_hash=digest, revision=state.revision)
        await self._publish(subjects.applied_subject(SOURCE, self._node), Applied(
            source=SOURCE, node=self._node, method=method, config_hash=digest,
            detail=f"revision {state.revision}", observed_at=_now_ms()),
            f"{SOURCE}:{self._node}:applied:{digest}:{state.revision}:{method}")
        if self.verdicts is not None:  # after the report: never on the path to Applied
            await self.verdicts.offer(desired.verdicts, state.revision)
        if busy:
            raise PortsUnavailable(f"ports {sorted(busy)} are held by another program; "
                                   "everything else is applied, retrying for these")

    def _build(self, state: CatalogState, certificates, live: LiveState,
               unavailable: frozenset[int] = frozenset()) -> Desired:
        """The desired state of ``state`` from where the worker stands (its slots and port
        kinds), with the configured spares; ``unavailable`` ports left out."""
        spares = self.settings.spare_backends if self.settings.render.host_maps else 0
        return self._builder.build(state.instances, certificates=certificates,
                                   previous_slots=live.slots,
                                   min_slots=self.settings.min_slots, spare_backends=spares,
                                   unavailable_ports=unavailable, previous_ports=live.ports)

    def _busy_ports(self, desired: Desired, live: LiveState) -> frozenset[int]:
        # Ports HAProxy itself listens on (the last applied state, and the live file, which
        # the running workers loaded) are ours, not "another program's".
        wanted = {fe.port for fe in desired.frontends}
        held = ({fe.port for fe in live.applied.frontends} if live.applied is not None
                else set())
        if not wanted - held:
            return frozenset()  # the usual case: no new port (and no 2 MB file to read)
        text = self.sink.live_bytes()
        if text:
            held |= listening_ports(text.decode(errors="replace"))
        return busy_ports(self.settings.render.bind, wanted - held)

    async def _take_spare(self, plan: SparePlan, digest: str, revision: int) -> Reload:
        """Carry out the first half of a :class:`~switchboard.decision.Spare` decision: the
        new vhosts serve through spare backends at once (see the module doc), reported as
        ``runtime``. Returns the reload that follows (with ``plan`` to take back if the
        file is rejected); when the worker did not take every command, a plain reload (it
        sets the worker straight either way)."""
        if not await self._runtime_quietly(plan.apply):
            return Reload()
        self._live = replace(self._known(), spare=plan)
        await self._publish(subjects.applied_subject(SOURCE, self._node), Applied(
            source=SOURCE, node=self._node, method="runtime", config_hash=digest,
            detail=f"revision {revision}: {_spare_summary(plan)}; reload follows",
            observed_at=_now_ms()),
            f"{SOURCE}:{self._node}:applied:{digest}:{revision}:spare")
        return Reload(undo=plan)

    async def _undo_spare(self, plan: SparePlan) -> bool:
        """Take a spare plan back out of the worker; False when it did not take it all."""
        try:
            if await self.sink.runtime(plan.undo):
                return True
        except (TimeoutError, OSError) as err:
            log.warning("could not take back the spare backends", error=str(err))
        return False

    async def quick(self, state: CatalogState) -> None:
        """The leading-edge step (the subscriber's ``quick``): bring the running worker to
        ``state`` through the runtime API alone, before the debounced reconcile does the rest.

        Does something only when :func:`~switchboard.decision.decide` says
        :class:`~switchboard.decision.Runtime` ahead of the file (the last reconcile left
        HAProxy running what it applied, no reload pending: membership, weights, health and
        host-map routes between existing backends) or :class:`~switchboard.decision.Spare`
        (new default-profile vhosts through spare backends). Writes no file, never reloads,
        reports no problems (the reconcile that follows does). After the worker took every
        command it publishes an ``Applied`` ``runtime`` with an empty ``config_hash`` and a
        ``detail`` ``ahead of the file: <what>; revision <n>``. A master that does not
        answer or refuses a command means nothing was done quickly: no report, and the
        reconcile that follows sets the worker straight either way.

        :param state: the whole current catalog.
        """
        if self._live is None:
            return
        live = self._current()
        if live.applied is None or live.reload_pending or live.spare is not None:
            return  # (decide would say reload: spare the build)
        certificates, _ = self._certificates.load()
        # Runtime commands cannot add a frontend, so no probe of new ports: the ports held by
        # another program at the last reconcile stay left out as they were.
        desired = self._build(state, certificates, live, self._unavailable)
        decision = decide(live, desired, self.settings.render)
        if isinstance(decision, Runtime) and decision.first:
            if not await self._runtime_quietly(decision.commands):
                return
            # The worker now runs these servers and routes: the reconcile that follows
            # finds no command left, checks and writes the file and reports ``runtime``.
            self._live = replace(live, applied=desired, slots=slot_layout(desired),
                                 ports=frontend_ports(desired))
            done = _runtime_summary(list(decision.commands))
        elif isinstance(decision, Spare):
            if not await self._runtime_quietly(decision.plan.apply):
                return
            # The worker's structure is still the old one (``applied`` stays): the reconcile
            # that follows reloads (taking this plan back if ``haproxy -c`` says no), and
            # does not apply a spare plan again (``add map`` would add the hosts twice).
            self._live = replace(live, spare=decision.plan)
            done = _spare_summary(decision.plan)
        else:
            return
        detail = f"ahead of the file: {done}; revision {state.revision}"
        log.info("applied at runtime ahead of the file", detail=detail, revision=state.revision)
        await self._publish(subjects.applied_subject(SOURCE, self._node), Applied(
            source=SOURCE, node=self._node, method="runtime", config_hash="", detail=detail,
            observed_at=_now_ms()), f"{SOURCE}:{self._node}:applied:quick:{state.revision}")

    async def _runtime_quietly(self, commands) -> bool:
        """``sink.runtime(commands)``, with a master that does not answer counted as False."""
        try:
            return await self.sink.runtime(commands)
        except (TimeoutError, OSError):
            return False

    async def _carry_out(self, decision: Unchanged | Runtime | Reload, desired: Desired,
                         data: bytes,
                         maps: dict[str, bytes]) -> str:
        """Get the worker to ``desired`` (``data`` and ``maps`` rendered from it) as
        ``decision`` says; returns the ``Applied`` method (``unchanged``, ``runtime`` or
        ``reload``).

        * :class:`Runtime` ``first``: the worker gets its servers first, then the file
          catches up (``haproxy -c`` and the atomic swap), so the next reload or restart
          loads the same servers. The commands only carry server addresses, ports, weights,
          states and map entries that ``validate`` accepted, into slots and maps the live
          configuration already has; ``haproxy -c`` still guards every byte written. When
          the worker does not take them all (or no master answers), a forced reload.
        * Every other path writes the file first; a master the supervisor had to start
          loads it (``reload``). Then :class:`Unchanged` is ``unchanged``, or ``runtime``
          when the file caught up with a worker that was ahead of it (the quick step);
          :class:`Runtime` after the file sends its commands (``runtime``; a reload when
          refused); :class:`Reload` is ``unchanged`` when neither the file changed nor a
          reload is pending and it is not forced, else a reload.

        :raises ConfigCheckFailed: ``haproxy -c`` rejected ``data`` (nothing written).
        :raises ReloadFailed: the reload was not confirmed (the file is written).
        """
        if isinstance(decision, Runtime) and decision.first:
            if await self._runtime_quietly(decision.commands):
                await self._write(data, maps, desired)
                self._live = replace(self._known(), reload_pending=False)  # worker runs the file
                return "runtime"
            decision = Reload(forced=True)
        changed = await self._write(data, maps, desired)
        if self.supervisor is not None and await self.supervisor.ensure_running():
            return "reload"
        if isinstance(decision, Unchanged):
            return "runtime" if changed else "unchanged"
        if isinstance(decision, Runtime):
            if await self._runtime_quietly(decision.commands):
                return "runtime"
        elif not (changed or self._known().reload_pending or decision.forced):
            return "unchanged"
        await self.sink.reload()
        return "reload"

    async def _write(self, data: bytes, maps: dict[str, bytes], desired: Desired) -> bool:
        """Check and write the file (:meth:`HAProxySink.write`) and, when it changed (or not
        yet in this process), its layout file; returns whether the file changed (a reload
        is then pending until the worker takes it)."""
        changed = await self.sink.write(data, maps)
        if changed:
            self._live = replace(self._known(), reload_pending=True)
        if changed or not self._layout_saved:
            try:
                save_layout(self.sink.config_path, data, slot_layout(desired),
                            frontend_ports(desired))
                self._layout_saved = True
            except OSError as err:  # a restart then reads the file's comments instead
                log.warning("cannot write the layout file", error=str(err))
        return changed
