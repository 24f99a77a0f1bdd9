"""The core slice end to end: catalog in NATS -> dns411 -> real dnsmasq and Route 53 (moto)."""

from __future__ import annotations

import msgspec
import nats
from dns411_support import OWN, both, create_zone, managed_settings, route53_client, zone_records
from fault_proxy import is_change, is_listing, is_zone_list, is_zone_read

from dns411.service import Dns411
from tests.fixtures.catalog import delete_instance, make_instance, put_instance
from unify_common.events import KvEntry, decode_event
from unify_testkit import returns
from unify_testkit.aio import wait_until

WEB_A = make_instance("web", "web-1", "10.0.0.1", 8080, ["dns=example.com"])
WEB_B = make_instance("web", "web-2", "10.0.0.2", 8080, ["dns=example.com"], node="node-2")
WEB_V6 = make_instance("web", "web-3", "2001:db8::3", 8080, ["dns=example.com"], node="node-3")
SHOP = make_instance("shop", "shop-1", "10.0.1.1", 80, ["dns=example.com", "vhost=shop"])
HAPROXY = make_instance("haproxy", "hp-1", "10.0.9.1", 80, ["dns=example.com"])
BAD = make_instance("api", "api-1", "10.0.0.7", 80, ["dns=example.com", "vhost=a b"])


async def test_catalog_to_dnsmasq_and_route53(tmp_path, dns_common, route53):
    zone = create_zone(route53, "example.com")
    settings = managed_settings(tmp_path, route53_enabled=True)
    nc = await nats.connect(dns_common.nats_urls[0])
    events = []

    async def collect(msg):
        events.append((msg.subject, decode_event(msg.data)))

    await nc.subscribe("unify.applied.>", cb=collect)
    await nc.subscribe("unify.error.>", cb=collect)
    js = nc.jetstream()
    for inst in (WEB_A, WEB_B, SHOP, HAPROXY, BAD):
        await put_instance(js, dns_common, inst)

    service = Dns411(settings, dns_common, route53_client=route53)
    await service.start()
    port = settings.port
    try:
        await wait_until(lambda: assert_web(port, ["10.0.0.1", "10.0.0.2"]), returns)
        assert both(port, "shop.example.com") == ("NOERROR", [
            ("haproxy.example.com.", "A", 30, "10.0.9.1"),
            ("shop.example.com.", "CNAME", 30, "haproxy.example.com.")])
        assert both(port, "WEB.Example.COM") == ("NOERROR", [
            ("WEB.Example.COM.", "A", 30, "10.0.0.1"), ("WEB.Example.COM.", "A", 30, "10.0.0.2")])
        await wait_until(lambda: assert_zone(route53, zone, [
            ("_dns411-a.haproxy.example.com.", "TXT", 30, (OWN,)),
            ("_dns411-a.web.example.com.", "TXT", 30, (OWN,)),
            ("_dns411-cname.shop.example.com.", "TXT", 30, (OWN,)),
            ("haproxy.example.com.", "A", 30, ("10.0.9.1",)),
            ("shop.example.com.", "CNAME", 30, ("haproxy.example.com.",)),
            ("web.example.com.", "A", 30, ("10.0.0.1", "10.0.0.2")),
        ]), returns)
        def reported():
            errors = [e for s, e in events if s == "unify.error.dns411"]
            assert [(e.reason, e.service, e.instance_id) for e in errors] == [
                ("invalid-tags", "api", "api-1")]
            applied = [e for s, e in events if s == "unify.applied.dns411.test-node"]
            assert [(e.source, e.node) for e in applied[-1:]] == [("dns411", "test-node")]
        await wait_until(reported, returns)

        # scale down {A, B} -> {A}
        await delete_instance(js, dns_common, WEB_B)
        await wait_until(lambda: assert_web(port, ["10.0.0.1"]), returns)
        await wait_until(lambda: assert_r53(route53, zone, "web.example.com.", ("10.0.0.1",)), returns)

        # IPv6 instance -> AAAA in both places
        await put_instance(js, dns_common, WEB_V6)
        await wait_until(lambda: assert_r53(route53, zone, "web.example.com.", ("2001:db8::3",),
                                            rtype="AAAA"), returns)
        assert both(port, "web.example.com", "AAAA") == ("NOERROR", [
            ("web.example.com.", "AAAA", 30, "2001:db8::3")])

        # HAProxy goes: the vhost's CNAME would dangle; it stays (in Route 53 too), reported
        await delete_instance(js, dns_common, HAPROXY)
        def dangling():
            errors = [e for s, e in events if s == "unify.error.dns411"]
            assert [(e.reason, e.service, e.message) for e in errors[1:]] == [(
                "cname-target-missing", "shop", "shop.example.com (service shop) is a CNAME to "
                "haproxy.example.com, which has no record: no passing instance of service "
                "'haproxy' carries dns=example.com (nor does a static record name it), so "
                "shop.example.com resolves to nothing until one does")]
            assert_r53(route53, zone, "haproxy.example.com.", None)
            assert_r53(route53, zone, "shop.example.com.", ("haproxy.example.com.",),
                       rtype="CNAME")
        await wait_until(dangling, returns)

        # everything deregistered -> nothing answers, Route 53 keeps only NS/SOA
        for inst in (WEB_A, WEB_V6, SHOP, BAD):
            await delete_instance(js, dns_common, inst)
        await wait_until(lambda: assert_gone(port), returns)
        await wait_until(lambda: assert_r53_empty(route53, zone), returns)
    finally:
        await service.stop()
        await nc.close()


def assert_web(port, addresses):
    rcode, rows = both(port, "web.example.com")
    assert (rcode, rows) == ("NOERROR", [("web.example.com.", "A", 30, a) for a in addresses])


