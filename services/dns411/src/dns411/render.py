"""Desired records -> dnsmasq files (pure, deterministic: same records -> same bytes).

Two files, as dnsmasq(8) reads them:

* an ``--addn-hosts`` file in hosts(5) format, one ``<address> <name>`` line per A/AAAA
  value, sorted by name, type, address. dnsmasq re-reads it on SIGHUP.
* a ``--conf-dir`` file with ``local-ttl=<ttl>`` (TTL of answers from hosts files),
  ``cname=<name>,<target>,<ttl>`` lines and, when Consul DNS is configured,
  ``server=/consul/<ip>#<port>``. dnsmasq reads it only at start.

dnsmasq answers a ``cname=`` only when the target is a name it knows itself (hosts file,
another cname): CNAMEs to outside names work in Route 53 but not in dnsmasq.
"""

from __future__ import annotations

from collections.abc import Iterable

from .model import ADDRESS_TYPES, RecordSet
from .names import parse_address

__all__ = ["parse_hosts_file", "parse_conf_file", "render_conf", "render_hosts",
           "consul_server_line"]

HEADER = "# Written by dns411 from the Unify catalog; edits are overwritten.\n"


def render_hosts(records: Iterable[RecordSet]) -> bytes:
    """The addn-hosts file for the A/AAAA record sets among ``records``."""
    lines: list[str] = []
    for rec in sorted(r for r in records if r.type in ADDRESS_TYPES):
        lines.extend(f"{value} {rec.name}\n" for value in rec.values)
    return (HEADER + "".join(lines)).encode()


def consul_server_line(addr: str) -> str:
    """``server=/consul/<ip>#<port>`` for ``addr`` (``<ip>:<port>``, ``[v6]:<port>`` or
    ``<ip>``, port 8600 by default: Consul's DNS port).

    :raises ValueError: ``addr`` is not an IP address with an optional port.
    """
    host, port = addr.strip(), "8600"
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        port = rest.lstrip(":") or port
    elif host.count(":") == 1:
        host, _, port = host.partition(":")
    if parse_address(host) is None or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"Consul DNS address must be <ip>[:<port>], got {addr!r}")
    return f"server=/consul/{host}#{int(port)}\n"


def render_conf(records: Iterable[RecordSet], *, ttl: int, consul_dns: str = "",
                local_domains: Iterable[str] = ()) -> bytes:
    """The conf-dir file: ``local-ttl``, a ``local=/<domain>/`` line per domain dnsmasq
    answers alone (unknown names there get NXDOMAIN), the ``.consul`` forwarding line when
    ``consul_dns`` is set (see :func:`consul_server_line`), and one ``cname=`` per CNAME
    record set. ``local_domains`` must be validated domain names (see settings).

    :raises ValueError: ``consul_dns`` is malformed.
    """
    out = [HEADER, f"local-ttl={ttl}\n"]
    out.extend(f"local=/{domain}/\n" for domain in sorted(set(local_domains)))
    if consul_dns:
        out.append(consul_server_line(consul_dns))
    for rec in sorted(r for r in records if r.type == "CNAME"):
        out.append(f"cname={rec.name},{rec.values[0]},{rec.ttl}\n")
    return "".join(out).encode()


def parse_hosts_file(text: str, ttl: int) -> list[RecordSet]:
    """Inverse of :func:`render_hosts` (for listings): record sets with origin ``dnsmasq``."""
    grouped: dict[tuple[str, str], set[str]] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        parsed = parse_address(fields[0]) if fields else None
        if parsed is None:
            continue
        for name in fields[1:]:
            grouped.setdefault((name.lower(), parsed[0]), set()).add(parsed[1])
    return [RecordSet(n, t, tuple(sorted(v)), ttl, "dnsmasq")
            for (n, t), v in sorted(grouped.items())]


def parse_conf_file(text: str) -> tuple[int | None, list[RecordSet]]:
    """Inverse of :func:`render_conf` (for listings): ``(local-ttl, CNAME record sets)``."""
    ttl: int | None = None
    records = []
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        if key == "local-ttl" and value.isdigit():
            ttl = int(value)
        elif key == "cname":
            parts = value.split(",")
            if len(parts) >= 2:
                rttl = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 0
                records.append(RecordSet(parts[0], "CNAME", (parts[1],), rttl, "dnsmasq"))
    return ttl, sorted(records)
