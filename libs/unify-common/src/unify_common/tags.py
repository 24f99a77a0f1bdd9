"""The Unify tag language: parse an instance's Consul tags into routing intent.

Tags reach Consul through registrator's ``SERVICE_TAGS`` (a comma-separated list), one
``key=value`` string each, split on the *first* ``=``. Only the keys below belong to Unify;
every other tag (``primary``, ``version=3``, ...) is ignored, never an error.

==============  ==========================================================================
key             value
==============  ==========================================================================
``dns``         a domain (``example.com``); repeatable: the vhost answers on each domain
``vhost``       one host label or dotted name, exposed as ``<vhost>.<dns>``; needs ``dns``
``http``        frontend port (default 80 when the value is empty or the tag is bare)
``https``       frontend port (default 443)
``tcp``         frontend port (required)
``url_prefix``  ``/api``-style path prefix; longest matching prefix wins in switchboard
``check``       ``disabled`` or ``<METHOD> <path>`` (e.g. ``GET /health``)
``balance``     one of :data:`BALANCE_ALGORITHMS` (HAProxy's parameterless algorithms)
``ssl``         one of :data:`SSL_MODES`
==============  ==========================================================================

Every value is checked against a strict character set: a newline, a space (outside ``check``),
a brace, a ``#`` or a non-ASCII character makes the instance's tags invalid, and
:func:`parse_tags` raises :class:`TagError` naming the offending tag. Callers skip that one
instance and report the error; they never render a value that did not pass here.
"""

from __future__ import annotations

import re

import msgspec

from .hostnames import CHARACTERS, hostname_problem

__all__ = [
    "BALANCE_ALGORITHMS",
    "SSL_MODES",
    "HealthCheck",
    "Listener",
    "TagError",
    "UnifyTags",
    "parse_tags",
]

#: HAProxy ``balance`` algorithms that take no argument (HAProxy 2.6 configuration manual, 4.2).
BALANCE_ALGORITHMS = frozenset(
    {"roundrobin", "static-rr", "leastconn", "first", "source", "uri", "random"}
)
#: Where TLS ends: ``offloading`` (at HAProxy), ``bridge`` (both hops), ``backend`` (only
#: HAProxy → servers), ``pass-through`` (routed by SNI, never decrypted).
SSL_MODES = frozenset({"offloading", "bridge", "backend", "pass-through"})
HTTP_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH"})

_KNOWN_KEYS = frozenset(
    {"dns", "vhost", "http", "https", "tcp", "url_prefix", "check", "balance", "ssl"}
)
_REPEATABLE = frozenset({"dns", "http", "https", "tcp"})
_DEFAULT_PORT = {"http": 80, "https": 443}
_MAX_TAG_LEN = 256
#: Keys whose values are host names: bounded by the host-name rule (253 characters), judged
#: on the name, not by the tag cap (``dns=`` + a valid 253-character domain is 257 long).
_NAME_KEYS = frozenset({"dns", "vhost"})
_PREFIX_RE = re.compile(r"^/(?:[A-Za-z0-9._~-]+/?)*$")
_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/?=&%+-]*$")
_PORT_RE = re.compile(r"^[0-9]{1,5}$")


class TagError(ValueError):
    """A Unify tag of one instance is malformed; ``str(err)`` says which tag and why."""


class Listener(msgspec.Struct, frozen=True, order=True):
    """A frontend the service asks for: ``protocol`` is ``http``, ``https`` or ``tcp``;
    ``port`` is the frontend (client-facing) TCP port, 1-65535."""

    protocol: str
    port: int


class HealthCheck(msgspec.Struct, frozen=True):
    """An HTTP health check: ``method`` (upper case) and ``path`` (starts with ``/``).
    ``enabled`` is False for ``check=disabled``."""

    enabled: bool = True
    method: str = "GET"
    path: str = "/"


class UnifyTags(msgspec.Struct, frozen=True):
    """Routing intent parsed from one instance's tags.

    ``dns`` is sorted and lower-cased; ``listeners`` is sorted; ``vhost`` is lower-cased.
    ``listeners`` defaults to ``(Listener("http", 80),)`` when a vhost is set and no protocol tag
    is given. ``check`` is ``None`` when the tag is absent (the subscriber applies its default).
    """

    dns: tuple[str, ...] = ()
    vhost: str | None = None
    listeners: tuple[Listener, ...] = ()
    url_prefix: str | None = None
    check: HealthCheck | None = None
    balance: str | None = None
    ssl: str | None = None


