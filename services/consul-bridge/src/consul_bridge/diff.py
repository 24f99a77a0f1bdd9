"""Pure change detection: previous view + new Consul answer → the events to publish.

No I/O here. Message ids are deterministic, so a retried publish or a second bridge that
observes the same change produces the same id and JetStream drops the duplicate.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import msgspec

from unify_common import subjects
from unify_common.events import (
    Event,
    Instance,
    InstanceDeregistered,
    InstanceHealth,
    InstanceRegistered,
    InstanceUpdated,
    KvDeleted,
    KvEntry,
    KvSet,
    encode_instance,
)

__all__ = ["Change", "diff_instances", "diff_kv"]


@dataclass(frozen=True)
class Change:
    """One event to publish and the catalog-bucket write that goes with it.

    ``put`` is the value to store under ``key`` (``None`` = delete the key).
    """

    subject: str
    event: Event
    msg_id: str
    key: str
    put: bytes | None


def _differing(previous: dict, current: dict):
    """``(key, old, new)`` for every key whose value differs, in key order (``None`` for a
    side that lacks the key)."""
    for key in sorted(previous.keys() | current.keys()):
        old, new = previous.get(key), current.get(key)
        if old != new:
            yield key, old, new


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def diff_instances(previous: dict[str, Instance], current: dict[str, Instance], *,
                   index: int, now_ms: int) -> list[Change]:
    """Compare two views of the same scope (one service, or everything) keyed by catalog key.

    :param previous: what was last published, catalog key → instance.
    :param current: what Consul answers now.
    :param index: the ``X-Consul-Index`` of the answer (part of every message id).
    :param now_ms: observation time, Unix epoch milliseconds.
    :returns: changes sorted by catalog key: registrations and updates for new or changed
        instances, a health event when only health/checks changed, deregistrations for the
        gone ones. Equal instances produce nothing.
    """
    changes: list[Change] = []
    for key, old, new in _differing(previous, current):
        if new is None:
            body = encode_instance(old)
            changes.append(Change(
                subjects.instance_subject("deregistered", old.service),
                InstanceDeregistered(instance=old, consul_index=index, observed_at=now_ms),
                f"deregistered:{key}:{index}:{_digest(body)}", key, None))
            continue
        body = encode_instance(new)
        msg_id_tail = f"{key}:{index}:{_digest(body)}"
        if old is None:
            event: Event = InstanceRegistered(instance=new, consul_index=index,
                                              observed_at=now_ms)
            changes.append(Change(subjects.instance_subject("registered", new.service), event,
                                  f"registered:{msg_id_tail}", key, body))
        elif old.definition() != new.definition():
            event = InstanceUpdated(instance=new, previous=old, consul_index=index,
                                    observed_at=now_ms)
            changes.append(Change(subjects.instance_subject("updated", new.service), event,
                                  f"updated:{msg_id_tail}", key, body))
        else:
            event = InstanceHealth(instance=new, previous_health=old.health,
                                   consul_index=index, observed_at=now_ms)
            changes.append(Change(subjects.instance_subject("health", new.service), event,
                                  f"health:{msg_id_tail}", key, body))
    return changes


def diff_kv(previous: dict[str, KvEntry], current: dict[str, KvEntry], *, index: int,
            now_ms: int) -> list[Change]:
    """Compare two views of one watched KV prefix, keyed by the Consul key.

    :returns: ``kv.set`` for new or changed entries (by value, flags or ``ModifyIndex``),
        ``kv.deleted`` for gone ones, sorted by key.
    """
    changes: list[Change] = []
    for _, old, new in _differing(previous, current):
        if new is None:
            changes.append(Change(subjects.kv_subject("deleted"),
                                  KvDeleted(entry=old, observed_at=now_ms),
                                  f"kv.deleted:{old.catalog_key}:{index}", old.catalog_key, None))
        else:
            changes.append(Change(subjects.kv_subject("set"), KvSet(entry=new, observed_at=now_ms),
                                  f"kv.set:{new.catalog_key}:{new.modify_index}",
                                  new.catalog_key, msgspec.json.encode(new)))
    return changes
