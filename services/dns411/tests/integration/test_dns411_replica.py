"""Replica mode: a second node serves through its dnsmasq what the primary wrote to Route 53."""

from __future__ import annotations

from dns411_support import both, create_zone, managed_settings

from dns411.apply.dnsmasq import DnsmasqSink
from dns411.apply.dnsmasq_process import ManagedDnsmasq
from dns411.apply.route53 import Route53Sink
from dns411.reconciler import Reconciler
from dns411.replica import Replica
from tests.fixtures.catalog import make_instance
from unify_common.catalog import CatalogState
from unify_testkit import returns
from unify_testkit.aio import wait_until

WEB = make_instance("web", "web-1", "10.0.0.1", 80, ["dns=example.com"])
SHOP = make_instance("shop", "shop-1", "10.0.1.1", 80, ["dns=example.com", "vhost=shop"])
HAPROXY = make_instance("haproxy", "hp-1", "10.0.9.1", 80, ["dns=example.com"])


def gone(port):
    assert both(port, "web.example.com") == ("REFUSED", [])


def put(client, zone, name, rtype, value):
    client.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{
        "Action": "CREATE", "ResourceRecordSet": {"Name": name, "Type": rtype, "TTL": 300,
                                                  "ResourceRecords": [{"Value": value}]}}]})


async def test_replica_serves_owned_route53_records(tmp_path, route53):
    zone = create_zone(route53, "example.com")
    put(route53, zone, "hand.example.com.", "A", "10.7.7.7")  # not dns411's: not replicated
    primary = Reconciler(managed_settings(tmp_path / "primary", route53_enabled=True,
                                          dnsmasq_enabled=False),
                         node="n1", route53=Route53Sink(route53))
    await primary(CatalogState(instances={i.key: i for i in (WEB, SHOP, HAPROXY)}))

    settings = managed_settings(tmp_path / "replica", mode="replica")
    control = ManagedDnsmasq(settings)
    replica = Replica(settings, route53=Route53Sink(route53),
                      dnsmasq=DnsmasqSink(settings, control))
    try:
        assert replica.sync_once().method == "restart"
        assert both(settings.port, "shop.example.com") == ("NOERROR", [
            ("haproxy.example.com.", "A", 30, "10.0.9.1"),
            ("shop.example.com.", "CNAME", 30, "haproxy.example.com.")])
        assert both(settings.port, "web.example.com") == ("NOERROR", [
            ("web.example.com.", "A", 30, "10.0.0.1")])
        assert both(settings.port, "hand.example.com") == ("REFUSED", [])
        assert replica.sync_once().method == "unchanged"

        await primary(CatalogState(instances={i.key: i for i in (SHOP, HAPROXY)}))
        assert replica.sync_once().method == "reload"
        await wait_until(lambda: gone(settings.port), returns)
    finally:
        control.stop()
