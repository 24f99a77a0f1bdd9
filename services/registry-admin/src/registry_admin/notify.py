"""distribution's notification bodies -> image events (pure).

A registry POSTs an *envelope*
(``Content-Type: application/vnd.docker.distribution.events.v1+json``):
``{"events": [event, ...]}``; each event has ``id``, ``timestamp`` (RFC 3339), ``action``
(``push``, ``pull``, ``mount``, ``delete``), ``target`` (``mediaType``, ``size``, ``digest``,
``length``, ``repository``, ``url``, ``tag``), ``request``, ``actor`` (``name``) and
``source`` (``addr``, ``instanceID``). See distribution's "Work with notifications" page and
its ``notifications/event.go``.

What is kept:

* ``push`` of a *manifest* (``target.mediaType`` is a manifest or index media type) ->
  :class:`Pushed`;
* ``delete`` with a tag (tag delete) or a digest (manifest delete) -> :class:`Deleted`.
  distribution 2.8 sends blob deletes (``DELETE /v2/<name>/blobs/<digest>``) with the same
  shape as manifest deletes, so an explicit blob delete through the API also shows up here;
  garbage collection sends no notifications at all;
* everything else (blob pushes, mounts, pulls) is dropped.

A body is accepted or rejected whole: one malformed kept event rejects the body (the registry
keeps retrying it, so nothing is lost while an operator looks), with a reason.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import msgspec

__all__ = ["Deleted", "MANIFEST_MEDIA_TYPES", "MAX_BODY_BYTES", "NotificationError", "Pushed",
           "parse_envelope"]

#: largest notification body accepted (distribution sends one event per request by default)
MAX_BODY_BYTES = 1 << 20
MAX_EVENTS = 1000

MANIFEST_MEDIA_TYPES = frozenset({
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
})

# distribution's reference grammar: path components separated by '/', 255 characters at most
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^(?:sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$")
_EVENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_PRINTABLE = re.compile(r"^[\x20-\x7e]*$")


class NotificationError(ValueError):
    """The body is not an acceptable notification envelope; ``str()`` is the reason."""


class _Target(msgspec.Struct):
    mediaType: str = ""
    size: int = 0
    length: int = 0
    digest: str = ""
    repository: str = ""
    tag: str = ""
    url: str = ""


class _Actor(msgspec.Struct):
    name: str = ""


class _Source(msgspec.Struct):
    addr: str = ""
    instanceID: str = ""


class _Event(msgspec.Struct):
    id: str
    action: str
    timestamp: str = ""
    target: _Target = msgspec.field(default_factory=_Target)
    actor: _Actor = msgspec.field(default_factory=_Actor)
    source: _Source = msgspec.field(default_factory=_Source)


class _Envelope(msgspec.Struct):
    events: list[_Event]


_decoder = msgspec.json.Decoder(_Envelope)


@dataclass(frozen=True)
class Pushed:
    """A manifest push: ``tag`` is ``""`` for a push by digest; ``at_ms`` the registry's
    timestamp in Unix epoch milliseconds (0 when absent)."""

    event_id: str
    repository: str
    tag: str
    digest: str
    size: int
    media_type: str
    actor: str
    instance: str
    at_ms: int


@dataclass(frozen=True)
class Deleted:
    """A tag delete (``tag`` set) or manifest delete (``digest`` set)."""

    event_id: str
    repository: str
    tag: str
    digest: str
    actor: str
    instance: str
    at_ms: int


def _epoch_ms(text: str) -> int:
    """RFC 3339 (with up to nanoseconds, as Go writes it) -> epoch ms; 0 when unparsable."""
    if not text:
        return 0
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    if not m:
        return 0
    frac = (m.group(2) or ".0")[:7]
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    try:
        return int(dt.datetime.fromisoformat(m.group(1) + frac + zone).timestamp() * 1000)
    except ValueError:
        return 0


def _text(value: str, what: str, limit: int = 255) -> str:
    if len(value) > limit or not _PRINTABLE.match(value):
        raise NotificationError(f"{what} is not printable ASCII of at most {limit} characters")
    return value


def _check_common(ev: _Event, n: int) -> tuple[str, str, str]:
    if not _EVENT_ID.match(ev.id):
        raise NotificationError(f"event {n}: id is not a registry event id")
    repo = ev.target.repository
    if len(repo) > 255 or not _REPOSITORY.match(repo):
        raise NotificationError(f"event {n}: target.repository is not a repository name")
    actor = _text(ev.actor.name, f"event {n}: actor.name")
    instance = _text(ev.source.addr, f"event {n}: source.addr")
    return repo, actor, instance


def parse_envelope(body: bytes) -> tuple[list[Pushed | Deleted], int]:
    """Parse one notification body.

    :returns: (kept events in body order, number of dropped events: blob, pull, mount).
    :raises NotificationError: the body is too large, not JSON, not an envelope, or a kept
        event has a malformed id, repository, tag, digest, size or text field.
    """
    if len(body) > MAX_BODY_BYTES:
        raise NotificationError(f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        envelope = _decoder.decode(body)
    except msgspec.DecodeError as err:
        raise NotificationError(f"not a notification envelope: {err}") from None
    if len(envelope.events) > MAX_EVENTS:
        raise NotificationError(f"more than {MAX_EVENTS} events in one body")
    kept: list[Pushed | Deleted] = []
    dropped = 0
    for n, ev in enumerate(envelope.events):
        target = ev.target
        if ev.action == "push" and target.mediaType in MANIFEST_MEDIA_TYPES:
            repo, actor, instance = _check_common(ev, n)
            if not _DIGEST.match(target.digest):
                raise NotificationError(f"event {n}: target.digest is not a digest")
            if target.tag and not _TAG.match(target.tag):
                raise NotificationError(f"event {n}: target.tag is not a tag")
            size = target.size or target.length
            if not 0 <= size <= 1 << 40:
                raise NotificationError(f"event {n}: target.size out of range")
            kept.append(Pushed(ev.id, repo, target.tag, target.digest, size,
                               target.mediaType, actor, instance, _epoch_ms(ev.timestamp)))
        elif ev.action == "delete" and (target.tag or target.digest):
            repo, actor, instance = _check_common(ev, n)
            if target.digest and not _DIGEST.match(target.digest):
                raise NotificationError(f"event {n}: target.digest is not a digest")
            if target.tag and not _TAG.match(target.tag):
                raise NotificationError(f"event {n}: target.tag is not a tag")
            kept.append(Deleted(ev.id, repo, target.tag, target.digest, actor, instance,
                                _epoch_ms(ev.timestamp)))
        elif ev.action in ("push", "pull", "mount", "delete"):
            dropped += 1
        else:
            raise NotificationError(f"event {n}: unknown action")
    return kept, dropped
