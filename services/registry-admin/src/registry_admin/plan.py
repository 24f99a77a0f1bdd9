"""Catalog state -> what the registry cluster should look like (pure, table-tested).

* :func:`registry_nodes` picks the registry instances out of the catalog (service name
  configurable, default ``registry``), rejecting hostile names and addresses with a reason.
* :func:`wanted_sans` is every name and address clients use: ``<service>.<domain>`` for each
  configured domain, extra names, each node's host name and address, ``localhost``,
  ``127.0.0.1``.
* :func:`trust_dirs` is the ``certs.d`` directory names (``host:port``) dockerd looks the CA
  up under, for every name a client may pull through.
* :func:`rollout_order` is the rolling restart: instances that do not serve the wanted
  certificate yet (or whose answer is unknown), one at a time, in a stable order.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from unify_common.events import Instance
from unify_common.state import CatalogState

from .pki import SanSet

__all__ = ["META_SECRET_FP", "Node", "Rejected", "registry_nodes", "rollout_order",
           "trust_dirs", "wanted_sans"]

#: the Consul service meta key under which an instance reports its secret's fingerprint
META_SECRET_FP = "unify_secret_fp"

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_FP = re.compile(r"^sha256:[0-9a-f]{32}$")


def is_hostname(name: str) -> bool:
    """A DNS host name (RFC 1123 labels, at most 253 characters, no wildcard)."""
    return len(name) <= 253 and bool(_HOSTNAME.match(name.lower()))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Node:
    """One registry instance: ``key`` its catalog key, ``name`` a label for humans and
    events (``<node>/<instance id>``), ``host`` what to dial (address), ``hostname`` the
    Consul node name when it is a valid host name (else ``""``), ``secret_fp`` the reported
    fingerprint or ``None``."""

    key: str
    name: str
    instance_id: str
    host: str
    port: int
    hostname: str
    secret_fp: str | None

    @property
    def endpoint(self) -> str:
        """``host:port`` (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class Rejected:
    """A registry instance left out, with the reason (for the error event)."""

    name: str
    instance_id: str
    node: str
    reason: str


def registry_nodes(state: CatalogState, service: str) -> tuple[list[Node], list[Rejected]]:
    """The instances of ``service`` in the catalog, sorted by name, and those rejected.

    An instance is rejected when its address is neither an IP address nor a host name, or
    its port is not 1..65535. A node name that is no host name is only left out of the SANs.
    A malformed fingerprint counts as reported (it cannot match).
    """
    nodes: list[Node] = []
    rejected: list[Rejected] = []
    for key, inst in sorted(state.instances.items()):
        if not isinstance(inst, Instance) or inst.service != service:
            continue
        name = f"{inst.node}/{inst.instance_id}"
        address = inst.address.strip()
        if not (_is_ip(address) or is_hostname(address)):
            rejected.append(Rejected(name, inst.instance_id, inst.node,
                                     "address is neither an IP address nor a host name"))
            continue
        if not 0 < inst.port < 65536:
            rejected.append(Rejected(name, inst.instance_id, inst.node,
                                     "port is not 1-65535"))
            continue
        fp = inst.meta.get(META_SECRET_FP)
        if fp is not None and not _FP.match(fp):
            fp = "malformed"
        hostname = inst.node.lower() if is_hostname(inst.node) else ""
        nodes.append(Node(key, name, inst.instance_id,
                          str(ipaddress.ip_address(address)) if _is_ip(address)
                          else address.lower(), inst.port, hostname, fp))
    nodes.sort(key=lambda n: (n.name, n.key))
    rejected.sort(key=lambda r: r.name)
    return nodes, rejected


def wanted_sans(nodes: list[Node], *, service: str, domains: tuple[str, ...],
                extra_names: tuple[str, ...] = ()) -> SanSet:
    """Every DNS name and IP address the server certificate must carry (see module doc).
    Domains and extra names that are not host names are ignored (settings validate them)."""
    dns = {"localhost"}
    ips = {"127.0.0.1"}
    for domain in domains:
        name = f"{service}.{domain}".lower()
        if is_hostname(name):
            dns.add(name)
    dns.update(n.lower() for n in extra_names if is_hostname(n))
    for node in nodes:
        if node.hostname:
            dns.add(node.hostname)
        (ips if _is_ip(node.host) else dns).add(node.host)
    return SanSet.of(dns, ips)


def trust_dirs(nodes: list[Node], sans: SanSet, *, extra_ports: tuple[int, ...] = ()
               ) -> list[str]:
    """``host:port`` directory names under ``certs.d``: every SAN with every registry port
    (the ports the instances listen on, plus ``extra_ports``, e.g. a load balancer's)."""
    ports = sorted({n.port for n in nodes} | set(extra_ports))
    hosts = list(sans.dns) + [f"[{ip}]" if ":" in ip else ip for ip in sans.ips]
    return sorted({f"{h}:{p}" for h in hosts for p in ports})


def rollout_order(nodes: list[Node], served: dict[str, str | None], wanted_fp: str
                  ) -> list[Node]:
    """The instances to restart, in order: those whose served certificate fingerprint
    (``served[key]``; ``None`` = could not be read) is not ``wanted_fp``. The caller
    restarts them one at a time and waits for each to serve ``wanted_fp`` before the next."""
    return [n for n in nodes if served.get(n.key) != wanted_fp]
