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
``UNIFY_DNSMASQ_ENABLED``       write dnsmasq files (a boolean)              ``1``
``UNIFY_DNSMASQ_HOSTS``         the addn-hosts file dns411 writes            ``/var/lib/unify/dnsmasq/dns411.hosts``
``UNIFY_DNSMASQ_CONF_DIR``      dnsmasq's conf-dir (``*.conf`` read)         ``/var/lib/unify/dnsmasq/conf.d``
``UNIFY_DNSMASQ_CONF_NAME``     dns411's file name in the conf-dir           ``dns411.conf``
``UNIFY_DNSMASQ_BIN``           dnsmasq binary                               ``dnsmasq``
``UNIFY_DNSMASQ_MANAGE``        true: dns411 runs dnsmasq as its child       ``0``
``UNIFY_DNSMASQ_PORT``          port of the managed dnsmasq                  ``53``
``UNIFY_DNSMASQ_LISTEN``        listen address of the managed dnsmasq        ``127.0.0.1``
``UNIFY_DNSMASQ_USER``          ``--user`` of the managed dnsmasq            (dnsmasq's)
``UNIFY_DNSMASQ_PIDFILE``       pid file of an unmanaged dnsmasq to signal   (none)
``UNIFY_DNSMASQ_RESTART_CMD``   command restarting an unmanaged dnsmasq      (none)
``UNIFY_CONSUL_DNS_ADDR``       ``<ip>[:port]``: forward ``.consul`` there    (none)
``UNIFY_DNS_LOCAL_DOMAINS``     comma-separated domains dnsmasq answers       (none)
                                alone (``local=``): unknown names in them
                                get NXDOMAIN, never REFUSED or forwarded
``UNIFY_ROUTE53_ENABLED``       write Route 53 (a boolean)                   ``0``
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
``UNIFY_ROUTE53_LOCK``          true: only the holder of a Consul session    ``0``
                                lock writes Route 53 (needs Consul)
``UNIFY_ROUTE53_LOCK_KEY``      the lock's KV key                            ``unify/locks/dns411-route53``
``UNIFY_ROUTE53_LOCK_TTL``      session TTL, seconds (10-86400)              ``15``
``UNIFY_ROUTE53_MAX_ATTEMPTS``  tries per API call in all (botocore's         ``8``
                                ``total_max_attempts``), on throttling,
                                ``PriorRequestNotComplete``, 5xx and lost
                                connections
``UNIFY_ROUTE53_RETRY_MODE``    botocore's retry mode: ``standard`` or       ``standard``
                                ``adaptive`` (also slows this client's
                                requests down while Route 53 throttles)
``UNIFY_DNS411_TICK``           dns411's periodic resync: seconds after a    ``30``
                                reconcile before the next one although the
                                catalog is quiet (restarts a dead dnsmasq
                                child, heals Route 53 drift); 0: never;
                                ``UNIFY_RESYNC`` does not apply to dns411
``UNIFY_DNS411_REPLICA_EVERY``  replica mode: seconds between reads          ``30``
``UNIFY_DNS411_DEBOUNCE``       seconds of quiet after a catalog change       ``0.05``
                                before a reconcile (0..1; a burst gives one
                                reconcile, so one dnsmasq restart)
``UNIFY_DNS411_STATE_BUCKET``   NATS KV bucket where each node puts what it   ``unify-dns411``
                                serves (read by ``unify dns list``)
``UNIFY_HEALTH_ADDR``           ``host:port`` of ``/livez``, ``/readyz``      ``127.0.0.1:9103``
                                and ``/metrics`` (port 0: any free port)
``UNIFY_VERDICT_BUCKET``        switchboard's per-vhost verdicts (NATS KV):  ``unify-switchboard-verdicts``
                                no CNAME for a name a live switchboard
                                rejects (same variable as switchboard's)
==============================  ==========================================  =================

Route 53 is reached with the AWS SDK's own variables
(``AWS_REGION``/``AWS_DEFAULT_REGION``, credentials, ``AWS_ENDPOINT_URL_ROUTE_53`` or
``AWS_ENDPOINT_URL`` for a stand-in such as moto), read by boto3 itself; retries and their
backoff are botocore's (``UNIFY_ROUTE53_RETRY_MODE``): truncated binary exponential backoff
with full jitter, 1 s base for throttling errors, 50 ms for other transient errors, at most
20 s a wait. Booleans take the one dialect of :mod:`unify_common.settings`; an empty variable
means its default.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, field_validator, model_validator
from pydantic_settings import NoDecode

from unify_common.dnslisting import STATE_BUCKET
from unify_common.settings import CommaList, EnvSettings, HostPort, bucket_name, env_var

from .plan import POLICIES
from .render import consul_server_line

__all__ = ["Dns411Settings"]

_OWNER_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_ZONE_ID_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")
_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_DOMAIN_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(?:\.(?!-)[a-z0-9-]{1,63}(?<!-))*$")


def _paths(raw: Any) -> Any:
    if isinstance(raw, str):
        return tuple(Path(part.strip()) for part in raw.split(",") if part.strip())
    return raw


def _command(raw: Any) -> Any:
    return tuple(shlex.split(raw)) if isinstance(raw, str) else raw


class Dns411Settings(EnvSettings):
    """Everything dns411 needs besides the connection settings (see the module doc); the
    constructor takes the field names, :meth:`from_env` the variables.

    :raises ValueError: naming the first bad variable.
    """

    mode: str = env_var("UNIFY_DNS411_MODE", "primary")
    ttl: int = env_var("UNIFY_DNS_TTL", 30)
    haproxy_service: str = env_var("UNIFY_HAPROXY_SERVICE", "haproxy")
    haproxy_label: str = env_var("UNIFY_HAPROXY_LABEL", "haproxy")
    static_prefix: str = env_var("UNIFY_DNS_STATIC_PREFIX", "unify/dns/")
    static_files: Annotated[tuple[Path, ...], NoDecode, BeforeValidator(_paths)] = env_var(
        "UNIFY_DNS_STATIC_FILES", ())
    dnsmasq_enabled: bool = env_var("UNIFY_DNSMASQ_ENABLED", True)
    hosts_path: Path = env_var("UNIFY_DNSMASQ_HOSTS", Path("/var/lib/unify/dnsmasq/dns411.hosts"))
    conf_dir: Path = env_var("UNIFY_DNSMASQ_CONF_DIR", Path("/var/lib/unify/dnsmasq/conf.d"))
    conf_name: str = env_var("UNIFY_DNSMASQ_CONF_NAME", "dns411.conf")
    dnsmasq_bin: str = env_var("UNIFY_DNSMASQ_BIN", "dnsmasq")
    manage: bool = env_var("UNIFY_DNSMASQ_MANAGE", False)
    port: int = env_var("UNIFY_DNSMASQ_PORT", 53, ge=1, le=65535)
    listen: str = env_var("UNIFY_DNSMASQ_LISTEN", "127.0.0.1")
    user: str = env_var("UNIFY_DNSMASQ_USER", "")
    pid_file: Path | None = env_var("UNIFY_DNSMASQ_PIDFILE", None)
    restart_cmd: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_command)] = env_var(
        "UNIFY_DNSMASQ_RESTART_CMD", ())
    consul_dns: str = env_var("UNIFY_CONSUL_DNS_ADDR", "")
    local_domains: CommaList = env_var("UNIFY_DNS_LOCAL_DOMAINS", ())
    route53_enabled: bool = env_var("UNIFY_ROUTE53_ENABLED", False)
    policy: str = env_var("UNIFY_ROUTE53_POLICY", "sync")
    zones: CommaList = env_var("UNIFY_ROUTE53_ZONES", ())
    zone_ids: CommaList = env_var("UNIFY_ROUTE53_ZONE_IDS", ())
    zone_ttl: float = env_var("UNIFY_ROUTE53_ZONE_TTL", 600.0)
    owner_id: str = env_var("UNIFY_DNS_OWNER_ID", "unify")
    route53_resync: float = env_var("UNIFY_ROUTE53_RESYNC", 300.0, ge=0)
    route53_lock: bool = env_var("UNIFY_ROUTE53_LOCK", False)
    lock_key: str = env_var("UNIFY_ROUTE53_LOCK_KEY", "unify/locks/dns411-route53")
    lock_ttl: float = env_var("UNIFY_ROUTE53_LOCK_TTL", 15.0, ge=10, le=86400)
    max_attempts: int = env_var("UNIFY_ROUTE53_MAX_ATTEMPTS", 8)
    retry_mode: str = env_var("UNIFY_ROUTE53_RETRY_MODE", "standard")
    tick: float = env_var("UNIFY_DNS411_TICK", 30.0, ge=0)
    replica_every: float = env_var("UNIFY_DNS411_REPLICA_EVERY", 30.0, gt=0)
    debounce: float = env_var("UNIFY_DNS411_DEBOUNCE", 0.05)
    state_bucket: str = env_var("UNIFY_DNS411_STATE_BUCKET", STATE_BUCKET)
    health_addr: HostPort = env_var("UNIFY_HEALTH_ADDR", ("127.0.0.1", 9103))
    #: switchboard's verdict bucket (:mod:`dns411.verdict_mirror`), read only
    verdict_bucket: str = env_var("UNIFY_VERDICT_BUCKET", "unify-switchboard-verdicts")

    @field_validator("verdict_bucket")
    @classmethod
    def _verdict_bucket(cls, value: str) -> str:
        return bucket_name(value, "UNIFY_VERDICT_BUCKET")

    @property
    def conf_path(self) -> Path:
        """dns411's file in the conf-dir."""
        return self.conf_dir / self.conf_name

    @field_validator("local_domains")
    @classmethod
    def _domains(cls, domains: tuple[str, ...]) -> tuple[str, ...]:
        normalised = sorted({d.strip().lower().rstrip(".") for d in domains if d.strip()})
        for domain in normalised:
            if not _DOMAIN_RE.match(domain):
                raise ValueError(f"UNIFY_DNS_LOCAL_DOMAINS: not a domain name: {domain!r}")
        return tuple(normalised)

    @field_validator("zones")
    @classmethod
    def _zones(cls, zones: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(z.strip().rstrip(".").lower() for z in zones if z.strip())

    @field_validator("zone_ids")
    @classmethod
    def _zone_ids(cls, zone_ids: tuple[str, ...]) -> tuple[str, ...]:
        zone_ids = tuple(z.strip().removeprefix("/hostedzone/") for z in zone_ids if z.strip())
        for zone_id in zone_ids:
            if not _ZONE_ID_RE.match(zone_id):
                raise ValueError(f"UNIFY_ROUTE53_ZONE_IDS: not a hosted zone id: {zone_id!r}")
        return zone_ids

    @model_validator(mode="after")
    def _check(self) -> Dns411Settings:
        if self.mode not in ("primary", "replica"):
            raise ValueError(f"UNIFY_DNS411_MODE must be primary or replica, got {self.mode!r}")
        if not 0 <= self.ttl <= 2147483647:
            raise ValueError("UNIFY_DNS_TTL must be 0..2147483647 seconds")
        if self.policy not in POLICIES:
            raise ValueError(f"UNIFY_ROUTE53_POLICY must be one of {', '.join(POLICIES)}")
        if not _OWNER_RE.match(self.owner_id):
            raise ValueError("UNIFY_DNS_OWNER_ID must be 1-64 of letters, digits, '.', '_', '-'")
        bucket_name(self.state_bucket, "UNIFY_DNS411_STATE_BUCKET")
        if not _LABEL_RE.match(self.haproxy_label):
            raise ValueError("UNIFY_HAPROXY_LABEL must be one DNS label")
        if not self.conf_name.endswith(".conf") or "/" in self.conf_name:
            raise ValueError("UNIFY_DNSMASQ_CONF_NAME must be a file name ending in .conf")
        if self.consul_dns:
            consul_server_line(self.consul_dns)
        if self.zone_ttl < 0:
            raise ValueError("UNIFY_ROUTE53_ZONE_TTL must be 0 or more seconds")
        if not 0 <= self.debounce <= 1:
            raise ValueError("UNIFY_DNS411_DEBOUNCE must be 0..1 seconds")
        if self.max_attempts < 1:
            raise ValueError("UNIFY_ROUTE53_MAX_ATTEMPTS must be at least 1")
        if self.retry_mode not in ("standard", "adaptive"):
            raise ValueError("UNIFY_ROUTE53_RETRY_MODE must be standard or adaptive, got "
                             f"{self.retry_mode!r}")
        return self
