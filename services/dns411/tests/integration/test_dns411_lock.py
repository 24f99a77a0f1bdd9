"""One Route 53 writer at a time, through a real Consul session lock."""

from __future__ import annotations

import nats
from dns411_support import OWN, Collected, create_zone, managed_settings, state, zone_records

from dns411.apply.lock import WriterLock
from dns411.apply.route53 import Route53Sink
from dns411.reconciler import Reconciler
from dns411.service import Dns411
from tests.fixtures.catalog import make_instance, put_instance
from unify_common.consulio import make_consul
from unify_common.settings import CommonSettings
from unify_testkit import returns
from unify_testkit.aio import wait_until

KEY = "unify/locks/dns411-route53"


def web(address: str):
    return make_instance("web", "web-1", address, 80, ["dns=example.com"])




async def test_only_the_lock_holder_writes(tmp_path, consul_http_addr, route53):
    zone = create_zone(route53, "example.com")
    common = CommonSettings(consul_addr=consul_http_addr)
    client_a, client_b = make_consul(common), make_consul(common)
    lock_a = WriterLock(client_a, key=KEY, holder="a", ttl_s=10)
    won = []
    lock_b = WriterLock(client_b, key=KEY, holder="b", ttl_s=10,
                        on_acquired=lambda: won.append("b"))
    settings = managed_settings(tmp_path, dnsmasq_enabled=False, route53_enabled=True)
    publish_b = Collected()
    rec_a = Reconciler(settings, node="a", route53=Route53Sink(route53))
    rec_b = Reconciler(settings, node="b", route53=Route53Sink(route53), publish=publish_b)
    rec_a.lock, rec_b.lock = lock_a, lock_b
    try:
        assert await lock_a.step() is True
        assert await lock_b.step() is False
        _, entry = await client_a.kv.get(KEY)
        assert (entry["Value"], entry["Session"]) == (b"a", lock_a.session_id)

        await rec_b(state(web("10.0.0.2")))            # standby: Route 53 untouched
        assert zone_records(route53, zone) == []
        assert publish_b.events[-1][1].detail == "dnsmasq=off route53=standby"
        await rec_a(state(web("10.0.0.1")))
        assert zone_records(route53, zone) == [
            ("_dns411-a.web.example.com.", "TXT", 30, (OWN,)),
            ("web.example.com.", "A", 30, ("10.0.0.1",))]

        await lock_a.release()                         # holder stops: b takes over
        assert await lock_b.step() is True and won == ["b"]
        assert await lock_a.step() is False
        await rec_b(state(web("10.0.0.2")))
        assert zone_records(route53, zone) == [
            ("_dns411-a.web.example.com.", "TXT", 30, (OWN,)),
            ("web.example.com.", "A", 30, ("10.0.0.2",))]
    finally:
        for lock, client in ((lock_a, client_a), (lock_b, client_b)):
            await lock.release()
            await client.http.close()


async def test_standby_service_takes_over_and_heals(tmp_path, consul_http_addr, nats_server,
                                                    route53):
    zone = create_zone(route53, "example.com")
    nc = await nats.connect(nats_server.url)
    base = CommonSettings(consul_addr=consul_http_addr, nats_urls=(nats_server.url,))
    await put_instance(nc.jetstream(), base, web("10.0.0.1"))
    services = []
    for node in ("edge-a", "edge-b"):
        common = CommonSettings(consul_addr=consul_http_addr, nats_urls=(nats_server.url,),
                                node=node)
        settings = managed_settings(tmp_path / node, dnsmasq_enabled=False,
                                    route53_enabled=True, route53_lock=True, lock_ttl=10,
                                    route53_resync=300.0)
        service = Dns411(settings, common, route53_client=route53)
        await service.start()
        services.append(service)
    first, second = services
    try:
        assert first.reconciler.lock.holding and not second.reconciler.lock.holding
        await wait_until(lambda: assert_web(route53, zone), returns)
        await first.stop()
        # delete the A record by hand: only a takeover reconcile (no catalog change) heals it
        route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{
            "Action": "DELETE", "ResourceRecordSet": {
                "Name": "web.example.com.", "Type": "A", "TTL": 30,
                "ResourceRecords": [{"Value": "10.0.0.1"}]}}]})
        await wait_until(lambda: assert_web(route53, zone), returns, timeout=30)
        assert second.reconciler.lock.holding
    finally:
        for service in services:
            await service.stop()
        await nc.close()


def assert_web(client, zone):
    assert zone_records(client, zone) == [
        ("_dns411-a.web.example.com.", "TXT", 30, (OWN,)),
        ("web.example.com.", "A", 30, ("10.0.0.1",))]
