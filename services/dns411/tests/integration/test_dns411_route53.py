"""Route 53 through moto's server (and a fault proxy in front of it): ownership, policies,
healing, listings per reconcile, batching, rejected changes, throttling."""

from __future__ import annotations

import time

import pytest
from dns411_support import (
    OWN,
    Collected,
    create_zone,
    managed_settings,
    route53_client,
    state,
    zone_records,
)
from fault_proxy import is_change, is_listing, is_zone_list, is_zone_read

from dns411.apply.route53 import Route53Sink, ZoneNotFound
from dns411.reconciler import ApplyFailed, Reconciler
from tests.fixtures.catalog import make_instance
from unify_testkit.poll import wait_until

OTHER = '"heritage=unify-dns411,owner=someone-else"'



def web(n: int, domain: str = "example.com"):
    return make_instance("web", f"web-{n}", f"10.0.{n // 250}.{n % 250 + 1}", 80,
                         [f"dns={domain}"], node=f"n{n}")


def svc(name: str, address: str, *tags: str):
    return make_instance(name, f"{name}-1", address, 80, list(tags) or ["dns=example.com"])



def make(tmp_path, client, **overrides):
    settings = managed_settings(tmp_path, dnsmasq_enabled=False, route53_enabled=True,
                                **overrides)
    sink = Route53Sink(client, zone_ids=settings.zone_ids, zone_ttl=settings.zone_ttl)
    publish = Collected()
    return Reconciler(settings, node="n1", route53=sink, publish=publish), publish


def put(client, zone, name, rtype, value, action="CREATE"):
    client.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{
        "Action": action, "ResourceRecordSet": {"Name": name, "Type": rtype, "TTL": 300,
                                                "ResourceRecords": [{"Value": value}]}}]})


async def test_foreign_and_other_owner_records_are_never_touched(tmp_path, route53):
    zone = create_zone(route53, "example.com")
    put(route53, zone, "web.example.com.", "A", "10.9.9.9")           # by hand, no owner
    put(route53, zone, "api.example.com.", "A", "10.8.8.8")           # another dns411
    put(route53, zone, "_dns411-a.api.example.com.", "TXT", OTHER)
    put(route53, zone, "mail.example.com.", "A", "10.7.7.7")          # not desired, by hand
    reconciler, publish = make(tmp_path, route53)
    await reconciler(state(svc("web", "10.0.0.1"), svc("api", "10.0.0.2")))
    assert zone_records(route53, zone) == [
        ("_dns411-a.api.example.com.", "TXT", 300, (OTHER,)),
        ("api.example.com.", "A", 300, ("10.8.8.8",)),
        ("mail.example.com.", "A", 300, ("10.7.7.7",)),
        ("web.example.com.", "A", 300, ("10.9.9.9",)),
    ]
    assert publish.errors() == [  # new problems in Problem order (reason first)
        ("not-owned", "web.example.com A exists without a dns411 ownership record; left alone"),
        ("owned-by-other", "api.example.com A belongs to owner someone-else; left alone"),
    ]
    await reconciler(state())  # sync deletes only what it owns: nothing here
    assert len(zone_records(route53, zone)) == 4


@pytest.mark.parametrize(("policy", "left"), [
    pytest.param("sync", [], id="sync-deletes"),
    pytest.param("upsert-only", [("_dns411-a.web.example.com.", "TXT", 30, (OWN,)),
                                 ("web.example.com.", "A", 30, ("10.0.0.2",))],
                 id="upsert-only-keeps"),
])
async def test_policies(tmp_path, route53, policy, left):
    zone = create_zone(route53, "example.com")
    reconciler, _ = make(tmp_path, route53, policy=policy)
    await reconciler(state(svc("web", "10.0.0.1")))
    await reconciler(state(svc("web", "10.0.0.2")))
    assert ("web.example.com.", "A", 30, ("10.0.0.2",)) in zone_records(route53, zone)
    await reconciler(state())
    assert zone_records(route53, zone) == left


async def test_half_deleted_pairs_heal(tmp_path, route53):
    zone = create_zone(route53, "example.com")
    reconciler, _ = make(tmp_path, route53)
    await reconciler(state(svc("web", "10.0.0.1"), svc("old", "10.0.0.5")))
    route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [
        {"Action": "DELETE", "ResourceRecordSet": {"Name": "web.example.com.", "Type": "A",
                                                   "TTL": 30,
                                                   "ResourceRecords": [{"Value": "10.0.0.1"}]}},
        {"Action": "DELETE", "ResourceRecordSet": {"Name": "old.example.com.", "Type": "A",
                                                   "TTL": 30,
                                                   "ResourceRecords": [{"Value": "10.0.0.5"}]}}]})
    await reconciler(state(svc("web", "10.0.0.1")))  # web still wanted, old not
    assert zone_records(route53, zone) == [
        ("_dns411-a.web.example.com.", "TXT", 30, (OWN,)),
        ("web.example.com.", "A", 30, ("10.0.0.1",)),
    ]


