"""Decide how to get HAProxy from the live state to the desired one (pure).

* Same structure (frontends, backends and their slot counts equal; only the servers inside
  the slots differ): the runtime API commands that make the running worker match
  (HAProxy 2.6 management guide, 9.3 ``set server``/``set weight``), no reload.
* New default-profile vhosts (:func:`spare_commands`): the runtime API fills spare backends
  and adds the new hosts to the frontends' host maps, so they serve at once; the reload that
  loads their own backends follows.
* Anything else: ``None``, meaning reload.

Which of these a change takes is :func:`switchboard.decision.decide`'s one answer.

Server states map to the runtime as the renderer writes them to the file, so a later reload
starts from the same servers: ``ready`` = the instance's weight (1 by default) and state
ready, ``drain`` = weight 0 and state ready, ``maint`` = state maint; a free slot is
``127.0.0.1:1`` in maint.
"""

from __future__ import annotations

import re

import msgspec

from .desired import DEFAULT_PROFILE
from .model import Backend, Desired, Frontend, Server
from .render import RenderOptions, host_map_path

__all__ = ["SparePlan", "layout_from_config", "ports_from_config", "runtime_commands",
           "slot_layout", "spare_commands"]

_BACKEND_RE = re.compile(r"^backend (\S+)$")
_FRONTEND_RE = re.compile(r"^frontend fe_(http|https|tcp)_([0-9]+)$")
_SERVER_RE = re.compile(r"^    server s([0-9]+) \S+.*?(?: # (i\.[0-9a-f]{40}))?$")


def slot_layout(desired: Desired) -> dict[str, tuple[str | None, ...]]:
    """Backend name -> instance key (or ``None``) per slot."""
    return {b.name: tuple(s.key if s else None for s in b.slots) for b in desired.backends}


def layout_from_config(text: str) -> dict[str, tuple[str | None, ...]]:
    """The slot layout written in a configuration rendered by switchboard (the ``# i.<hex>``
    comment of each ``server s<n>`` line). A restarted switchboard reads the layout file
    instead (:mod:`switchboard.apply.layoutfile`); this is its fallback, once, for a
    configuration the file does not describe. Anything unrecognised is ignored."""
    layout: dict[str, list[str | None]] = {}
    current: list[str | None] | None = None
    for line in text.splitlines():
        if (match := _BACKEND_RE.match(line)) is not None:
            current = layout.setdefault(match.group(1), [])
            continue
        if current is not None and (match := _SERVER_RE.match(line)) is not None:
            if int(match.group(1)) == len(current) + 1:
                current.append(match.group(2))
    return {name: tuple(slots) for name, slots in layout.items()}


def ports_from_config(text: str) -> dict[int, str]:
    """Frontend port -> kind (``http``, ``https``, ``tcp``) of a configuration rendered by
    switchboard (its ``frontend fe_<kind>_<port>`` lines; the ``_tls`` helpers of https
    ports are not ports); the layout file's fallback, like :func:`layout_from_config`."""
    ports: dict[int, str] = {}
    for line in text.splitlines():
        if (match := _FRONTEND_RE.match(line)) is not None:
            ports[int(match.group(2))] = match.group(1)
    return ports


def _backend_skeleton(backend: Backend) -> Backend:
    return msgspec.structs.replace(backend, slots=(None,) * len(backend.slots))


def _frontend_skeleton(frontend: Frontend, options: RenderOptions | None) -> Frontend:
    if options is None or not host_map_path(frontend, options):
        return frontend
    return msgspec.structs.replace(
        frontend, routes=tuple(r for r in frontend.routes if r.prefix is not None))


