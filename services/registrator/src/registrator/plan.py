"""The pure plan: the agent's current services (only ours) vs the wanted registrations.

A service is *ours* when its meta :data:`~registrator.rules.MARKER` names this node and its ID
starts with ``<node>:``; nothing else is ever registered over or deregistered. A wanted
registration is (re-)registered when the agent lacks it or holds it with another digest,
name, address, port or tags; one of ours that is not wanted is deregistered — except inside
``keep`` (ID prefixes of containers whose state could not be read this time).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .rules import DIGEST, MARKER, Registration

__all__ = ["Plan", "is_ours", "make_plan", "ours", "scope_prefix"]


def scope_prefix(node: str, container: str) -> str:
    """The ID prefix of every service of ``container`` on ``node``: ``<node>:<container>:``
    (container names cannot hold ``:``, so prefixes of two containers never overlap)."""
    return f"{node}:{container}:"


def is_ours(service: Mapping[str, Any], node: str) -> bool:
    """``service`` (an entry of ``GET /v1/agent/services``) was registered by this node's
    registrator: marker meta and ID prefix both match."""
    meta = service.get("Meta") or {}
    return meta.get(MARKER) == node and str(service.get("ID", "")).startswith(f"{node}:")


def ours(services: Mapping[str, Mapping[str, Any]], node: str) -> dict[str, Mapping[str, Any]]:
    """The entries of ``GET /v1/agent/services`` (ID -> service) that are ours."""
    return {sid: svc for sid, svc in services.items() if is_ours(svc, node)}


@dataclass(frozen=True)
class Plan:
    """What to change: registrations to PUT, service IDs to deregister (both sorted by ID)."""

    register: tuple[Registration, ...] = ()
    deregister: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """Nothing to do."""
        return not self.register and not self.deregister


def _same(current: Mapping[str, Any], reg: Registration) -> bool:
    meta = current.get("Meta") or {}
    return (meta.get(DIGEST) == reg.digest and current.get("Service") == reg.name
            and current.get("Address") == reg.address and current.get("Port") == reg.port
            and list(current.get("Tags") or []) == list(reg.tags))


def make_plan(current: Mapping[str, Mapping[str, Any]], wanted: Iterable[Registration], *,
              scope: str | None = None, keep: Iterable[str] = ()) -> Plan:
    """Compare ``current`` (our agent services, ID -> ``/v1/agent/services`` entry; see
    :func:`ours`) with ``wanted``.

    :param scope: an ID prefix (see :func:`scope_prefix`): only current services under it are
        considered (a one-container reconcile); ``None``: all of them (a full resync).
    :param keep: ID prefixes never deregistered in this plan.
    """
    keep = tuple(keep)
    wanted_by_id = {reg.id: reg for reg in wanted}
    considered = {sid: svc for sid, svc in current.items()
                  if scope is None or sid.startswith(scope)}
    register = tuple(reg for sid, reg in sorted(wanted_by_id.items())
                     if sid not in considered or not _same(considered[sid], reg))
    deregister = tuple(sid for sid in sorted(considered)
                       if sid not in wanted_by_id and not sid.startswith(keep))
    return Plan(register=register, deregister=deregister)