async def test_type_change_and_longest_suffix_zone(tmp_path, route53):
    top = create_zone(route53, "example.com")
    dev = create_zone(route53, "dev.example.com")
    reconciler, _ = make(tmp_path, route53)
    www = make_instance("www", "www-1", "10.0.0.1", 80, ["dns=dev.example.com"])
    await reconciler(state(www, svc("api", "10.0.0.2", "dns=badexample.com"),
                           svc("web", "10.0.0.3")))
    assert zone_records(route53, dev) == [
        ("_dns411-a.www.dev.example.com.", "TXT", 30, (OWN,)),
        ("www.dev.example.com.", "A", 30, ("10.0.0.1",))]
    assert zone_records(route53, top) == [
        ("_dns411-a.web.example.com.", "TXT", 30, (OWN,)),
        ("web.example.com.", "A", 30, ("10.0.0.3",))]
    # www becomes a vhost: A pair out, CNAME pair in, one request
    shop = make_instance("shop", "shop-1", "10.0.0.9", 80, ["dns=dev.example.com", "vhost=www"])
    await reconciler(state(shop, svc("web", "10.0.0.3")))
    assert zone_records(route53, dev) == [
        ("_dns411-cname.www.dev.example.com.", "TXT", 30, (OWN,)),
        ("www.dev.example.com.", "CNAME", 30, ("haproxy.dev.example.com.",))]


async def test_one_listing_per_zone_per_reconcile(tmp_path, fault_proxy):
    admin = route53_client(fault_proxy.upstream)
    create_zone(admin, "example.com")
    create_zone(admin, "example.org")
    reconciler, _ = make(tmp_path, route53_client(fault_proxy.url))
    for n in range(3):
        await reconciler(state(web(1), web(2, "example.org"), web(3 + n)))
    zones_listed = fault_proxy.count(lambda m, p, b: m == "GET" and p.split("?")[0].rstrip("/")
                                     .endswith("/hostedzone"))
    assert zones_listed == 1                      # zone ids cached
    assert fault_proxy.count(is_listing) == 6     # 2 zones x 3 reconciles
    assert fault_proxy.count(is_change) == 4      # first: 2 zones; then one per scale step


def calls(proxy) -> tuple[int, int, int, int]:
    """(ListHostedZones, GetHostedZone, ListResourceRecordSets, ChangeResourceRecordSets)
    requests the proxy has seen."""
    return tuple(proxy.count(p) for p in (is_zone_list, is_zone_read, is_listing, is_change))


async def test_zone_discovery_is_a_step_of_its_own(tmp_path, fault_proxy):
    admin = route53_client(fault_proxy.upstream)
    create_zone(admin, "example.com")
    create_zone(admin, "example.org")
    reconciler, _ = make(tmp_path, route53_client(fault_proxy.url))
    await reconciler.discover_zones()  # what the service does at start
    assert calls(fault_proxy) == (1, 0, 0, 0)
    assert reconciler.route53.discovery_calls == 1
    # the first reconcile: one listing per zone, one change batch per zone, nothing else
    await reconciler(state(web(1), web(2, "example.org")))
    assert calls(fault_proxy) == (1, 0, 2, 2)
    await reconciler.discover_zones()  # cached (no zone TTL set): no request
    await reconciler(state(web(1), web(2, "example.org"), web(3)))
    assert calls(fault_proxy) == (1, 0, 4, 3)
    assert (reconciler.route53.discovery_calls, reconciler.route53.api_calls) == (1, 8)


async def test_configured_zone_ids_are_read_once_zones_never_listed(tmp_path, fault_proxy):
    admin = route53_client(fault_proxy.upstream)
    com = create_zone(admin, "example.com")
    org = create_zone(admin, "example.org")
    reconciler, _ = make(tmp_path, route53_client(fault_proxy.url),
                         zone_ids=(com,), zone_ttl=0.001)
    for n in range(2):
        await reconciler(state(web(1), web(2, "example.org"), web(3 + n)))
        await reconciler.discover_zones()
    # one GetHostedZone in all (the zone TTL does not apply to fixed ids); example.org is
    # not configured, so it is neither listed nor written
    assert calls(fault_proxy) == (0, 1, 2, 2)
    assert zone_records(admin, com) == [
        ("_dns411-a.web.example.com.", "TXT", 30, (OWN,)),
        ("web.example.com.", "A", 30, ("10.0.0.2", "10.0.0.5"))]
    assert zone_records(admin, org) == []


