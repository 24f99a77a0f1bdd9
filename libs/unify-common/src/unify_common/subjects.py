"""NATS subject names and stream/bucket defaults used by every Unify component.

All events live under ``unify.`` on one JetStream stream (default ``UNIFY``):

* ``unify.catalog.instance.<registered|updated|health|deregistered>.<service>``
* ``unify.catalog.kv.<set|deleted>``
* ``unify.error.<source>``
* ``unify.applied.<source>.<node>``
* ``unify.apps.<app>.<release|build|deploy.failed>`` (wireline)
* ``unify.registry.image.<pushed|deleted>`` and ``unify.registry.step.<operation>``

``<service>`` and ``<node>`` are the names themselves when they are safe subject tokens
(``[A-Za-z0-9_-]``, at most 64 characters), otherwise ``_`` + 16 hex digits of their SHA-256,
so a hostile name can never add tokens or wildcards to a subject.
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "ALL",
    "CATALOG",
    "applied_subject",
    "app_build_subject",
    "app_deploy_failed_subject",
    "app_release_subject",
    "error_subject",
    "instance_subject",
    "kv_subject",
    "registry_image_subject",
    "registry_step_subject",
    "token",
]

ALL = "unify.>"
CATALOG = "unify.catalog.>"
_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def token(name: str) -> str:
    """A subject-safe token for an arbitrary name (see module doc)."""
    if _SAFE.match(name):
        return name
    return "_" + hashlib.sha256(name.encode()).hexdigest()[:16]


def instance_subject(change: str, service: str) -> str:
    """Subject of an instance event; ``change`` is ``registered``, ``updated``, ``health`` or
    ``deregistered``."""
    return f"unify.catalog.instance.{change}.{token(service)}"


def kv_subject(change: str) -> str:
    """Subject of a KV event; ``change`` is ``set`` or ``deleted``."""
    return f"unify.catalog.kv.{change}"


def error_subject(source: str) -> str:
    """Subject of an error event raised by component ``source``."""
    return f"unify.error.{token(source)}"


def applied_subject(source: str, node: str) -> str:
    """Subject of an ``applied`` report of component ``source`` on ``node``."""
    return f"unify.applied.{token(source)}.{token(node)}"


REGISTRY = "unify.registry.>"


def registry_image_subject(change: str) -> str:
    """Subject of a registry image event; ``change`` is ``pushed`` or ``deleted``
    (``unify.registry.image.pushed``: the repository is in the event, not the subject)."""
    return f"unify.registry.image.{token(change)}"


def registry_step_subject(operation: str) -> str:
    """Subject of a registry-admin step event; ``operation`` is ``gc``, ``certificate`` or
    ``rollout``."""
    return f"unify.registry.step.{token(operation)}"


APPS = "unify.apps.>"


def app_release_subject(app: str) -> str:
    """Subject of a wireline release event: ``unify.apps.<app>.release``."""
    return f"unify.apps.{token(app)}.release"


def app_build_subject(app: str) -> str:
    """Subject of wireline build/deploy output lines: ``unify.apps.<app>.build``."""
    return f"unify.apps.{token(app)}.build"


def app_deploy_failed_subject(app: str) -> str:
    """Subject of a failed wireline deploy: ``unify.apps.<app>.deploy.failed``."""
    return f"unify.apps.{token(app)}.deploy.failed"
