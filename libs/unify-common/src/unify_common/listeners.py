"""Which vhost can be served on which listener, and when a certificate is needed (pure).

The one statement of the rule switchboard routes by and dns411 publishes names by, so DNS
never points at a name HAProxy cannot answer for. Everything here judges *one service's
tags* (a :class:`~unify_common.tags.UnifyTags`) and its instances' ports; what depends on
the rest of the catalog or on the node (port and route conflicts, a port another program
holds, which certificates exist) is switchboard's decision, which it publishes as per-vhost
verdicts (:class:`VhostVerdict`, :class:`VerdictDocument`).

Rules:

* **TLS plan** (:func:`tls_plan`): the ``ssl`` tag says where TLS ends. ``offloading`` ends
  it at HAProxy; ``bridge`` ends it and re-encrypts to the servers; ``backend`` keeps
  clients on plain HTTP and encrypts to the servers; ``pass-through`` routes the TLS stream
  by SNI untouched. Without the tag the servers are taken to speak TLS when every instance
  listens on port 443: an ``https`` listener then defaults to ``bridge``, else to
  ``offloading``.
* **Listener refusal** (:func:`listener_refusal`), checked in this order: a ``tcp``
  listener takes its whole port and is never refused here; an ``http``/``https`` listener
  needs a vhost with at least one valid name (``missing-vhost``); ``ssl=pass-through``
  needs ``https`` (an ``http`` listener is an ``ssl-mode-conflict``); ``ssl=backend``
  needs ``http`` (an ``https`` listener is an ``ssl-mode-conflict``).
* **Certificate** (:func:`needs_certificate`, :func:`certificate_covers`): an ``https``
  listener that terminates TLS (every mode but ``pass-through``) needs a certificate
  covering the host: the exact name, or a wildcard ``*.<rest>`` when the host is
  ``<one label>.<rest>``.
* **Unroutable vhost** (:func:`unroutable_vhost`): a vhost none of whose listeners can be
  served whatever the rest of the catalog holds; dns411 publishes no CNAME for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import msgspec

from .tags import Listener, UnifyTags

__all__ = ["HTTPS_MODES", "Refusal", "TlsPlan", "VerdictDocument", "VhostVerdict",
           "certificate_covers", "listener_refusal", "needs_certificate", "tls_plan",
           "unroutable_vhost"]

#: the modes of an ``https`` listener :func:`tls_plan` gives (``invalid``: ``ssl=backend``)
HTTPS_MODES = frozenset({"offloading", "bridge", "pass-through", "invalid"})


class TlsPlan(NamedTuple):
    """Where TLS ends for one service: ``server_tls`` is whether HAProxy speaks TLS to the
    servers; ``https_mode`` what an ``https`` listener does (one of :data:`HTTPS_MODES`)."""

    server_tls: bool
    https_mode: str


class Refusal(NamedTuple):
    """Why a listener cannot be served: ``reason`` a short word (``missing-vhost``,
    ``ssl-mode-conflict``), ``message`` for humans."""

    reason: str
    message: str


def tls_plan(ssl: str | None, ports: Iterable[int]) -> TlsPlan:
    """The TLS plan of a service (see the module doc).

    :param ssl: the ``ssl`` tag (one of :data:`unify_common.tags.SSL_MODES`) or ``None``.
    :param ports: the ports its instances listen on (only read when ``ssl`` is ``None``;
        no instance at all counts as "every instance on 443").
    """
    if ssl is None:
        tls = all(port == 443 for port in ports)
        return TlsPlan(tls, "bridge" if tls else "offloading")
    if ssl == "backend":
        return TlsPlan(True, "invalid")
    return TlsPlan(ssl in ("bridge", "pass-through"), ssl)


def listener_refusal(listener: Listener, ssl: str | None, has_hosts: bool
                     ) -> Refusal | None:
    """Why ``listener`` of a service with tag ``ssl`` can never be served, or ``None``.

    :param has_hosts: whether the service has at least one valid ``<vhost>.<dns>`` name.
    :returns: the first refusal in the module doc's order.
    """
    proto = listener.protocol
    if proto == "tcp":
        return None
    if not has_hosts:
        return Refusal("missing-vhost", f"{proto}={listener.port} needs vhost= and dns= tags")
    if proto == "http" and ssl == "pass-through":
        return Refusal("ssl-mode-conflict", "ssl=pass-through needs an https listener, not http")
    if proto == "https" and ssl == "backend":
        return Refusal("ssl-mode-conflict",
                       "ssl=backend keeps clients on plain HTTP: use http=, not https=")
    return None


def needs_certificate(listener: Listener, https_mode: str) -> bool:
    """Whether ``listener`` ends TLS at HAProxy, so each of its hosts needs a certificate:
    an ``https`` listener whose mode (:func:`tls_plan`) is not ``pass-through``."""
    return listener.protocol == "https" and https_mode != "pass-through"


def certificate_covers(host: str, names: Iterable[str]) -> bool:
    """Whether a certificate for ``names`` (its DNS names, ``*.`` wildcards included) covers
    ``host``: the exact name, or ``*.<rest>`` when ``host`` is ``<one label>.<rest>``."""
    parent = host.partition(".")[2]
    wildcard = f"*.{parent}" if parent else None
    return any(name == host or name == wildcard for name in names)


def unroutable_vhost(tags: UnifyTags) -> str | None:
    """Why no listener of a vhost service can ever be served, whatever the rest of the
    catalog holds, or ``None``: every listener is refused by :func:`listener_refusal`
    (a vhost has names, so only the ``ssl`` tag can refuse them).

    :param tags: parsed tags with a ``vhost``.
    :returns: a message naming the refused listeners and the vhost.
    """
    refusals = [listener_refusal(lst, tags.ssl, True) for lst in tags.listeners]
    if refusals and all(r is not None for r in refusals):
        shown = ", ".join(f"{lst.protocol}={lst.port}" for lst in tags.listeners)
        return (f"ssl={tags.ssl} refuses every listener ({shown}); no CNAME for vhost "
                f"{tags.vhost}")
    return None


class VhostVerdict(msgspec.Struct, frozen=True, omit_defaults=True):
    """switchboard's verdict on one host name ``<vhost>.<dns>``: ``accepted`` when at least
    one frontend routes it; else ``reason`` (a problem reason: ``route-conflict``,
    ``port-conflict``, ``missing-certificate``, ``ssl-mode-conflict``, ``port-unavailable``,
    ``name-collision``, ``invalid-name``...) and ``message`` (for humans) of the first
    rejection met, and the ``service`` that asked for it."""

    accepted: bool
    reason: str = ""
    message: str = ""
    service: str = ""


class VerdictDocument(msgspec.Struct, frozen=True):
    """What one switchboard node publishes in the verdict bucket, under its node name (JSON).

    ``node`` is the switchboard node; ``revision`` the catalog revision its verdicts were
    built from; ``written_at`` ms since the epoch of the write (refreshed periodically, so
    the bucket's max age expires the document of a node that vanished); ``vhosts`` maps
    every host name a routed service asks for to its :class:`VhostVerdict`.
    """

    node: str
    revision: int
    written_at: int
    vhosts: dict[str, VhostVerdict] = {}
