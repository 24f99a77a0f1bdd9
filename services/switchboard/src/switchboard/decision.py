"""What HAProxy runs, and how to get it to the desired state: one explicit choice (pure).

:class:`LiveState` is the reconciler's whole knowledge of the running HAProxy, one frozen
value replaced (never changed in place) after each step. :func:`decide` turns it and a new
desired state into exactly one of four decisions, each carrying what the shell needs to carry
it out:

==================  ==========================================================================
decision            when
==================  ==========================================================================
:class:`Unchanged`  the worker already runs ``desired`` (same servers, routes and structure),
                    no reload is pending and no spare backend is in flight
:class:`Runtime`    same structure; the runtime API commands that bring the worker there
                    (:func:`~switchboard.plan.runtime_commands`), sent before the file is
                    written (``first``) unless the file already holds something the worker
                    has not loaded (reload pending: the file is written first)
:class:`Spare`      new default-profile vhosts only, the worker runs what the file says and
                    no spare is in flight: the spare plan
                    (:func:`~switchboard.plan.spare_commands`); a reload always follows
:class:`Reload`     anything else, including an unknown worker (first reconcile after a
                    start, which reloads only when the file changes) and a spare in flight
                    (``undo``: what takes it back if ``haproxy -c`` rejects the file;
                    ``forced``: reload even when the file is unchanged)
==================  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from .model import Desired
from .plan import SparePlan, runtime_commands, spare_commands
from .render import RenderOptions

__all__ = ["Decision", "LiveState", "Reload", "Runtime", "Spare", "Unchanged", "decide"]


@dataclass(frozen=True)
class LiveState:
    """What the running HAProxy worker holds, as far as the reconciler knows.

    :param applied: the desired state the worker runs (``None``: not known, e.g. right after
        switchboard started; the worker is then taken to run the live file).
    :param slots: backend name -> instance key (or ``None``, a free slot) per ``server s<i>``
        line, of the worker (the ``previous_slots`` of the next build; see
        :func:`~switchboard.plan.slot_layout`). Never changed in place.
    :param ports: frontend port -> kind (``http``, ``https``, ``tcp``) of the worker (the
        ``previous_ports`` of the next build). Never changed in place.
    :param reload_pending: the live file holds a configuration the worker has not loaded
        (written, but its reload failed or was not confirmed).
    :param spare: a spare plan the worker took that only a reload takes back (the quick step
        filled spare backends ahead of the file), else ``None``.
    """

    applied: Desired | None = None
    slots: Mapping[str, tuple[str | None, ...]] = field(default_factory=dict)
    ports: Mapping[int, str] = field(default_factory=dict)
    reload_pending: bool = False
    spare: SparePlan | None = None


class Unchanged(NamedTuple):
    """Nothing to send to the worker (the file may still need to catch up with it)."""

    kind: str = "unchanged"


class Runtime(NamedTuple):
    """Runtime API ``commands`` (possibly none, when only a pending reload is settled by
    writing what the worker runs); ``first``: send them before writing the file."""

    commands: tuple[str, ...]
    first: bool
    kind: str = "runtime"


class Spare(NamedTuple):
    """Fill spare backends at runtime with ``plan.apply``, then write and reload."""

    plan: SparePlan
    kind: str = "spare"


class Reload(NamedTuple):
    """Write the file and reload. ``forced``: reload even when the file is unchanged and no
    reload is pending; ``undo``: runtime commands taking a spare plan back out of the worker
    when the new file is rejected (``None``: nothing to take back)."""

    forced: bool = False
    undo: SparePlan | None = None
    kind: str = "reload"


Decision = Unchanged | Runtime | Spare | Reload


def decide(live: LiveState, desired: Desired, options: RenderOptions) -> Decision:
    """The one way to get the worker from ``live`` to ``desired`` (see the module doc).

    :param options: the rendering options (whether host maps make host-only routes data).
    """
    if live.applied is None:
        return Reload()
    if live.spare is not None:
        # Only a reload empties the spares again: no runtime path this time, and a reload
        # even when the file comes out the same (the worker is not what it says).
        return Reload(forced=True, undo=live.spare)
    commands = runtime_commands(live.applied, desired, options)
    if commands is not None:
        if not commands and not live.reload_pending:
            return Unchanged()
        return Runtime(tuple(commands), first=not live.reload_pending)
    if not live.reload_pending:
        plan = spare_commands(live.applied, desired, options)
        if plan is not None:
            return Spare(plan)
    return Reload()
