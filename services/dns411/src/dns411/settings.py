"""dns411 settings, read from the environment.

==============================  ==========================================  =================
variable                        meaning                                      default
==============================  ==========================================  =================
``UNIFY_DNS411_MODE``           ``primary`` (catalog -> dnsmasq + Route 53)  ``primary``
                                or ``replica`` (Route 53 -> dnsmasq)
``UNIFY_DNS_TTL``               TTL of every record, seconds                 ``30``
``UNIFY_HAPROXY_SERVICE``       service whose instances answer vhosts        ``haproxy``
``UNIFY_HAPROXY_LABEL``         first label of the CNAME target name          ``haproxy``
``UNIFY_DNS_STATIC_PREFIX``     Consul KV prefix of static records           ``unify/dns/``
``UNIFY_DNS_STATIC_FILES``      comma-separated hosts-style files            (none)
``UNIFY_DNSMASQ_ENABLED``       write dnsmasq files (``1``/``0``)             ``1``
``UNIFY_DNSMASQ_HOSTS``         the addn-hosts file dns411 writes            see below
``UNIFY_DNSMASQ_CONF_DIR``      dnsmasq's conf-dir (``*.conf`` read)         see below
``UNIFY_DNSMASQ_CONF_NAME``     dns411's file name in the conf-dir           ``dns411.conf``
``UNIFY_DNSMASQ_BIN``           dnsmasq binary                               ``dnsmasq``
``UNIFY_DNSMASQ_MANAGE``        ``1``: dns411 runs dnsmasq as its child       ``0``
``UNIFY_DNSMASQ_PORT``          port of the managed dnsmasq                  ``53``
``UNIFY_DNSMASQ_LISTEN``        listen address of the managed dnsmasq        ``127.0.0.1``
``UNIFY_DNSMASQ_USER``          ``--user`` of the managed dnsmasq            (dnsmasq's)
``UNIFY_DNSMASQ_PIDFILE``       pid file of an unmanaged dnsmasq to signal   (none)
``UNIFY_DNSMASQ_RESTART_CMD``   command restarting an unmanaged dnsmasq      (none)
``UNIFY_CONSUL_DNS_ADDR``       ``<ip>[:port]``: forward ``.consul`` there    (none)
``UNIFY_DNS_LOCAL_DOMAINS``     comma-separated domains dnsmasq answers       (none)
                                alone (``local=``): unknown names in them
                                get NXDOMAIN, never REFUSED or forwarded
``UNIFY_ROUTE53_ENABLED``       write Route 53 (``1``/``0``)                  ``0``
``UNIFY_ROUTE53_POLICY``        ``sync`` or ``upsert-only``                  ``sync``
``UNIFY_ROUTE53_ZONES``         comma-separated zone names or ids to manage  (every zone)
``UNIFY_ROUTE53_ZONE_IDS``      comma-separated hosted zone ids: read with   (list zones)
                                GetHostedZone once per process, never
                                ListHostedZones (like external-dns's
                                ``--zone-id-filter``)
``UNIFY_ROUTE53_ZONE_TTL``      seconds before the zone list is read again   ``600``
                                (a zone created meanwhile is found; also
                                early when a name matches no zone); 0: never
``UNIFY_DNS_OWNER_ID``          owner id in the ownership TXT records         ``unify``
``UNIFY_ROUTE53_RESYNC``        seconds an unchanged desired state is not    ``300``
                                re-read from Route 53 (0: read every time)
``UNIFY_ROUTE53_LOCK``          ``1``: only the holder of a Consul session    ``0``
                                lock writes Route 53 (needs Consul)
``UNIFY_ROUTE53_LOCK_KEY``      the lock's KV key          ``unify/locks/dns411-route53``
``UNIFY_ROUTE53_LOCK_TTL``      session TTL, seconds (10-86400)              ``15``
``UNIFY_ROUTE53_MAX_ATTEMPTS``  tries per API call on throttling             ``8``
``UNIFY_ROUTE53_BACKOFF_MAX``   cap of one backoff delay, seconds            ``20``
``UNIFY_DNS411_TICK``           dns411's periodic resync: seconds after a    ``30``
                                reconcile before the next one although the
                                catalog is quiet (restarts a dead dnsmasq
                                child, heals Route 53 drift); 0: never;
                                ``UNIFY_RESYNC`` does not apply to dns411
``UNIFY_DNS411_REPLICA_EVERY``  replica mode: seconds between reads          ``30``
``UNIFY_DNS411_DEBOUNCE``       seconds of quiet after a catalog change       ``0.05``
                                before a reconcile (0..1; a burst gives one
                                reconcile, so one dnsmasq restart)
``UNIFY_HEALTH_ADDR``           ``host:port`` of ``/livez``, ``/readyz``      ``127.0.0.1:9103``
                                and ``/metrics`` (port 0: any free port)
==============================  ==========================================  =================

Paths default to ``/var/lib/unify/dnsmasq/dns411.hosts`` and
``/var/lib/unify/dnsmasq/conf.d``. Route 53 is reached with the AWS SDK's own variables
(``AWS_REGION``/``AWS_DEFAULT_REGION``, credentials, ``AWS_ENDPOINT_URL_ROUTE_53`` or
``AWS_ENDPOINT_URL`` for a stand-in such as moto), read by boto3 itself.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from unify_common.health import health_addr
from unify_common.settings import env_float, env_int

from .plan import POLICIES
from .render import consul_server_line

__all__ = ["Dns411Settings"]

_OWNER_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_ZONE_ID_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")
_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_DOMAIN_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(?:\.(?!-)[a-z0-9-]{1,63}(?<!-))*$")


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1 or 0, got {raw!r}")


@dataclass(frozen=True, kw_only=True)
class Dns411Settings:
    """Everything dns411 needs besides the connection settings (see the module doc)."""

    mode: str = "primary"
    ttl: int = 30
    haproxy_service: str = "haproxy"
    haproxy_label: str = "haproxy"
    static_prefix: str = "unify/dns/"
    static_files: tuple[Path, ...] = ()
    dnsmasq_enabled: bool = True
    hosts_path: Path = Path("/var/lib/unify/dnsmasq/dns411.hosts")
    conf_dir: Path = Path("/var/lib/unify/dnsmasq/conf.d")
    conf_name: str = "dns411.conf"
    dnsmasq_bin: str = "dnsmasq"
    manage: bool = False
    port: int = 53
    listen: str = "127.0.0.1"
    user: str = ""
    pid_file: Path | None = None
    restart_cmd: tuple[str, ...] = ()
    consul_dns: str = ""
    local_domains: tuple[str, ...] = ()
    route53_enabled: bool = False
    policy: str = "sync"
    zones: tuple[str, ...] = ()
    zone_ids: tuple[str, ...] = ()
    zone_ttl: float = 600.0
    owner_id: str = "unify"
    route53_resync: float = 300.0
    route53_lock: bool = False
    lock_key: str = "unify/locks/dns411-route53"
    lock_ttl: float = 15.0
    max_attempts: int = 8
    backoff_max: float = 20.0
    tick: float = 30.0
    replica_every: float = 30.0
    debounce: float = 0.05
    health_addr: tuple[str, int] = ("127.0.0.1", 9103)

    @property
    def conf_path(self) -> Path:
        """dns411's file in the conf-dir."""
        return self.conf_dir / self.conf_name

    def __post_init__(self) -> None:
        if self.mode not in ("primary", "replica"):
            raise ValueError(f"UNIFY_DNS411_MODE must be primary or replica, got {self.mode!r}")
        if not 0 <= self.ttl <= 2147483647:
            raise ValueError("UNIFY_DNS_TTL must be 0..2147483647 seconds")
        if self.policy not in POLICIES:
            raise ValueError(f"UNIFY_ROUTE53_POLICY must be one of {', '.join(POLICIES)}")
        if not _OWNER_RE.match(self.owner_id):
            raise ValueError("UNIFY_DNS_OWNER_ID must be 1-64 of letters, digits, '.', '_', '-'")
        if not _LABEL_RE.match(self.haproxy_label):
            raise ValueError("UNIFY_HAPROXY_LABEL must be one DNS label")
        if not self.conf_name.endswith(".conf") or "/" in self.conf_name:
            raise ValueError("UNIFY_DNSMASQ_CONF_NAME must be a file name ending in .conf")
        if self.consul_dns:
            consul_server_line(self.consul_dns)
        for domain in self.local_domains:
            if not _DOMAIN_RE.match(domain):
                raise ValueError(f"UNIFY_DNS_LOCAL_DOMAINS: not a domain name: {domain!r}")
        for zone_id in self.zone_ids:
            if not _ZONE_ID_RE.match(zone_id):
                raise ValueError(f"UNIFY_ROUTE53_ZONE_IDS: not a hosted zone id: {zone_id!r}")
        if self.zone_ttl < 0:
            raise ValueError("UNIFY_ROUTE53_ZONE_TTL must be 0 or more seconds")
        if not 0 <= self.debounce <= 1:
            raise ValueError("UNIFY_DNS411_DEBOUNCE must be 0..1 seconds")
        if self.max_attempts < 1:
            raise ValueError("UNIFY_ROUTE53_MAX_ATTEMPTS must be at least 1")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Dns411Settings":
        """Read the settings. :raises ValueError: naming the first bad variable."""
        env = os.environ if env is None else env
        pid = env.get("UNIFY_DNSMASQ_PIDFILE", "")
        return cls(
            mode=env.get("UNIFY_DNS411_MODE", "") or "primary",
            ttl=env_int(env, "UNIFY_DNS_TTL", 30),
            haproxy_service=env.get("UNIFY_HAPROXY_SERVICE", "") or "haproxy",
            haproxy_label=env.get("UNIFY_HAPROXY_LABEL", "") or "haproxy",
            static_prefix=env.get("UNIFY_DNS_STATIC_PREFIX", "") or "unify/dns/",
            static_files=tuple(Path(p.strip()) for p in
                               env.get("UNIFY_DNS_STATIC_FILES", "").split(",") if p.strip()),
            dnsmasq_enabled=_flag(env, "UNIFY_DNSMASQ_ENABLED", True),
            hosts_path=Path(env.get("UNIFY_DNSMASQ_HOSTS", "")
                            or "/var/lib/unify/dnsmasq/dns411.hosts"),
            conf_dir=Path(env.get("UNIFY_DNSMASQ_CONF_DIR", "")
                          or "/var/lib/unify/dnsmasq/conf.d"),
            conf_name=env.get("UNIFY_DNSMASQ_CONF_NAME", "") or "dns411.conf",
            dnsmasq_bin=env.get("UNIFY_DNSMASQ_BIN", "") or "dnsmasq",
            manage=_flag(env, "UNIFY_DNSMASQ_MANAGE", False),
            port=env_int(env, "UNIFY_DNSMASQ_PORT", 53),
            listen=env.get("UNIFY_DNSMASQ_LISTEN", "") or "127.0.0.1",
            user=env.get("UNIFY_DNSMASQ_USER", ""),
            pid_file=Path(pid) if pid else None,
            restart_cmd=tuple(shlex.split(env.get("UNIFY_DNSMASQ_RESTART_CMD", ""))),
            consul_dns=env.get("UNIFY_CONSUL_DNS_ADDR", ""),
            local_domains=tuple(sorted({d.strip().lower().rstrip(".") for d in
                                        env.get("UNIFY_DNS_LOCAL_DOMAINS", "").split(",")
                                        if d.strip()})),
            route53_enabled=_flag(env, "UNIFY_ROUTE53_ENABLED", False),
            policy=env.get("UNIFY_ROUTE53_POLICY", "") or "sync",
            zones=tuple(z.strip().rstrip(".").lower() for z in
                        env.get("UNIFY_ROUTE53_ZONES", "").split(",") if z.strip()),
            zone_ids=tuple(z.strip().removeprefix("/hostedzone/") for z in
                           env.get("UNIFY_ROUTE53_ZONE_IDS", "").split(",") if z.strip()),
            zone_ttl=env_float(env, "UNIFY_ROUTE53_ZONE_TTL", 600.0),
            owner_id=env.get("UNIFY_DNS_OWNER_ID", "") or "unify",
            route53_resync=env_float(env, "UNIFY_ROUTE53_RESYNC", 300.0),
            route53_lock=_flag(env, "UNIFY_ROUTE53_LOCK", False),
            lock_key=env.get("UNIFY_ROUTE53_LOCK_KEY", "") or "unify/locks/dns411-route53",
            lock_ttl=env_float(env, "UNIFY_ROUTE53_LOCK_TTL", 15.0),
            max_attempts=env_int(env, "UNIFY_ROUTE53_MAX_ATTEMPTS", 8),
            backoff_max=env_float(env, "UNIFY_ROUTE53_BACKOFF_MAX", 20.0),
            tick=env_float(env, "UNIFY_DNS411_TICK", 30.0),
            replica_every=env_float(env, "UNIFY_DNS411_REPLICA_EVERY", 30.0),
            debounce=env_float(env, "UNIFY_DNS411_DEBOUNCE", 0.05),
            health_addr=health_addr(default_port=9103, env=env),
        )