def _fail(tag: str, reason: str) -> TagError:
    shown = tag if len(tag) <= 80 else tag[:77] + "..."
    return TagError(f"tag {shown!r}: {reason}")


def _hostname(tag: str, value: str, what: str) -> str:
    """The lower-cased name, judged by the one host-name rule (:mod:`.hostnames`)."""
    lowered = value.lower()
    problem = hostname_problem(lowered)
    if problem == CHARACTERS:
        raise _fail(tag, f"{what} must be a DNS name of letters, digits, '-' and '.'")
    if problem is not None:
        raise _fail(tag, f"{what} {problem}")
    return lowered


def _port(tag: str, protocol: str, value: str) -> int:
    if value == "":
        if protocol not in _DEFAULT_PORT:
            raise _fail(tag, f"{protocol} needs a port")
        return _DEFAULT_PORT[protocol]
    if not _PORT_RE.match(value) or not 1 <= int(value) <= 65535:
        raise _fail(tag, "port must be an integer from 1 to 65535")
    return int(value)


def _check(tag: str, value: str) -> HealthCheck:
    if value == "disabled":
        return HealthCheck(enabled=False)
    method, sep, path = value.partition(" ")
    if not sep or method not in HTTP_METHODS or not _PATH_RE.match(path):
        raise _fail(tag, "check must be 'disabled' or '<METHOD> /path' (e.g. 'GET /health')")
    return HealthCheck(method=method, path=path)


def parse_tags(tags: list[str] | tuple[str, ...]) -> UnifyTags | None:
    """Parse the Unify keys out of one instance's tags.

    :param tags: the instance's tags exactly as Consul returns them (``Service.Tags`` of
        ``/v1/health/service/:service``), in any order.
    :returns: the parsed :class:`UnifyTags`, or ``None`` when no tag uses a Unify key.
    :raises TagError: a Unify tag is malformed, a non-repeatable key is given twice with
        different values, or ``vhost`` has no ``dns``.

    >>> parse_tags(["dns=Example.com", "vhost=web", "primary"]).vhost
    'web'
    """
    values: dict[str, list[tuple[str, str]]] = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if key not in _KNOWN_KEYS:
            continue
        if len(tag) > _MAX_TAG_LEN and key not in _NAME_KEYS:
            raise _fail(tag, f"longer than {_MAX_TAG_LEN} characters")
        if not tag.isascii() or not tag.isprintable():
            raise _fail(tag, "only printable ASCII is allowed")
        if key != "check" and " " in value:
            raise _fail(tag, "spaces are not allowed")
        if not sep and key not in _DEFAULT_PORT:
            raise _fail(tag, f"expected {key}=<value>")
        values.setdefault(key, []).append((tag, value))
    if not values:
        return None

    for key, seen in values.items():
        if key not in _REPEATABLE and len({v for _, v in seen}) > 1:
            raise _fail(seen[1][0], f"{key} is given more than once with different values")

    def single(key: str) -> tuple[str, str] | None:
        return values[key][0] if key in values else None

    dns = tuple(sorted({_hostname(t, v, "dns") for t, v in values.get("dns", [])}))
    vhost = None
    if (found := single("vhost")) is not None:
        vhost = _hostname(found[0], found[1], "vhost")
        if not dns:
            raise _fail(found[0], "vhost needs at least one dns=<domain> tag")

    listeners = sorted(
        {Listener(proto, _port(t, proto, v)) for proto in ("http", "https", "tcp")
         for t, v in values.get(proto, [])}
    )
    if vhost is not None and not listeners:
        listeners = [Listener("http", 80)]

    url_prefix = None
    if (found := single("url_prefix")) is not None:
        if not _PREFIX_RE.match(found[1]) or "//" in found[1]:
            raise _fail(found[0], "url_prefix must look like /path (letters, digits, ._~-/)")
        url_prefix = found[1].rstrip("/") or "/"

    check = _check(*found) if (found := single("check")) is not None else None

    balance = None
    if (found := single("balance")) is not None:
        if found[1] not in BALANCE_ALGORITHMS:
            raise _fail(found[0], f"balance must be one of {', '.join(sorted(BALANCE_ALGORITHMS))}")
        balance = found[1]

    ssl = None
    if (found := single("ssl")) is not None:
        if found[1] not in SSL_MODES:
            raise _fail(found[0], f"ssl must be one of {', '.join(sorted(SSL_MODES))}")
        ssl = found[1]

    return UnifyTags(
        dns=dns, vhost=vhost, listeners=tuple(listeners), url_prefix=url_prefix,
        check=check, balance=balance, ssl=ssl,
    )
