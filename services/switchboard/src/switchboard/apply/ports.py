"""Which new frontend ports another program already holds on this node.

Only ports the running configuration does not listen on yet are probed (HAProxy's own
listeners would look busy): a ``bind()`` on ``(address, port)`` failing with ``EADDRINUSE``
means taken. ``EACCES`` (a privileged port while switchboard runs unprivileged) counts as free:
HAProxy may have the privilege, and a wrong guess only costs a failed, retried reload.
"""

from __future__ import annotations

import errno
import re
import socket
from collections.abc import Iterable

__all__ = ["busy_ports", "listening_ports"]

_BIND_RE = re.compile(r"^    bind \S+:([0-9]{1,5})\b", re.M)


def listening_ports(config_text: str) -> set[int]:
    """TCP ports of the ``bind`` lines of a rendered configuration."""
    return {int(p) for p in _BIND_RE.findall(config_text)}


def busy_ports(address: str, ports: Iterable[int]) -> frozenset[int]:
    """The ``ports`` another program holds on ``address`` (IPv4 or IPv6 literal)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    busy = set()
    for port in sorted(set(ports)):
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
            except OSError as err:
                if err.errno == errno.EADDRINUSE:
                    busy.add(port)
    return frozenset(busy)
