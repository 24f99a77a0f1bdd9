"""Unify's event schemas (version 1), encoded as JSON with msgspec.

Every event published on the ``UNIFY`` JetStream stream is one of the structs below, tagged by
its ``type`` field. Field names and meanings are stable within a schema version; a breaking
change adds a new version number in :data:`SCHEMA_VERSION` and a new set of tags.

Instance data follows Consul's ``/v1/health/service/:service`` answer (one ``ServiceEntry``:
``Node``, ``Service``, ``Checks``); see Consul's "Health - HTTP API" page. Times are Unix epoch
milliseconds (``int``). Indexes are Consul Raft indexes.

========================  ==============================================  ====================
type                      meaning                                          subject
========================  ==============================================  ====================
``instance.registered``   an instance appeared in the catalog              see :mod:`.subjects`
``instance.updated``      address, port, tags or meta changed
``instance.health``       aggregated health changed (only that)
``instance.deregistered`` the instance left the catalog
``kv.set``                a watched Consul KV key was written
``kv.deleted``            a watched Consul KV key was deleted
``error``                 a component rejected input or failed to apply
``applied``               a subscriber applied a desired state
``release``               wireline recorded a release (deploy, rollback,
                          scale, removal; success or failure)
``build.output``          lines of an app's build and deploy output
``deploy.failed``         a wireline deploy failed (build, push, health
                          gate, Swarm rollback)
``registry.image.pushed`` a tag (or digest) was pushed to the registry
``registry.image.deleted`` a manifest or tag was deleted from the registry
``registry.step``         one step of a registry-admin operation (gc,
                          certificate, rollout)
========================  ==============================================  ====================
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from .consul_health import HealthEntry
from .tags import TagError, UnifyTags, parse_tags

__all__ = [
    "SCHEMA_VERSION",
    "Applied",
    "BuildOutput",
    "DeployFailed",
    "Release",
    "ReleaseRecorded",
    "Check",
    "ErrorEvent",
    "Event",
    "ImageDeleted",
    "ImagePushed",
    "Instance",
    "InstanceDeregistered",
    "InstanceHealth",
    "InstanceRegistered",
    "InstanceUpdated",
    "KvDeleted",
    "KvEntry",
    "KvSet",
    "RegistryStep",
    "aggregate_health",
    "decode_event",
    "encode_event",
    "instance_from_health_entry",
]

SCHEMA_VERSION = 1

Health = Literal["passing", "warning", "critical"]
_HEALTH_ORDER = {"passing": 0, "warning": 1, "critical": 2}


class Check(msgspec.Struct, frozen=True, order=True):
    """One Consul health check of an instance or of its node (``service_id`` empty).
    ``status`` is ``passing``, ``warning`` or ``critical``. Check output is never carried: it
    can hold anything the checked program printed."""

    check_id: str
    name: str
    status: str
    service_id: str = ""


class Instance(msgspec.Struct, frozen=True):
    """One registered service instance as Unify sees it.

    ``key`` is the stable catalog key (see :meth:`catalog_key`). ``health`` aggregates the
    instance's and its node's checks: the worst status wins; no checks means ``passing``
    (Consul's own rule for ``?passing``). ``unify`` holds the parsed Unify tags, or ``None``
    when the instance has none or they are malformed; ``tag_error`` says why in the second case.
    ``weight`` is the instance's relative share of traffic while passing: Consul's
    ``Service.Weights.Passing`` (default 1; Consul allows 1..65535 and HAProxy 0..256, so a
    subscriber clamps it). It came into schema v1 with a default, so older events decode.
    """

    service: str
    instance_id: str
    node: str
    address: str
    port: int
    tags: tuple[str, ...] = ()
    meta: dict[str, str] = {}
    health: Health = "passing"
    checks: tuple[Check, ...] = ()
    unify: UnifyTags | None = None
    tag_error: str | None = None
    weight: int = 1
    create_index: int = 0
    modify_index: int = 0

    @property
    def key(self) -> str:
        """The catalog key of this instance, see :func:`catalog_key`."""
        return catalog_key(self.node, self.instance_id)

    def definition(self) -> tuple[object, ...]:
        """Everything but health and indexes: two instances with equal definitions differ at
        most in health."""
        return (self.service, self.instance_id, self.node, self.address, self.port,
                self.tags, tuple(sorted(self.meta.items())), self.weight)


def catalog_key(node: str, instance_id: str) -> str:
    """A JetStream-KV-safe, stable key for (node, instance id).

    Instance ids are arbitrary strings (registrator uses ``host:container:port``), so the key is
    ``i.`` + the first 40 hex digits of SHA-256 over ``node`` NUL ``instance_id``.
    """
    digest = hashlib.sha256(f"{node}\0{instance_id}".encode()).hexdigest()[:40]
    return f"i.{digest}"


class KvEntry(msgspec.Struct, frozen=True):
    """A Consul KV entry under a watched prefix; ``modify_index`` is Consul's ``ModifyIndex``.

    ``value`` is the text form of the raw value. When the raw bytes are valid UTF-8 it is
    exact and ``value_base64`` is ``None``. When they are not, ``value`` is only a readable
    approximation (undecodable bytes shown as U+FFFD) and ``value_base64`` holds the exact
    bytes (standard base64, RFC 4648 section 4), so two different values never give equal
    entries. Readers that need the value use :attr:`raw` or :attr:`text`; build entries from
    Consul's bytes with :meth:`from_bytes`.
    """

    key: str
    value: str
    modify_index: int = 0
    flags: int = 0
    #: The exact value, base64, only when it is not UTF-8 (schema v1 addition, default None).
    value_base64: str | None = None

    @classmethod
    def from_bytes(cls, key: str, raw: bytes, *, modify_index: int = 0,
                   flags: int = 0) -> KvEntry:
        """The entry for Consul's raw value bytes (``b""`` for a key without a value)."""
        try:
            return cls(key=key, value=raw.decode("utf-8"), modify_index=modify_index,
                       flags=flags)
        except UnicodeDecodeError:
            return cls(key=key, value=raw.decode("utf-8", "replace"),
                       modify_index=modify_index, flags=flags,
                       value_base64=base64.b64encode(raw).decode("ascii"))

    @property
    def raw(self) -> bytes:
        """The value's exact bytes, as stored in Consul."""
        if self.value_base64 is not None:
            return base64.b64decode(self.value_base64)
        return self.value.encode("utf-8")

    @property
    def text(self) -> str | None:
        """The value as text, or ``None`` when the bytes are not UTF-8."""
        return self.value if self.value_base64 is None else None

    @property
    def catalog_key(self) -> str:
        """Key of this entry in the catalog KV bucket: ``k.`` + 40 hex digits of SHA-256."""
        return "k." + hashlib.sha256(self.key.encode()).hexdigest()[:40]


class _Base(msgspec.Struct, frozen=True, tag_field="type", kw_only=True):
    schema: int = SCHEMA_VERSION
    #: When the producer observed the change, Unix epoch milliseconds.
    observed_at: int = 0

    @property
    def type(self) -> str:
        """The event type tag, e.g. ``instance.registered`` (the JSON ``type`` field)."""
        return self.__struct_config__.tag  # type: ignore[return-value]


class InstanceRegistered(_Base, tag="instance.registered", frozen=True):
    """An instance appeared. ``consul_index`` is the index of the answer that showed it."""

    instance: Instance
    consul_index: int = 0


class InstanceUpdated(_Base, tag="instance.updated", frozen=True):
    """Address, port, tags or meta of an instance changed; ``previous`` is the old view."""

    instance: Instance
    previous: Instance
    consul_index: int = 0


class InstanceHealth(_Base, tag="instance.health", frozen=True):
    """Only the aggregated health (or the check list) of an instance changed."""

    instance: Instance
    previous_health: str
    consul_index: int = 0


class InstanceDeregistered(_Base, tag="instance.deregistered", frozen=True):
    """The instance left the catalog; ``instance`` is its last known view."""

    instance: Instance
    consul_index: int = 0


class KvSet(_Base, tag="kv.set", frozen=True):
    """A watched KV key was created or changed."""

    entry: KvEntry


class KvDeleted(_Base, tag="kv.deleted", frozen=True):
    """A watched KV key was deleted; ``entry`` is its last known value."""

    entry: KvEntry


class ErrorEvent(_Base, tag="error", frozen=True):
    """A component rejected input or failed to apply.

    ``source`` names the component (``consul-bridge``, ``switchboard``...), ``reason`` is a
    short machine word (``invalid-tags``, ``config-check-failed``...), ``message`` is for
    humans. ``service``/``instance_id``/``node`` are set when one instance is concerned.
    Messages never contain secrets.
    """

    source: str
    reason: str
    message: str
    service: str = ""
    instance_id: str = ""
    node: str = ""


class Applied(_Base, tag="applied", frozen=True):
    """A subscriber applied a desired state on ``node``.

    ``method`` is ``reload``, ``runtime`` (changed through an API without restart) or
    ``unchanged``; ``config_hash`` is the SHA-256 of what was applied (hex).

    A ``runtime`` report with an empty ``config_hash`` is a step taken ahead of the
    configuration file, on the first change of a burst before the debounce (switchboard's
    runtime API commands; ``detail`` starts with ``ahead of the file:``): nothing was
    rendered or checked yet. The full apply of the same change follows with its own report,
    which has the hash; wait for that one to know the change is applied completely.
    """

    source: str
    node: str
    method: str
    config_hash: str
    detail: str = ""


class ImagePushed(_Base, tag="registry.image.pushed", frozen=True):
    """A manifest was pushed to the private registry (distribution's notification ``push``
    of a manifest, published only once ``tag`` resolves to ``digest`` through the registry
    API; see ``services/registry-admin``).

    ``repository`` is the repository name, ``tag`` the tag pushed (``""`` for a push by
    digest), ``digest`` the manifest digest (``sha256:<hex>``), ``size`` the manifest's size
    in bytes, ``media_type`` the manifest media type, ``actor`` the authenticated user (``""``
    when anonymous), ``instance`` the registry node that took the push (its ``host:port`` as
    the registry reports it), ``registry_event_id`` the registry's own event id (also the
    message id, so a redelivered notification is one event), ``pushed_at`` the registry's
    timestamp (Unix epoch milliseconds).
    """

    repository: str
    tag: str
    digest: str
    size: int = 0
    media_type: str = ""
    actor: str = ""
    instance: str = ""
    registry_event_id: str = ""
    pushed_at: int = 0


class ImageDeleted(_Base, tag="registry.image.deleted", frozen=True):
    """A manifest (``digest`` set) or a tag (``tag`` set) was deleted from the registry;
    fields as in :class:`ImagePushed`."""

    repository: str
    tag: str = ""
    digest: str = ""
    actor: str = ""
    instance: str = ""
    registry_event_id: str = ""
    deleted_at: int = 0


class RegistryStep(_Base, tag="registry.step", frozen=True):
    """One step of a registry-admin operation.

    ``operation`` is ``gc``, ``certificate`` or ``rollout``; ``run_id`` ties the steps of one
    run together; ``step`` names the step (``read-only``, ``dry-run``, ``sweep``,
    ``read-write``, ``verify``, ``issue``, ``restart``...); ``status`` is ``started``, ``ok``,
    ``failed`` or ``refused``; ``detail`` is for humans (never a secret); ``instance`` is set
    when one registry node is concerned.
    """

    source: str
    operation: str
    run_id: str
    step: str
    status: str
    detail: str = ""
    instance: str = ""


class Release(msgspec.Struct, frozen=True, kw_only=True):
    """One wireline release of an app (what ``unify apps releases`` lists).

    ``number`` counts from 1 per app; ``kind`` is ``push``, ``rollback``, ``scale`` or
    ``remove``; ``outcome`` is ``deployed``, ``failed``, ``removed`` or ``built`` (``PUSH=N``:
    built, nothing deployed). ``sha`` is the git commit (40 hex) and ``ref`` the pushed ref;
    ``images`` maps each service to its image pinned by digest
    (``<registry>/<app>/<service>:<sha>@sha256:...``); ``replicas`` maps each service to its
    replica count (``-1`` for a global service). ``pusher`` is the key's name and
    ``fingerprint`` its OpenSSH SHA-256 fingerprint (or the operator's user for CLI actions).
    ``started_at``/``finished_at`` are Unix epoch milliseconds; ``receive_s``, ``build_s``,
    ``push_s`` and ``deploy_s`` are stage durations in seconds. ``rollback_of`` is the release
    whose images a rollback pinned again; ``message`` says why a release failed. ``stack`` is
    the deployed stack file (YAML), reused by rollback and scale.
    """

    app: str
    number: int
    kind: str
    outcome: str
    sha: str = ""
    ref: str = ""
    images: dict[str, str] = {}
    replicas: dict[str, int] = {}
    pusher: str = ""
    fingerprint: str = ""
    node: str = ""
    started_at: int = 0
    finished_at: int = 0
    receive_s: float = 0.0
    build_s: float = 0.0
    push_s: float = 0.0
    deploy_s: float = 0.0
    rollback_of: int = 0
    message: str = ""
    stack: str = ""


class ReleaseRecorded(_Base, tag="release", frozen=True):
    """wireline recorded ``release`` (subject ``unify.apps.<app>.release``)."""

    release: Release


class BuildOutput(_Base, tag="build.output", frozen=True):
    """Consecutive output lines of release ``number`` of ``app`` (build, push and deploy
    steps, as the pusher saw them); ``first_line`` is the index of ``lines[0]`` in the
    release's log, so the chunks of one release can be put back in order."""

    app: str
    number: int
    first_line: int
    lines: tuple[str, ...]


class DeployFailed(_Base, tag="deploy.failed", frozen=True):
    """A deploy of ``app`` (release ``number``, commit ``sha``) failed at ``stage``
    (``build``, ``push``, ``deploy``, ``health``, ``rollback``, ``lock``); ``message`` is
    what the pusher was told; ``pusher`` the key name."""

    app: str
    number: int
    sha: str
    stage: str
    message: str
    pusher: str = ""


Event = (
    InstanceRegistered | InstanceUpdated | InstanceHealth | InstanceDeregistered
    | KvSet | KvDeleted | ErrorEvent | Applied | ImagePushed | ImageDeleted | RegistryStep
    | ReleaseRecorded | BuildOutput | DeployFailed
)

_encoder = msgspec.json.Encoder(order="deterministic")
_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
_instance_decoder = msgspec.json.Decoder(Instance)


def encode_event(event: Event) -> bytes:
    """Encode an event as canonical JSON (keys in a fixed order: same event → same bytes)."""
    return _encoder.encode(event)


def decode_event(data: bytes) -> Event:
    """Decode JSON bytes into an event struct.

    :raises msgspec.ValidationError: the JSON is not a schema-1 event.
    :raises msgspec.DecodeError: the bytes are not JSON.
    """
    return _decoder.decode(data)


def encode_instance(instance: Instance) -> bytes:
    """Canonical JSON of one instance (the catalog KV bucket's value format)."""
    return _encoder.encode(instance)


def decode_instance(data: bytes) -> Instance:
    """Inverse of :func:`encode_instance`. :raises msgspec.ValidationError: not an instance."""
    return _instance_decoder.decode(data)


def aggregate_health(statuses: list[str] | tuple[str, ...]) -> Health:
    """The worst of the given check statuses; ``passing`` for none. Unknown statuses count
    as ``critical`` (fail closed)."""
    worst = "passing"
    for status in statuses:
        if _HEALTH_ORDER.get(status, 2) > _HEALTH_ORDER[worst]:
            worst = status if status in _HEALTH_ORDER else "critical"
    return worst  # type: ignore[return-value]


def instance_from_health_entry(entry: HealthEntry | Mapping[str, Any]) -> Instance:
    """Build an :class:`Instance` from one element of ``/v1/health/service/:service``, as
    :func:`unify_common.consul_health.decode_health` types it (Consul's "Health - HTTP API"
    page). A dictionary in the API's own field names (``{"Node": {...}, "Service": {...},
    "Checks": [...]}``, as tests and benchmarks write them) is converted to a
    :class:`~unify_common.consul_health.HealthEntry` first.

    A missing or non-positive ``Weights.Passing`` gives weight 1. An empty
    ``Service.Address`` falls back to the node's address, as Consul's DNS does. Malformed
    Unify tags do not raise: they set ``tag_error`` and leave ``unify`` ``None``.

    :raises msgspec.ValidationError: a dictionary that is not such an element (no ``Node``
        or ``Service``, a field of the wrong type).
    """
    if not isinstance(entry, HealthEntry):
        entry = msgspec.convert(entry, HealthEntry)
    node, service = entry.node, entry.service
    tags = tuple(service.tags or ())
    checks = tuple(sorted(Check(check_id=c.check_id, name=c.name, status=c.status,
                                service_id=c.service_id)
                          for c in entry.checks or ()))
    unify, tag_error = None, None
    try:
        unify = parse_tags(tags)
    except TagError as err:
        tag_error = str(err)
    passing = service.weights.passing if service.weights is not None else 1
    return Instance(
        service=service.service,
        instance_id=service.id,
        node=node.node,
        address=service.address or node.address,
        port=service.port,
        tags=tags,
        meta=service.meta or {},
        health=aggregate_health([c.status for c in checks]),
        checks=checks,
        unify=unify,
        tag_error=tag_error,
        weight=passing if passing > 0 else 1,
        create_index=service.create_index,
        modify_index=service.modify_index,
    )
