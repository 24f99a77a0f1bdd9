"""Replica mode (``UNIFY_DNS411_MODE=replica``): serve, through dnsmasq, what Route 53 holds.

Every ``UNIFY_DNS411_REPLICA_EVERY`` seconds the managed hosted zones are read (one listing
each) and the record sets owned by ``UNIFY_DNS_OWNER_ID`` are written to the dnsmasq files,
validated and applied exactly as in primary mode. Nodes that must not write Route 53 stay
consistent with the one that does, without reading the catalog. A failed read keeps the
last good files (and is retried at the next tick).
"""

from __future__ import annotations

import asyncio

from unify_common.logs import get_logger
from unify_common.runloop import run_until_stopped
from unify_common.settings import CommonSettings

from .apply.dnsmasq import DnsmasqResult, DnsmasqSink
from .apply.dnsmasq_process import control_for
from .apply.route53 import Route53Sink, sink_for
from .plan import owned_records
from .render import render_conf, render_hosts
from .settings import Dns411Settings

__all__ = ["Replica", "run_replica"]

log = get_logger("dns411.replica")


class Replica:
    """One replica: :meth:`sync_once` reads Route 53 and applies dnsmasq (blocking I/O)."""

    def __init__(self, settings: Dns411Settings, *, route53: Route53Sink,
                 dnsmasq: DnsmasqSink) -> None:
        self.settings = settings
        self.route53 = route53
        self.dnsmasq = dnsmasq

    def sync_once(self) -> DnsmasqResult:
        """Read the zones, apply the owned records to dnsmasq.

        :raises botocore.exceptions.ClientError: / DnsmasqConfigError: nothing was changed.
        """
        wanted = self.settings.zones
        zones = {zid: name for zid, name in self.route53.zones().items()
                 if not wanted or name in wanted or zid.lower() in wanted}
        found = [r for zid in sorted(zones) for r in self.route53.list_zone(zid)]
        records = owned_records(found, self.settings.owner_id)
        hosts = render_hosts(records)
        conf = render_conf(records, ttl=self.settings.ttl, consul_dns=self.settings.consul_dns,
                            local_domains=self.settings.local_domains)
        return self.dnsmasq.apply(hosts, conf)


async def run_replica(settings: Dns411Settings, common: CommonSettings) -> None:
    """Run replica mode until SIGTERM or SIGINT (the one run loop,
    :func:`unify_common.runloop.run_until_stopped`: a second signal exits at once)."""
    replica = Replica(settings, dnsmasq=DnsmasqSink(settings, control_for(settings)),
                      route53=sink_for(settings))

    async def serve() -> None:
        while True:
            try:
                result = await asyncio.to_thread(replica.sync_once)
                if result.did_write:
                    log.info("dnsmasq files applied", method=result.method,
                             steps_ms=result.steps_ms)
                log.debug("replica applied", method=result.method)
            except Exception as err:  # keep the last good files; retry next tick
                log.error("replica sync failed", error=str(err)[:300])
            await asyncio.sleep(settings.replica_every)

    async def start() -> None:
        return None

    async def stop() -> None:
        await asyncio.to_thread(replica.dnsmasq.control.stop)

    await run_until_stopped(start, stop, serve=serve, on_started=lambda: log.info(
        "dns411 replica running", node=common.node))