def assert_r53(client, zone, name, values, rtype="A"):
    got = {(n, t): v for n, t, _, v in zone_records(client, zone)}
    assert got.get((name, rtype)) == values


def assert_zone(client, zone, expected):
    assert zone_records(client, zone) == expected


def assert_r53_empty(client, zone):
    assert zone_records(client, zone) == []


def assert_gone(port):
    assert both(port, "web.example.com") == ("REFUSED", [])
    assert both(port, "shop.example.com") == ("REFUSED", [])


async def test_quiet_catalog_ticks_restart_dnsmasq_and_heal_route53(tmp_path, dns_common,
                                                                    route53):
    zone = create_zone(route53, "example.com")
    settings = managed_settings(tmp_path, route53_enabled=True, tick=0.3, route53_resync=0.5)
    nc = await nats.connect(dns_common.nats_urls[0])
    await put_instance(nc.jetstream(), dns_common, WEB_A)
    service = Dns411(settings, dns_common, route53_client=route53)
    await service.start()
    try:
        await wait_until(lambda: assert_web(settings.port, ["10.0.0.1"]), returns)
        child = service.reconciler.dnsmasq.control
        first_pid = child.pid
        child.proc.kill()  # dnsmasq dies (dns411 started it: its own child)
        child.proc.wait(5)
        await wait_until(lambda: assert_web(settings.port, ["10.0.0.1"]), returns)
        assert child.pid not in (None, first_pid)
        await wait_until(lambda: assert_r53(route53, zone, "web.example.com.", ("10.0.0.1",)), returns)
        route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{
            "Action": "DELETE", "ResourceRecordSet": {
                "Name": "web.example.com.", "Type": "A", "TTL": 30,
                "ResourceRecords": [{"Value": "10.0.0.1"}]}}]})
        await wait_until(lambda: assert_r53(route53, zone, "web.example.com.", ("10.0.0.1",)), returns)
    finally:
        await service.stop()
        await nc.close()


async def test_consul_kv_static_record_through_the_catalog_bucket(tmp_path, dns_common):
    """A KV entry as consul-bridge stores it (``k.<hash>`` in the catalog bucket) resolves."""
    settings = managed_settings(tmp_path)
    nc = await nats.connect(dns_common.nats_urls[0])
    js = nc.jetstream()
    await put_instance(js, dns_common, WEB_A)  # creates stream and bucket
    bucket = await js.key_value(dns_common.catalog_bucket)
    entry = KvEntry(key="unify/dns/db.example.com", value="192.0.2.7", modify_index=5)
    await bucket.put(entry.catalog_key, msgspec.json.encode(entry))
    service = Dns411(settings, dns_common)
    await service.start()
    try:
        await wait_until(lambda: assert_answer(settings.port, "db.example.com", "192.0.2.7"), returns)
        await bucket.delete(entry.catalog_key)  # the bucket change alone wakes dns411
        await wait_until(lambda: assert_refused(settings.port, "db.example.com"), returns)
    finally:
        await service.stop()
        await nc.close()


def assert_answer(port, name, address):
    assert both(port, name) == ("NOERROR", [(name + ".", "A", 30, address)])


def assert_refused(port, name):
    assert both(port, name) == ("REFUSED", [])



async def test_zones_are_discovered_at_start_not_in_the_first_reconcile(tmp_path, dns_common,
                                                                       fault_proxy):
    admin = route53_client(fault_proxy.upstream)
    zone = create_zone(admin, "example.com")
    nc = await nats.connect(dns_common.nats_urls[0])
    await put_instance(nc.jetstream(), dns_common, WEB_A)
    # resync 300 s: a second reconcile of the same catalog (if any) makes no call at all
    settings = managed_settings(tmp_path, route53_enabled=True, dnsmasq_enabled=False, tick=0,
                                route53_resync=300.0)
    service = Dns411(settings, dns_common, route53_client=route53_client(fault_proxy.url))

    def calls():
        return tuple(fault_proxy.count(p) for p in (is_zone_list, is_zone_read, is_listing,
                                                      is_change))

    def reconciled():
        assert service.subscriber.reconciles >= 1

    try:
        await service.start()  # discovery runs in the background, dnsmasq never waits for it
        await wait_until(reconciled, returns)
        assert calls() == (1, 0, 1, 1)
        # discovery first and on its own; the reconcile: one listing, one change batch
        assert [is_zone_list(m, p, b) for m, p, b, _ in fault_proxy.requests] == [
            True, False, False]
        assert service.reconciler.route53.discovery_calls == 1
        assert zone_records(admin, zone) == [
            ("_dns411-a.web.example.com.", "TXT", 30, (OWN,)),
            ("web.example.com.", "A", 30, ("10.0.0.1",))]
    finally:
        await service.stop()
        await nc.close()


async def test_unreachable_route53_never_delays_dnsmasq(tmp_path, dns_common):
    import time

    from unify_testkit.devstack.process import free_port

    nc = await nats.connect(dns_common.nats_urls[0])
    await put_instance(nc.jetstream(), dns_common, WEB_A)
    # every Route 53 call is refused (nothing listens) and retried by botocore: 8 tries,
    # waits of at most 0.05 * 2**i s (connection errors), so up to ~6.4 s
    settings = managed_settings(tmp_path, route53_enabled=True, tick=0, max_attempts=8)
    service = Dns411(settings, dns_common,
                     route53_client=route53_client(f"http://127.0.0.1:{free_port()}"))
    try:
        started = time.monotonic()
        await service.start()
        assert time.monotonic() - started < 1.0  # zone discovery does not hold the start
        await wait_until(lambda: assert_web(settings.port, ["10.0.0.1"]), returns, timeout=10.0)
    finally:
        await service.stop()
        await nc.close()