def _same_structure(live: Desired, desired: Desired, options: RenderOptions | None) -> bool:
    """Whether a change may go through the runtime API: equal frontends (less the host-only
    routes a host map holds) and equal backends but for the servers in their slots. Pairs
    that are the same object (a build reuses an unchanged service's backend) are skipped, so
    one changed service costs one comparison, not one per backend."""
    if (len(live.backends), len(live.frontends)) != (len(desired.backends),
                                                      len(desired.frontends)):
        return False
    for old, new in zip(live.backends, desired.backends):
        if old is not new and _backend_skeleton(old) != _backend_skeleton(new):
            return False
    for old_fe, new_fe in zip(live.frontends, desired.frontends):
        if old_fe is not new_fe and old_fe != new_fe and (
                _frontend_skeleton(old_fe, options) != _frontend_skeleton(new_fe, options)):
            return False
    return True


def _slot_commands(backend: Backend, index: int, old: Server | None,
                   new: Server | None) -> list[str]:
    server = f"{backend.name}/s{index}"
    if new is None:
        return [] if old is None else [f"set server {server} state maint",
                                       f"set server {server} addr 127.0.0.1 port 1"]
    commands = []
    moved = old is None or (old.address, old.port) != (new.address, new.port)
    if moved:
        commands.append(f"set server {server} addr {new.address} port {new.port}")
    if old is None or moved or old.state != new.state or old.weight != new.weight:
        if new.state == "maint":
            commands.append(f"set server {server} state maint")
        else:
            commands.append(f"set weight {server} {0 if new.state == 'drain' else new.weight}")
            commands.append(f"set server {server} state ready")
            if backend.check is not None:
                commands.append(f"set server {server} health up")
    return commands


def _map_routes(frontend: Frontend, options: RenderOptions | None) -> dict[str, str]:
    """Host -> backend of the host-only routes ``frontend`` keeps in its host map (empty
    when it has none)."""
    if options is None or not host_map_path(frontend, options):
        return {}
    return {r.host: r.backend for r in frontend.routes if r.prefix is None}


def _map_commands(old: Frontend, new: Frontend, options: RenderOptions) -> list[str]:
    path = host_map_path(new, options)
    before, after = _map_routes(old, options), _map_routes(new, options)
    commands = [f"del map {path} {host}" for host in sorted(before.keys() - after.keys())]
    for host in sorted(after):
        if host not in before:
            commands.append(f"add map {path} {host} {after[host]}")
        elif before[host] != after[host]:
            commands.append(f"set map {path} {host} {after[host]}")
    return commands


def runtime_commands(live: Desired, desired: Desired,
                     options: RenderOptions | None = None) -> list[str] | None:
    """Runtime API commands turning ``live`` into ``desired``, or ``None`` when a reload is
    needed (the structure differs). An empty list means nothing to change at runtime.

    With ``options`` whose ``host_maps`` is on, host-only routes of plain HTTP frontends are
    data, not structure: a host added, moved to another existing backend or removed becomes
    ``add map`` / ``set map`` / ``del map`` on the frontend's map (after the server
    commands, so a host only points at a backend whose servers are in place). The map files
    on disk are written with the same content (:meth:`HAProxySink.write`), so a reload
    reads what the worker runs.
    """
    if not _same_structure(live, desired, options):
        return None
    commands: list[str] = []
    for old_backend, new_backend in zip(live.backends, desired.backends):
        if old_backend is new_backend:
            continue
        for index, (old, new) in enumerate(zip(old_backend.slots, new_backend.slots), 1):
            if old != new:
                commands.extend(_slot_commands(new_backend, index, old, new))
    if options is not None:
        for old_fe, new_fe in zip(live.frontends, desired.frontends):
            if old_fe is not new_fe and old_fe != new_fe:
                commands.extend(_map_commands(old_fe, new_fe, options))
    return commands


class SparePlan(msgspec.Struct, frozen=True):
    """Runtime commands serving new vhosts through spare backends: ``apply`` fills the spares'
    slots, then adds each new host to its frontend's host map; ``undo`` takes them back out
    (for when the configuration that adds their own backends is rejected);
    ``spares`` maps each new backend to the spare standing in for it."""

    apply: tuple[str, ...]
    undo: tuple[str, ...]
    spares: tuple[tuple[str, str], ...]


