"""Decide how to get HAProxy from the live state to the desired one (pure).

* Same structure (frontends, backends and their slot counts equal; only the servers inside
  the slots differ): the runtime API commands that make the running worker match
  (HAProxy 2.6 management guide, 9.3 ``set server``/``set weight``), no reload.
* Anything else: ``None``, meaning reload.

Server states map to the runtime as the renderer writes them to the file, so a later reload
starts from the same servers: ``ready`` = weight 1 and state ready, ``drain`` = weight 0 and
state ready, ``maint`` = state maint; a free slot is ``127.0.0.1:1`` in maint.
"""

from __future__ import annotations

import re

import msgspec

from .model import Backend, Desired, Server

__all__ = ["layout_from_config", "runtime_commands", "slot_layout"]

_BACKEND_RE = re.compile(r"^backend (\S+)$")
_SERVER_RE = re.compile(r"^    server s([0-9]+) \S+.*?(?: # (i\.[0-9a-f]{40}))?$")


def slot_layout(desired: Desired) -> dict[str, tuple[str | None, ...]]:
    """Backend name -> instance key (or ``None``) per slot."""
    return {b.name: tuple(s.key if s else None for s in b.slots) for b in desired.backends}


def layout_from_config(text: str) -> dict[str, tuple[str | None, ...]]:
    """The slot layout written in a configuration rendered by switchboard (the ``# i.<hex>``
    comment of each ``server s<n>`` line); lets a restarted switchboard keep every instance in
    its slot. Anything unrecognised is ignored."""
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


def _skeleton(desired: Desired) -> tuple:
    backends = tuple(msgspec.structs.replace(b, slots=(None,) * len(b.slots))
                     for b in desired.backends)
    return desired.frontends, backends


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
    if moved or old.state != new.state:
        if new.state == "maint":
            commands.append(f"set server {server} state maint")
        else:
            commands.append(f"set weight {server} {0 if new.state == 'drain' else 1}")
            commands.append(f"set server {server} state ready")
            if backend.check is not None:
                commands.append(f"set server {server} health up")
    return commands


def runtime_commands(live: Desired, desired: Desired) -> list[str] | None:
    """Runtime API commands turning ``live`` into ``desired``, or ``None`` when a reload is
    needed (the structure differs). An empty list means nothing to change at runtime."""
    if _skeleton(live) != _skeleton(desired):
        return None
    commands: list[str] = []
    for old_backend, new_backend in zip(live.backends, desired.backends):
        for index, (old, new) in enumerate(zip(old_backend.slots, new_backend.slots), 1):
            if old != new:
                commands.extend(_slot_commands(new_backend, index, old, new))
    return commands