async def test_unknown_zone_id_fails_the_route53_apply_by_name(tmp_path, route53):
    create_zone(route53, "example.com")
    reconciler, publish = make(tmp_path, route53, zone_ids=("ZNOSUCHZONE",))
    await reconciler.discover_zones()  # logged, not raised: the reconcile reports it
    with pytest.raises(ApplyFailed, match="route53"):
        await reconciler(state(web(1)))
    assert publish.errors() == [("apply-failed", "route53: ZoneNotFound: "
                                 "UNIFY_ROUTE53_ZONE_IDS: no hosted zone ZNOSUCHZONE")]
    with pytest.raises(ZoneNotFound):
        reconciler.route53.zones()


def test_zone_list_is_read_again_after_its_ttl(route53):
    create_zone(route53, "example.com")
    sink = Route53Sink(route53, zone_ttl=1.0)
    assert sorted(sink.zones().values()) == ["example.com"]
    net = create_zone(route53, "example.net")
    assert sorted(sink.zones().values()) == ["example.com"]  # cached
    assert sink.discovery_calls == 1
    # polled: a read inside the TTL asks Route 53 nothing, the first one after it lists again
    zones = wait_until(sink.zones, lambda seen: net in seen, timeout=10,
                       what="the zone list read again after its TTL")
    assert zones[net] == "example.net"
    assert (sink.discovery_calls, sink.api_calls) == (2, 2)


async def test_changes_batched_under_1000_records(tmp_path, fault_proxy):
    admin = route53_client(fault_proxy.upstream)
    zone = create_zone(admin, "example.com")
    reconciler, _ = make(tmp_path, route53_client(fault_proxy.url))
    instances = [make_instance(f"s{n}", f"s{n}", f"10.1.{n // 250}.{n % 250 + 1}", 80,
                               ["dns=example.com"]) for n in range(1200)]
    await reconciler(state(*instances))
    # each new record set is 2 ResourceRecord elements (record + owner TXT): 500 per request
    assert fault_proxy.count(is_change) == 3
    assert len(zone_records(admin, zone)) == 2400


async def test_rejected_change_is_isolated_and_the_rest_lands(tmp_path, fault_proxy):
    admin = route53_client(fault_proxy.upstream)
    zone = create_zone(admin, "example.com")
    fault_proxy.add_rule(lambda m, p, b: is_change(m, p, b) and b"bad.example.com" in b,
                         times=100, code="InvalidChangeBatch",
                         message="[RRSet with DNS name bad.example.com. is not permitted]")
    reconciler, publish = make(tmp_path, route53_client(fault_proxy.url))
    names = ["a", "b", "bad", "c", "d", "e", "f"]
    with_bad = state(*(svc(n, f"10.0.0.{i + 1}") for i, n in enumerate(names)))
    await reconciler(with_bad)
    assert sorted({r[0] for r in zone_records(admin, zone) if r[1] == "A"}) == [
        f"{n}.example.com." for n in names if n != "bad"]
    assert publish.errors() == [("change-rejected", "bad.example.com A: InvalidChangeBatch: "
                                 "[RRSet with DNS name bad.example.com. is not permitted]")]
    # whole batch, then halves until "bad" stands alone:
    # [a b bad c d e f] -> [a b bad] -> [a] ok, [b bad] -> [b] ok, [bad] -> (its name is
    # free in the zone) [bad as UPSERT] refused too; then [c d e f] ok
    assert [s for m, p, b, s in fault_proxy.requests if is_change(m, p, b)] == [
        400, 400, 200, 400, 200, 400, 400, 200]