def _spare_can_serve(backend: Backend) -> bool:
    """A spare (default profile) can stand in for ``backend``: same profile, or the same
    but ``check=disabled`` (the spare's servers then run with their check stopped)."""
    return all(getattr(backend, field) == value for field, value in DEFAULT_PROFILE.items()
               if field != "check") and backend.check in (DEFAULT_PROFILE["check"], None)


def _unchecked(spare: Backend, index: int, commands: list[str]) -> list[str]:
    """``commands`` for slot ``index`` of ``spare`` with the slot's health check stopped
    first (HAProxy 2.6 management guide, 9.3 ``disable health``: the server is then
    considered up), for a backend rendered with ``check=disabled``."""
    return [f"disable health {spare.name}/s{index}", *commands]


def spare_commands(live: Desired, desired: Desired, options: RenderOptions) -> SparePlan | None:
    """The spare-backend fast path from ``live`` (what the worker runs) to ``desired``.

    Applies only when ``desired`` differs from ``live`` by new backends alone, each of the
    default profile (:data:`switchboard.desired.DEFAULT_PROFILE`), or that profile with
    ``check=disabled`` (the spare's slots then get ``disable health``), with at most as many
    servers as a spare has slots, reached only by new host-only routes on frontends with a
    host map (``options.host_maps``), and there are enough free spare backends (every other
    frontend and backend equal, spares included). New backends take the spares in the order
    of their names. Anything else returns ``None``: the change waits for the reload.

    :returns: a :class:`SparePlan` (``apply`` never empty), or ``None``.
    """
    if not options.host_maps:
        return None
    known = {b.name for b in live.backends}
    new = [b for b in desired.backends if b.name not in known]
    if not new or tuple(b for b in desired.backends if b.name in known) != live.backends:
        return None
    spares = [b for b in live.backends
              if b.name.startswith("be_spare_") and all(slot is None for slot in b.slots)]
    if len(new) > len(spares) or len(live.frontends) != len(desired.frontends):
        return None
    standins = {}
    for backend, spare in zip(new, spares):
        servers = [slot for slot in backend.slots if slot is not None]
        if not _spare_can_serve(backend) or len(servers) > len(spare.slots):
            return None
        standins[backend.name] = (spare, servers)
    fill: list[str] = []
    free: list[str] = []
    for name, (spare, servers) in standins.items():
        unchecked = next(b for b in new if b.name == name).check is None
        for index, server in enumerate(servers, 1):
            fill_slot = _slot_commands(spare, index, None, server)
            free_slot = _slot_commands(spare, index, server, None)
            if unchecked:
                fill_slot = _unchecked(spare, index, fill_slot)
                free_slot = [*free_slot, f"enable health {spare.name}/s{index}"]
            fill.extend(fill_slot)
            free.extend(free_slot)
    add: list[str] = []
    remove: list[str] = []
    served = set()
    for old, fe in zip(live.frontends, desired.frontends):
        if fe == old:
            continue
        path = host_map_path(fe, options)
        if not path or msgspec.structs.replace(fe, routes=()) != msgspec.structs.replace(
                old, routes=()):
            return None
        before = set(old.routes)
        if not before <= set(fe.routes):
            return None
        for route in fe.routes:
            if route in before:
                continue
            if route.prefix is not None or route.backend not in standins:
                return None
            spare_name = standins[route.backend][0].name
            add.append(f"add map {path} {route.host} {spare_name}")
            remove.append(f"del map {path} {route.host}")
            served.add(route.backend)
    if served != set(standins):
        return None
    return SparePlan(apply=tuple(fill + add), undo=tuple(remove + free),
                     spares=tuple((name, spare.name) for name, (spare, _) in standins.items()))
