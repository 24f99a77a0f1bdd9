"""The pure core: one container's inspect data -> the Consul agent services it should have.

Follows gliderlabs/registrator's documented behaviour ("Service Object", "Run Reference" and
"Backend Reference" pages of its user guide), reimplemented here:

* One service per port: the published ports (``NetworkSettings.Ports`` entries with a host
  port); with ``internal`` the exposed ports at the container's own address; in host network
  mode the exposed ports at the node's address. ``tcp`` and ``udp`` ports only.
* Metadata comes from ``SERVICE_*`` environment variables and labels; for a Swarm task the
  service's spec labels count as labels too. Later sources win: environment, then Swarm
  service labels, then the container's own labels. The part after ``SERVICE_`` is read
  lower-cased; ``SERVICE_<port>_<key>`` (``<port>`` the exposed port) applies to that port only
  and wins over ``SERVICE_<key>``.
* Keys: ``name``, ``tags`` (comma-separated), ``ignore`` (any non-empty value skips the port),
  ``id`` (not honoured: IDs stay ``<node>:<container>:<port>[:udp]``), ``check_*`` (one Consul
  check, see :func:`_build_check`); any other key becomes service meta.
* Name: ``SERVICE_NAME`` or the image's base name (``registry:5000/team/app:1.2`` -> ``app``);
  when the container has several ports, ``-<exposed port>`` is appended unless the name came
  from a port-specific key. UDP services get the ``udp`` tag and ``:udp`` after the ID.

Every registration carries :data:`MARKER` ``=<node>`` and :data:`DIGEST` (a digest of the
whole registration) in its meta, so the shell only ever touches its own services and
re-registers only what changed.

Bad input (a malformed ``SERVICE_*`` value or key, a port that is not a number, a name or
meta Consul would refuse) rejects the whole container: :class:`Rejected` with a reason word
and a message; nothing is raised.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DIGEST",
    "MARKER",
    "Check",
    "Registration",
    "Rejected",
    "Rules",
    "Wanted",
    "container_name",
    "image_base_name",
    "is_running",
    "swarm_service_id",
    "wanted_for_container",
]

#: meta key naming the node whose registrator registered the service
MARKER = "unify-registrator"
#: meta key holding the digest of the registration (changes when anything in it changes)
DIGEST = "unify-registrator-digest"
#: the container label Swarm puts on a task's container: the id of its service
SWARM_SERVICE_LABEL = "com.docker.swarm.service.id"

_PREFIX = "SERVICE_"
# Consul service names: kept DNS- and subject-friendly; Consul refuses or cannot resolve others.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Consul's service meta rules ("Service Definition": Meta): key [A-Za-z0-9_-]{1,128}, value up
# to 512 characters, at most 64 pairs, no "consul-" key prefix.
_META_KEY_RE = re.compile(r"^[a-z0-9_-]{1,128}$")
_META_VALUE_MAX = 512
_META_MAX = 64
# Go's time.ParseDuration syntax, which Consul uses for intervals, timeouts and TTLs.
_DURATION_RE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$")
_METHOD_RE = re.compile(r"^[A-Z]{1,16}$")
_PORT_KEY_RE = re.compile(r"^(\d[^_]*)_(.+)$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_TAG_MAX = 255
_STATUSES = ("passing", "warning", "critical")
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_NOT_META = ("name", "tags", "ignore", "id")
_CHECK_KEYS = (
    "check_http", "check_https", "check_tcp", "check_ttl", "check_interval", "check_timeout",
    "check_method", "check_http_method", "check_tls_skip_verify", "check_initial_status",
    "check_deregister_after",
)
_UNSUPPORTED_CHECKS = ("check_script", "check_cmd", "check_docker", "check_grpc")
_DEFAULT_INTERVAL = "10s"
_WILDCARDS = ("", "0.0.0.0", "::")


@dataclass(frozen=True)
class Rules:
    """Settings of the rules.

    :param node: this node's name; first part of every service ID and the :data:`MARKER` value.
    :param ip: the address to register (registrator's ``-ip``); empty: the host address of the
        port binding when it is a specific one, else the node address.
    :param internal: register the container's address and exposed port (registrator's
        ``-internal``) instead of the host address and published port.
    :param force_tags: tags added to every service (registrator's ``-tags``).
    """

    node: str
    ip: str = ""
    internal: bool = False
    force_tags: tuple[str, ...] = ()


@dataclass(frozen=True, order=True)
class Check:
    """One Consul check of a service, in the agent API's field names (Consul "Check
    Definition"): ``HTTP``/``TCP``/``TTL`` choose the kind; empty fields are left out."""

    HTTP: str = ""
    Method: str = ""
    TLSSkipVerify: bool = False
    TCP: str = ""
    TTL: str = ""
    Interval: str = ""
    Timeout: str = ""
    Status: str = ""
    DeregisterCriticalServiceAfter: str = ""

    def as_consul(self) -> dict[str, Any]:
        """The check as the agent's service registration ``Checks`` entry."""
        return {key: value for key, value in vars(self).items() if value not in ("", False)}


@dataclass(frozen=True)
class Registration:
    """One wanted Consul agent service: ``meta`` holds the user's ``SERVICE_*`` meta plus
    :data:`MARKER` and :data:`DIGEST`; ``tags`` keep their order."""

    id: str
    name: str
    address: str
    port: int
    tags: tuple[str, ...] = ()
    meta: Mapping[str, str] = field(default_factory=dict)
    checks: tuple[Check, ...] = ()

    @property
    def digest(self) -> str:
        """The :data:`DIGEST` meta value."""
        return self.meta.get(DIGEST, "")

    def as_consul(self) -> dict[str, Any]:
        """The registration as the agent API's ``/v1/agent/service/register`` body."""
        body: dict[str, Any] = {"ID": self.id, "Name": self.name, "Address": self.address,
                                "Port": self.port, "Tags": list(self.tags),
                                "Meta": dict(self.meta)}
        if self.checks:
            body["Checks"] = [check.as_consul() for check in self.checks]
        return body


def _sealed(reg: Registration) -> Registration:
    """``reg`` with its :data:`DIGEST` meta set (SHA-256 of the rest, 16 hex digits)."""
    body = reg.as_consul()
    body["Meta"].pop(DIGEST, None)
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    return Registration(id=reg.id, name=reg.name, address=reg.address, port=reg.port,
                        tags=reg.tags, meta={**reg.meta, DIGEST: digest}, checks=reg.checks)


@dataclass(frozen=True)
class Rejected:
    """Why a container was skipped: ``reason`` is a short word (``invalid-metadata``,
    ``invalid-port``, ``invalid-name``), ``message`` says what and where, for humans."""

    reason: str
    message: str


@dataclass(frozen=True)
class Wanted:
    """The outcome for one container: its registrations, or why it was rejected."""

    container: str
    registrations: tuple[Registration, ...] = ()
    rejected: Rejected | None = None


class _Bad(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# -- container facts ---------------------------------------------------------------------

def container_name(inspect: Mapping[str, Any]) -> str:
    """The container's name without Docker's leading ``/``."""
    return str(inspect.get("Name") or "").lstrip("/")


def is_running(inspect: Mapping[str, Any]) -> bool:
    """Running (paused counts) and not restarting, from ``State``."""
    state = inspect.get("State") or {}
    return bool(state.get("Running")) and not state.get("Restarting")


def swarm_service_id(inspect: Mapping[str, Any]) -> str:
    """The Swarm service id of a task's container, or ``""``."""
    labels = (inspect.get("Config") or {}).get("Labels") or {}
    return str(labels.get(SWARM_SERVICE_LABEL) or "")


def image_base_name(image: str) -> str:
    """The last path part of an image reference without tag or digest:
    ``registry:5000/team/app:1.2@sha256:...`` -> ``app``."""
    base = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return base.split(":", 1)[0]


def _container_address(inspect: Mapping[str, Any]) -> str:
    """The container's own address: ``NetworkSettings.IPAddress``, else the first network's
    address by network name (``ingress`` last)."""
    settings = inspect.get("NetworkSettings") or {}
    if settings.get("IPAddress"):
        return str(settings["IPAddress"])
    networks = settings.get("Networks") or {}
    for name in sorted(networks, key=lambda n: (n == "ingress", n)):
        address = (networks[name] or {}).get("IPAddress")
        if address:
            return str(address)
    return ""


def _parse_port_key(key: str) -> tuple[int, str]:
    """``"8000/tcp"`` -> ``(8000, "tcp")``. :raises _Bad: not ``<1-65535>/<proto>``."""
    number, _, proto = str(key).partition("/")
    proto = proto or "tcp"
    if not number.isdigit() or not 0 < int(number) < 65536:
        raise _Bad("invalid-port", f"port {key!r} is not a number in 1..65535")
    return int(number), proto


def _parse_host_port(value: object, key: str) -> int:
    text = str(value)
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise _Bad("invalid-port", f"host port {text!r} of {key} is not a number in 1..65535")
    return int(text)


@dataclass(frozen=True)
class _Port:
    exposed: int
    proto: str
    address: str
    port: int


def _ports(inspect: Mapping[str, Any], rules: Rules, node_address: str) -> list[_Port]:
    config = inspect.get("Config") or {}
    host_config = inspect.get("HostConfig") or {}
    settings = inspect.get("NetworkSettings") or {}
    published = settings.get("Ports") or {}
    exposed_keys = list(config.get("ExposedPorts") or {})
    found: dict[tuple[int, str], _Port] = {}
    host_network = host_config.get("NetworkMode") == "host"
    if host_network or rules.internal:
        address = (rules.ip or node_address) if host_network else _container_address(inspect)
        if not address:
            return []
        for key in exposed_keys + list(published):
            number, proto = _parse_port_key(key)
            found.setdefault((number, proto), _Port(number, proto, address, number))
    else:
        for key, bindings in published.items():
            number, proto = _parse_port_key(key)
            chosen = None
            for binding in bindings or []:
                if not (binding or {}).get("HostPort"):
                    continue
                host_ip = str(binding.get("HostIp") or "")
                if chosen is None or (":" in chosen[0] and ":" not in host_ip):
                    chosen = (host_ip, _parse_host_port(binding["HostPort"], key))
            if chosen is None:
                continue
            host_ip, host_port = chosen
            address = rules.ip or (node_address if host_ip in _WILDCARDS else host_ip)
            found[(number, proto)] = _Port(number, proto, address, host_port)
    return [port for key, port in sorted(found.items()) if port.proto in ("tcp", "udp")]


# -- metadata ------------------------------------------------------------------------------

def _env_pairs(env: object) -> dict[str, str]:
    """``KEY=VALUE`` items of a container's ``Config.Env`` (a list of strings, or null in the
    engine's answer); anything else holds no pairs."""
    pairs: dict[str, str] = {}
    if not isinstance(env, list):
        return pairs
    for item in env:
        key, sep, value = str(item).partition("=")
        if sep:
            pairs[key] = value
    return pairs


def _metadata(sources: list[Mapping[str, str]]) -> tuple[dict[str, str], dict[int, dict[str, str]]]:
    """``(general, by_port)`` from the ``SERVICE_*`` keys of ``sources`` (later ones win).

    :raises _Bad: a key names a port that is not a number, or a meta key Consul refuses.
    """
    merged: dict[str, str] = {}
    for source in sources:
        for key, value in source.items():
            if isinstance(key, str) and key.startswith(_PREFIX):
                merged[key] = str(value)
    general: dict[str, str] = {}
    by_port: dict[int, dict[str, str]] = {}
    for key, value in sorted(merged.items()):
        rest = key[len(_PREFIX):].lower()
        match = _PORT_KEY_RE.match(rest)
        if match:
            port_text, name = match.groups()
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise _Bad("invalid-port",
                           f"{key}: port {port_text!r} is not a number in 1..65535")
            by_port.setdefault(int(port_text), {})[name] = value
        elif rest:
            general[rest] = value
        else:
            raise _Bad("invalid-metadata", f"{key}: empty key")
    return general, by_port


def _tags(value: str, key: str) -> list[str]:
    tags: list[str] = []
    for raw in value.split(","):
        tag = raw.strip()
        if not tag:
            continue
        if len(tag) > _TAG_MAX or _CONTROL_RE.search(tag):
            raise _Bad("invalid-metadata",
                       f"{key}: tag {tag[:40]!r} has control characters or is longer than "
                       f"{_TAG_MAX}")
        if tag not in tags:
            tags.append(tag)
    return tags


def _duration(meta: Mapping[str, str], key: str) -> str:
    value = meta.get(key, "")
    if value and not _DURATION_RE.match(value):
        raise _Bad("invalid-metadata",
                   f"SERVICE_{key.upper()}={value[:40]!r} is not a duration such as 10s or 1m30s")
    return value


def _build_check(meta: Mapping[str, str], address: str, port: int) -> Check | None:
    """The one check registrator's Consul backend builds from ``check_*`` keys (first of
    ``http``, ``https``, ``ttl``, ``tcp`` wins); ``interval`` defaults to 10s for HTTP(S) and
    TCP checks. :raises _Bad: a malformed value or an unknown/unsupported ``check_*`` key."""
    for key in meta:
        if key in _UNSUPPORTED_CHECKS:
            raise _Bad("invalid-metadata",
                       f"SERVICE_{key.upper()}: script, docker and gRPC checks are not "
                       "supported (a label must never run a command on the Consul agent)")
        if key.startswith("check_") and key not in _CHECK_KEYS:
            raise _Bad("invalid-metadata", f"SERVICE_{key.upper()}: unknown check setting")
    interval = _duration(meta, "check_interval") or _DEFAULT_INTERVAL
    timeout = _duration(meta, "check_timeout")
    status = meta.get("check_initial_status", "")
    if status and status not in _STATUSES:
        raise _Bad("invalid-metadata",
                   f"SERVICE_CHECK_INITIAL_STATUS={status[:40]!r} is not one of "
                   f"{', '.join(_STATUSES)}")
    deregister = _duration(meta, "check_deregister_after")
    method = meta.get("check_method", "") or meta.get("check_http_method", "")
    if method and not _METHOD_RE.match(method):
        raise _Bad("invalid-metadata", f"SERVICE_CHECK_METHOD={method[:40]!r} is not an "
                   "HTTP method")
    skip_text = meta.get("check_tls_skip_verify", "").lower()
    if skip_text and skip_text not in _BOOLS:
        raise _Bad("invalid-metadata",
                   f"SERVICE_CHECK_TLS_SKIP_VERIFY={skip_text[:40]!r} is not true or false")
    host = f"[{address}]" if ":" in address else address
    for scheme in ("http", "https"):
        path = meta.get(f"check_{scheme}", "")
        if path:
            if not path.startswith("/") or _CONTROL_RE.search(path) or " " in path:
                raise _Bad("invalid-metadata",
                           f"SERVICE_CHECK_{scheme.upper()}={path[:40]!r} is not a URL path "
                           "starting with /")
            return Check(HTTP=f"{scheme}://{host}:{port}{path}", Method=method,
                         TLSSkipVerify=_BOOLS.get(skip_text, False) if scheme == "https"
                         else False, Interval=interval, Timeout=timeout, Status=status,
                         DeregisterCriticalServiceAfter=deregister)
    ttl = _duration(meta, "check_ttl")
    if ttl:
        return Check(TTL=ttl, Status=status, DeregisterCriticalServiceAfter=deregister)
    if meta.get("check_tcp", ""):
        return Check(TCP=f"{host}:{port}", Interval=interval, Timeout=timeout, Status=status,
                     DeregisterCriticalServiceAfter=deregister)
    return None


def _service_meta(meta: Mapping[str, str], node: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in meta.items():
        if key in _NOT_META or key.startswith("check_"):
            continue
        if (not _META_KEY_RE.match(key) or key.startswith("consul-")
                or key.startswith(MARKER)):
            raise _Bad("invalid-metadata",
                       f"SERVICE_{key.upper()}: meta key {key!r} is not allowed by Consul "
                       "(letters, digits, _ and -, no consul- prefix) or is reserved")
        if len(value) > _META_VALUE_MAX:
            raise _Bad("invalid-metadata",
                       f"SERVICE_{key.upper()}: value longer than {_META_VALUE_MAX} characters")
        out[key] = value
    if len(out) > _META_MAX - 2:
        raise _Bad("invalid-metadata", f"more than {_META_MAX - 2} SERVICE_* meta keys")
    out[MARKER] = node
    return out


def _check_name(name: str, key: str) -> str:
    if not _NAME_RE.match(name):
        raise _Bad("invalid-name",
                   f"{key}={name[:60]!r} is not a service name Consul can serve (letters, "
                   "digits, '.', '_' and '-', at most 128, starting with a letter or digit)")
    return name


# -- the rule --------------------------------------------------------------------------------

def wanted_for_container(inspect: Mapping[str, Any], *, rules: Rules, node_address: str,
                         service_labels: Mapping[str, str] | None = None) -> Wanted:
    """The registrations a container should have (none when it is not running, has no
    usable port, or every port is ignored).

    :param inspect: the Engine API's container inspect answer (``GET /containers/{id}/json``).
    :param service_labels: ``Spec.Labels`` of the Swarm service when the container is a task.
    :param node_address: the address registered for published ports (unless ``rules.ip``).
    :returns: :class:`Wanted`; bad input gives ``rejected`` and no registrations.
    """
    name = container_name(inspect)
    if not is_running(inspect):
        return Wanted(container=name)
    try:
        return Wanted(container=name,
                      registrations=tuple(_registrations(inspect, name, rules, node_address,
                                                         service_labels or {})))
    except _Bad as bad:
        return Wanted(container=name, rejected=Rejected(bad.reason, bad.message))


def _registrations(inspect: Mapping[str, Any], name: str, rules: Rules, node_address: str,
                   service_labels: Mapping[str, str]) -> list[Registration]:
    config = inspect.get("Config") or {}
    general, by_port = _metadata([_env_pairs(config.get("Env")), service_labels,
                                  config.get("Labels") or {}])
    ports = _ports(inspect, rules, node_address)
    default_name = image_base_name(str(config.get("Image") or ""))
    group = len(ports) > 1
    out: list[Registration] = []
    for port in ports:
        own = by_port.get(port.exposed, {})
        meta = {**general, **own}
        if meta.get("ignore", ""):
            continue
        if own.get("name"):
            service = _check_name(own["name"], f"SERVICE_{port.exposed}_NAME")
        else:
            service = (_check_name(meta["name"], "SERVICE_NAME") if meta.get("name")
                       else _check_name(default_name, "image base name"))
            if group:
                service = f"{service}-{port.exposed}"
        tags = list(dict.fromkeys(_tags(meta.get("tags", ""), "SERVICE_TAGS")
                                  + list(rules.force_tags)))
        service_id = f"{rules.node}:{name}:{port.exposed}"
        if port.proto == "udp":
            service_id += ":udp"
            if "udp" not in tags:
                tags.append("udp")
        check = _build_check(meta, port.address, port.port)
        out.append(_sealed(Registration(
            id=service_id, name=service, address=port.address, port=port.port,
            tags=tuple(tags), meta=_service_meta(meta, rules.node),
            checks=(check,) if check else ())))
    return out