def retried(caplog) -> list[tuple[str, int, bool]]:
    """``(call, retries, failed)`` of every "Route 53 call retried" line."""
    return [(r.fields["call"], r.fields["retries"], r.fields["failed"]) for r in caplog.records
            if r.getMessage() == "Route 53 call retried"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("code", ["Throttling", "PriorRequestNotComplete"])
async def test_throttling_is_retried_by_botocore(tmp_path, fault_proxy, code, caplog):
    admin = route53_client(fault_proxy.upstream)
    zone = create_zone(admin, "example.com")
    fault_proxy.add_rule(is_change, times=3, code=code, message="Rate exceeded")
    fault_proxy.add_rule(is_listing, times=1, code=code, message="Rate exceeded")
    reconciler, publish = make(tmp_path, route53_client(fault_proxy.url))  # 8 tries a call
    started = time.monotonic()
    await reconciler(state(svc("web", "10.0.0.1")))
    # botocore's standard mode: waits of rand(0, 1) * 2**i s for throttling codes, so at
    # most 1 + 2 + 4 s for the change and 1 s for the listing
    assert time.monotonic() - started < 8.0 + 2.0
    assert zone_records(admin, zone) == [
        ("_dns411-a.web.example.com.", "TXT", 30, (OWN,)),
        ("web.example.com.", "A", 30, ("10.0.0.1",))]
    assert [s for m, p, b, s in fault_proxy.requests if is_listing(m, p, b)] == [400, 200]
    assert [s for m, p, b, s in fault_proxy.requests if is_change(m, p, b)] == [
        400, 400, 400, 200]
    assert reconciler.route53.api_calls == len(fault_proxy.requests)  # every try counted
    assert retried(caplog) == [("ListResourceRecordSets", 1, False),
                               ("ChangeResourceRecordSets", 3, False)]
    assert publish.errors() == []


async def test_throttling_beyond_attempts_fails_the_reconcile_then_recovers(tmp_path,
                                                                            fault_proxy,
                                                                            caplog):
    admin = route53_client(fault_proxy.upstream)
    zone = create_zone(admin, "example.com")
    fault_proxy.add_rule(is_change, times=3, code="Throttling", message="Rate exceeded")
    reconciler, publish = make(tmp_path, route53_client(fault_proxy.url, max_attempts=3))
    with pytest.raises(ApplyFailed, match="route53"):
        await reconciler(state(svc("web", "10.0.0.1")))
    assert [r for r, _ in publish.errors()] == ["apply-failed"]
    assert [s for m, p, b, s in fault_proxy.requests if is_change(m, p, b)] == [400, 400, 400]
    assert retried(caplog) == [("ChangeResourceRecordSets", 2, True)]
    await reconciler(state(svc("web", "10.0.0.1")))
    assert len(zone_records(admin, zone)) == 2
    assert [s for m, p, b, s in fault_proxy.requests if is_change(m, p, b)] == [
        400, 400, 400, 200]


async def test_unchanged_desired_state_makes_no_api_call_until_resync(tmp_path, fault_proxy):
    admin = route53_client(fault_proxy.upstream)
    create_zone(admin, "example.com")
    reconciler, _ = make(tmp_path, route53_client(fault_proxy.url), route53_resync=300.0)
    await reconciler(state(web(1)))
    before = len(fault_proxy.requests)
    await reconciler(state(web(1)))
    assert len(fault_proxy.requests) == before          # nothing read, nothing written
    await reconciler(state(web(1), web(2)))  # planned against the kept listing
    assert fault_proxy.count(is_listing) == 1 and fault_proxy.count(is_change) == 2


async def test_record_comes_back_after_removal(tmp_path, route53):
    zone = create_zone(route53, "example.com")
    reconciler, publish = make(tmp_path, route53)
    await reconciler(state(svc("web", "10.0.0.1"), svc("zz", "10.0.0.9")))
    await reconciler(state(svc("zz", "10.0.0.9")))
    await reconciler(state(svc("web", "10.0.0.1"), svc("zz", "10.0.0.9")))
    assert [r for r in zone_records(route53, zone) if r[0].startswith("web")] == [
        ("web.example.com.", "A", 30, ("10.0.0.1",))]
    assert publish.errors() == []


async def test_a_domain_without_hosted_zone_is_reported_once_while_it_lasts(tmp_path, route53,
                                                                          caplog):
    caplog.set_level("WARNING", logger="unify.problems")
    top = create_zone(route53, "example.com")
    reconciler, publish = make(tmp_path, route53)
    reconciler.route53.zone_refresh = 0.0  # a new zone is seen at the next reconcile
    catalog = state(svc("web", "10.0.0.1"), svc("api", "10.0.0.2", "dns=nozone.test"),
                    svc("www", "10.0.0.3", "dns=nozone.test", "dns=example.com"))
    await reconciler(catalog)
    await reconciler(catalog)  # a periodic resync: still no zone, nothing new to say
    await reconciler(state(*catalog.instances.values(),  # a change under the same domain
                           svc("db", "10.0.0.4", "dns=nozone.test")))
    message = ("dns=nozone.test: no Route 53 hosted zone covers nozone.test; its records are "
               "not written to Route 53")
    assert publish.errors() == [("no-hosted-zone", message)]
    assert [(r.getMessage(), r.fields) for r in caplog.records] == [
        ("input rejected", {"source": "dns411", "reason": "no-hosted-zone", "message": message,
                            "service": "", "instance_id": ""})]
    assert [name for name, _, _, _ in zone_records(route53, top)] == [
        "_dns411-a.web.example.com.", "_dns411-a.www.example.com.", "web.example.com.",
        "www.example.com."]

    # the zone appears: the records go there and the problem is gone
    nozone = create_zone(route53, "nozone.test")
    await reconciler(catalog)
    assert [name for name, _, _, _ in zone_records(route53, nozone)] == [
        "_dns411-a.api.nozone.test.", "_dns411-a.www.nozone.test.", "api.nozone.test.",
        "www.nozone.test."]
    assert reconciler._r53_problems == []
    assert publish.errors() == [("no-hosted-zone", message)]
