"""The desired HAProxy state as plain immutable data (pure: no I/O).

Every name and value in these structs has been validated by :mod:`switchboard.desired` before it
is built, so :mod:`switchboard.render` can print them as they are. Shapes follow the HAProxy 2.6
configuration manual: a *frontend* (section 4, ``bind``) listens on one port and routes to
*backends* (``use_backend``), each holding *servers* (section 5.2).

The types built once per instance or route (:class:`Server`, :class:`Backend`,
:class:`HttpRoute`, :class:`SniRoute`, :class:`Frontend`) are frozen ``msgspec.Struct``
values: they are built, hashed and compared in C, which matters at 10,000 instances (the
renderer caches text by these values). They compare, hash and order like frozen dataclasses
(field by field); copy one with ``msgspec.structs.replace``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from unify_common.listeners import VhostVerdict
from unify_common.problems import Problem

__all__ = ["Backend", "Certificate", "Desired", "Frontend", "HttpRoute", "Server", "SniRoute"]


class Server(msgspec.Struct, frozen=True):
    """One instance in a backend slot: ``address`` is an IP literal, ``port`` 1-65535;
    ``state`` is ``ready`` (Consul passing), ``drain`` (warning) or ``maint`` (critical);
    ``key`` is the instance's catalog key (``i.<40 hex>``); ``weight`` is HAProxy's server
    weight while ``ready`` (1-256, from the instance's Consul ``Weights.Passing``, clamped)."""

    key: str
    address: str
    port: int
    state: str = "ready"
    weight: int = 1


class Backend(msgspec.Struct, frozen=True):
    """A backend: ``name`` is ``be_<mode>_<clean service>_<8 hex>``; ``mode`` ``http`` or
    ``tcp``; ``check`` is ``None`` (no health check), ``("tcp", "")`` (connect check) or
    ``(<METHOD>, <path>)`` (HTTP check); ``server_ssl`` means HAProxy speaks TLS to servers.
    ``slots`` has one entry per pre-allocated ``server s<i>`` line (1-based); ``None`` is a
    free (disabled) slot."""

    name: str
    service: str
    mode: str
    balance: str
    check: tuple[str, str] | None
    server_ssl: bool
    slots: tuple[Server | None, ...]


class HttpRoute(msgspec.Struct, frozen=True, order=True):
    """``host`` (lower-case DNS name) + optional path ``prefix`` (``None`` = everything else)
    -> ``backend`` name. Sorted order is the order of ``use_backend`` rules after
    :func:`switchboard.desired.order_routes`."""

    host: str
    prefix: str | None
    backend: str


class SniRoute(msgspec.Struct, frozen=True, order=True):
    """TLS pass-through: a ClientHello whose SNI is ``host`` goes to ``backend`` (tcp mode)."""

    host: str
    backend: str


@dataclass(frozen=True, order=True)
class Certificate:
    """A PEM bundle (certificate chain + private key) usable for TLS termination: ``path`` is
    absolute, ``names`` the DNS names it covers (``*.example.com`` wildcards included),
    ``fingerprint`` the SHA-256 of the file (hex) so a renewed file changes the config."""

    path: str
    names: tuple[str, ...]
    fingerprint: str


class Frontend(msgspec.Struct, frozen=True):
    """One listening port.

    ``kind`` is ``http`` (plain HTTP), ``https`` (TLS; terminated for ``routes``, passed through
    by SNI for ``sni_routes``) or ``tcp`` (raw TCP to ``default_backend``). ``certificates`` are
    the bundles offered on the TLS bind (empty: no termination on this port).
    """

    name: str
    kind: str
    port: int
    routes: tuple[HttpRoute, ...] = ()
    sni_routes: tuple[SniRoute, ...] = ()
    certificates: tuple[Certificate, ...] = ()
    default_backend: str | None = None


@dataclass(frozen=True)
class Desired:
    """The whole desired configuration: frontends sorted by port, backends by name.

    ``problems`` are the rejected inputs (:class:`unify_common.problems.Problem`, sorted);
    ``verdicts`` maps every host name a routed service asks for to whether a frontend routes
    it (:class:`unify_common.listeners.VhostVerdict`), what switchboard publishes for dns411.
    Neither takes part in comparisons."""

    frontends: tuple[Frontend, ...] = ()
    backends: tuple[Backend, ...] = ()
    problems: tuple[Problem, ...] = field(default=(), compare=False)
    verdicts: dict[str, VhostVerdict] = field(default_factory=dict, compare=False, hash=False)
