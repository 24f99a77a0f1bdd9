"""The Swarm stack file wireline deploys (compose file format 3.8, the version
``docker stack deploy`` of Engine 20.10 reads; see the Compose file v3 reference).

Each service gets its image pinned by digest (``<registry>/<app>/<service>:<sha>@sha256:...``)
and an ``update_config``/``rollback_config`` with ``failure_action: rollback``,
``max_failure_ratio: 0``, a ``monitor`` window and ``order: start-first`` — or
``stop-first`` when two tasks of the service cannot live side by side on one node: it
publishes a port in ``host`` mode (both would bind it) or mounts a named volume (both would
write it). The reason is returned for the pusher.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

import yaml

from .appfiles import AppSpec

__all__ = ["StackPlan", "image_name", "pinned", "render_stack", "stack_name", "update_order"]

_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


def image_name(registry: str, app: str, service: str) -> str:
    """``<registry>/<app>/<service>`` (the repository an app's service image is pushed to)."""
    return f"{registry}/{app}/{service}"


def pinned(repository: str, tag: str, digest: str) -> str:
    """``<repository>:<tag>@<digest>``. :raises ValueError: not a ``sha256:`` digest."""
    if not _DIGEST_RE.match(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return f"{repository}:{tag}@{digest}" if tag else f"{repository}@{digest}"


def stack_name(prefix: str, app: str) -> str:
    """The Swarm stack of an app: the operator's prefix + the app name."""
    return f"{prefix}{app}"


def update_order(config: dict) -> tuple[str, str]:
    """``("start-first", "")`` or ``("stop-first", reason)`` for one service's compose
    mapping (see the module doc)."""
    for port in config.get("ports") or ():
        if port.get("mode") == "host" and port.get("published"):
            return "stop-first", (f"publishes host port {port['published']}/"
                                  f"{port.get('protocol', 'tcp')}: two tasks cannot bind it "
                                  "on one node")
    for volume in config.get("volumes") or ():
        if volume.get("type") == "volume":
            return "stop-first", (f"mounts volume {volume['source']!r}: two tasks must not "
                                  "write it at once")
    return "start-first", ""


@dataclass(frozen=True)
class StackPlan:
    """A rendered stack: ``text`` (YAML for ``docker stack deploy -c``), ``stack`` the
    mapping, ``orders`` service -> (order, reason), ``replicas`` service -> count (``None``
    for global services)."""

    text: str
    stack: dict
    orders: dict[str, tuple[str, str]]
    replicas: dict[str, int | None]


def render_stack(spec: AppSpec, images: dict[str, str], *, app: str, scale: dict[str, int],
                 monitor_s: float = 10.0, labels: dict[str, str] | None = None) -> StackPlan:
    """Render the stack of ``spec`` with ``images`` (service -> pinned reference).

    ``scale`` overrides ``deploy.replicas`` (default 1). ``labels`` are added to every
    service's ``deploy.labels`` (wireline records app, release and sha there).

    :raises ValueError: a service has no image in ``images`` or its image is not pinned.
    """
    services = {}
    orders: dict[str, tuple[str, str]] = {}
    replicas: dict[str, int | None] = {}
    for name, service in sorted(spec.services.items()):
        image = images.get(name, "")
        if "@sha256:" not in image:
            raise ValueError(f"service {name}: image not pinned by digest: {image!r}")
        config = copy.deepcopy(service.config)
        deploy = config.pop("deploy", {}) or {}
        order, reason = update_order(config)
        orders[name] = (order, reason)
        update = {"parallelism": 1, "delay": "0s", "order": order,
                  "failure_action": "rollback", "monitor": f"{monitor_s:g}s",
                  "max_failure_ratio": 0}
        deploy["update_config"] = update
        deploy["rollback_config"] = {"parallelism": 1, "order": order,
                                     "failure_action": "pause", "monitor": f"{monitor_s:g}s"}
        if deploy.get("mode") == "global":
            replicas[name] = None
        else:
            deploy["replicas"] = int(scale.get(name, deploy.get("replicas", 1)))
            replicas[name] = deploy["replicas"]
        if labels:
            deploy["labels"] = {**(deploy.get("labels") or {}), **labels}
        out = {"image": image, **config, "deploy": deploy}
        services[name] = out
    stack: dict = {"version": "3.8", "services": services}
    if spec.networks:
        stack["networks"] = copy.deepcopy(spec.networks)
    if spec.volumes:
        stack["volumes"] = copy.deepcopy(spec.volumes)
    text = yaml.safe_dump(stack, sort_keys=True, default_flow_style=False)
    return StackPlan(text=text, stack=stack, orders=orders, replicas=replicas)


def rescale(text: str, scale: dict[str, int], *, labels: dict[str, str] | None = None
            ) -> tuple[str, dict[str, int | None]]:
    """A stored stack text with ``deploy.replicas`` changed per ``scale`` and ``labels``
    set on every service's ``deploy.labels``.

    :returns: (new text, service -> replicas).
    :raises ValueError: a service not in the stack, or a global one.
    """
    stack = yaml.safe_load(text)
    services = stack["services"]
    for service in services.values():
        if labels:
            deploy = service.setdefault("deploy", {})
            deploy["labels"] = {**(deploy.get("labels") or {}), **labels}
    for name, count in scale.items():
        if name not in services:
            raise ValueError(f"no service {name!r} in the app (has: {', '.join(services)})")
        deploy = services[name].setdefault("deploy", {})
        if deploy.get("mode") == "global":
            raise ValueError(f"service {name!r} is global")
        deploy["replicas"] = int(count)
    replicas = {name: (None if (svc.get("deploy") or {}).get("mode") == "global"
                       else int((svc.get("deploy") or {}).get("replicas", 1)))
                for name, svc in services.items()}
    return yaml.safe_dump(stack, sort_keys=True, default_flow_style=False), replicas
