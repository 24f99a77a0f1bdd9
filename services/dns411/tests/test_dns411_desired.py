"""Catalog state -> desired records (pure tables)."""

from __future__ import annotations

import pytest

from dns411.desired import build_desired
from dns411.model import RecordSet
from tests.fixtures.catalog import make_instance
from unify_common.catalog import CatalogState
from unify_common.problems import Problem


def state(*instances) -> CatalogState:
    return CatalogState(instances={i.key: i for i in instances})


def rs(name, rtype, *values, ttl=30, origin="catalog"):
    return RecordSet(name, rtype, tuple(values), ttl, origin)


WEB_A = make_instance("web", "web-1", "10.0.0.1", 8080, ["dns=example.com"])
WEB_B = make_instance("web", "web-2", "10.0.0.2", 8080, ["dns=example.com"], node="node-2")
SHOP = make_instance("shop", "shop-1", "10.0.1.1", 80, ["dns=example.com", "vhost=shop"])
HAPROXY_1 = make_instance("haproxy", "hp-1", "10.0.9.1", 80, ["dns=example.com"])
HAPROXY_2 = make_instance("haproxy", "hp-2", "10.0.9.2", 80, ["dns=example.com"], node="n2")

CASES = [
    pytest.param([], [], id="empty-catalog"),
    pytest.param([WEB_A], [rs("web.example.com", "A", "10.0.0.1")], id="one-instance-a"),
    pytest.param([WEB_A, WEB_B], [rs("web.example.com", "A", "10.0.0.1", "10.0.0.2")],
                 id="two-instances-two-values"),
    pytest.param([make_instance("web", "w", "10.0.0.1", 80, ["dns=example.com"],
                                status="critical")], [], id="critical-skipped"),
    pytest.param([make_instance("web", "w", "10.0.0.1", 80, ["dns=example.com"],
                                status="warning")], [], id="warning-skipped"),
    pytest.param([make_instance("web", "w", "10.0.0.1", 80, ["version=3"])], [],
                 id="no-unify-tags"),
    pytest.param([SHOP, HAPROXY_1, HAPROXY_2],
                 [rs("haproxy.example.com", "A", "10.0.9.1", "10.0.9.2"),
                  rs("shop.example.com", "CNAME", "haproxy.example.com")],
                 id="vhost-cname-and-haproxy-a"),
    pytest.param([make_instance("web", "w", "2001:DB8::0:1", 80, ["dns=example.com"])],
                 [rs("web.example.com", "AAAA", "2001:db8::1")], id="ipv6-aaaa"),
    pytest.param([make_instance("Web", "w", "10.0.0.1", 80, ["dns=Example.COM"])],
                 [rs("web.example.com", "A", "10.0.0.1")], id="names-lower-cased"),
    pytest.param([make_instance("web", "w", "10.0.0.1", 80, ["dns=a.com", "dns=b.org"])],
                 [rs("web.a.com", "A", "10.0.0.1"), rs("web.b.org", "A", "10.0.0.1")],
                 id="two-domains"),
    pytest.param([make_instance("shop", "s", "10.0.0.1", 80,
                                ["dns=a.com", "dns=b.org", "vhost=www"]),
                  make_instance("haproxy", "hp", "10.0.9.1", 80, ["dns=a.com", "dns=b.org"])],
                 [rs("haproxy.a.com", "A", "10.0.9.1"), rs("haproxy.b.org", "A", "10.0.9.1"),
                  rs("www.a.com", "CNAME", "haproxy.a.com"),
                  rs("www.b.org", "CNAME", "haproxy.b.org")], id="vhost-two-domains"),
    pytest.param([WEB_A, make_instance("web", "w3", "10.0.0.1", 81, ["dns=example.com"])],
                 [rs("web.example.com", "A", "10.0.0.1")], id="same-address-once"),
]


@pytest.mark.parametrize(("instances", "expected"), CASES)
def test_catalog_records(instances, expected):
    desired = build_desired(state(*instances), ttl=30)
    assert list(desired.records) == expected
    assert desired.problems == ()


def test_haproxy_service_name_configurable():
    sb = make_instance("switchboard", "sb", "10.0.9.5", 80, ["dns=example.com"])
    desired = build_desired(state(sb, SHOP), ttl=60, haproxy_service="switchboard")
    assert list(desired.records) == [
        rs("haproxy.example.com", "A", "10.0.9.5", ttl=60),
        rs("shop.example.com", "CNAME", "haproxy.example.com", ttl=60),
        rs("switchboard.example.com", "A", "10.0.9.5", ttl=60),
    ]


def test_bad_tags_skip_only_that_instance():
    bad = make_instance("api", "api-1", "10.0.0.7", 80, ["dns=exa mple.com"], node="n9")
    desired = build_desired(state(WEB_A, bad), ttl=30)
    assert list(desired.records) == [rs("web.example.com", "A", "10.0.0.1")]
    assert desired.problems == (Problem(
        "invalid-tags", "tag 'dns=exa mple.com': spaces are not allowed",
        service="api", instance_id="api-1", node="n9"),)


def test_bad_address_and_service_name_are_problems():
    no_ip = make_instance("api", "a1", "api.internal", 80, ["dns=example.com"])
    bad_name = make_instance("my_api", "a2", "10.0.0.3", 80, ["dns=example.com"])
    desired = build_desired(state(no_ip, bad_name), ttl=30)
    assert desired.records == ()
    assert sorted(p.reason for p in desired.problems) == ["invalid-address", "invalid-name"]


#: a valid 249-character domain: ``www.`` + it is 253 long (valid), ``wwww.`` + it 254
DOMAIN_249 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 57])


def test_vhost_names_are_judged_whole_by_the_shared_host_name_rule():
    """The same rule and words as switchboard (see its test of the same name)."""
    fits = make_instance("fits", "f1", "10.0.0.3", 80, [f"dns={DOMAIN_249}", "vhost=www"])
    too_long = make_instance("long", "l1", "10.0.0.4", 80,
                             [f"dns={DOMAIN_249}", "dns=example.com", "vhost=wwww"])
    desired = build_desired(state(fits, too_long, HAPROXY_1), ttl=30)
    assert [(r.name, r.type) for r in desired.records] == [
        ("haproxy.example.com", "A"), ("www." + DOMAIN_249, "CNAME"),
        ("wwww.example.com", "CNAME")]
    assert [p for p in desired.problems if p.reason != "cname-target-missing"] == [Problem(
        "invalid-name",
        "name 'wwww." + "a" * 52 + "...' is 254 characters long; at most 253 are allowed",
        service="long",
        instance_id="l1", node="node-1")]


def test_cname_conflicting_with_address_keeps_address():
    web = make_instance("www", "w", "10.0.0.1", 80, ["dns=example.com"])
    vhost = make_instance("shop", "s", "10.0.0.2", 80, ["dns=example.com", "vhost=www"])
    desired = build_desired(state(web, vhost), ttl=30)
    assert list(desired.records) == [rs("www.example.com", "A", "10.0.0.1")]
    assert [p.reason for p in desired.problems] == ["name-conflict"]


def test_static_layers_merge_catalog_wins_kv_beats_file():
    kv = [rs("web.example.com", "A", "192.0.2.1", origin="kv"),
          rs("db.example.com", "A", "192.0.2.2", origin="kv")]
    files = [rs("db.example.com", "A", "192.0.2.3", origin="file"),
             rs("files.example.com", "AAAA", "2001:db8::5", origin="file")]
    desired = build_desired(state(WEB_A), ttl=30, static_layers=[kv, files])
    assert list(desired.records) == [
        rs("db.example.com", "A", "192.0.2.2", origin="kv"),
        rs("files.example.com", "AAAA", "2001:db8::5", origin="file"),
        rs("web.example.com", "A", "10.0.0.1"),
    ]
    assert [p.message for p in desired.problems] == [
        "web.example.com (A, from kv) is already defined by catalog; ignored",
        "db.example.com (A, from file) is already defined by kv; ignored",
    ]


def test_rendering_input_order_does_not_matter():
    one = build_desired(state(WEB_A, WEB_B, SHOP, HAPROXY_1), ttl=30)
    two = build_desired(state(HAPROXY_1, SHOP, WEB_B, WEB_A), ttl=30)
    assert one == two


def vhost(instance_id, *tags, port=80):
    return make_instance("shop", instance_id, "10.0.1.1", port,
                         ["dns=example.com", "vhost=shop", *tags], node="n5")


@pytest.mark.parametrize(("inst", "message"), [
    pytest.param(vhost("s1", "http=80", "ssl=pass-through"),
                 "ssl=pass-through refuses every listener (http=80); no CNAME for vhost shop",
                 id="http-pass-through"),
    pytest.param(vhost("s2", "https=443", "ssl=backend"),
                 "ssl=backend refuses every listener (https=443); no CNAME for vhost shop",
                 id="https-backend"),
    pytest.param(vhost("s3", "ssl=pass-through"),  # no listener tag: http=80 by default
                 "ssl=pass-through refuses every listener (http=80); no CNAME for vhost shop",
                 id="default-http-pass-through"),
    pytest.param(vhost("s4", port=0),
                 "port 0 is outside 1-65535; no CNAME for vhost shop", id="port-0"),
])
def test_vhost_switchboard_can_never_route_gets_no_cname(inst, message):
    desired = build_desired(state(inst, HAPROXY_1), ttl=30)
    assert list(desired.records) == [rs("haproxy.example.com", "A", "10.0.9.1")]
    assert desired.problems == (Problem("vhost-unroutable", message, service="shop",
                                        instance_id=inst.instance_id, node="n5"),)


@pytest.mark.parametrize("tags", [
    pytest.param(("http=80", "https=443", "ssl=backend"), id="http-left-by-backend"),
    pytest.param(("http=80", "https=443", "ssl=pass-through"), id="https-left-by-pass-through"),
    pytest.param(("tcp=5432", "ssl=pass-through"), id="tcp-listener"),
    pytest.param(("https=443", "ssl=offloading"), id="offloading"),
])
def test_vhost_with_one_routable_listener_keeps_its_cname(tags):
    desired = build_desired(state(vhost("s1", *tags), HAPROXY_1), ttl=30)
    assert list(desired.records) == [rs("haproxy.example.com", "A", "10.0.9.1"),
                                     rs("shop.example.com", "CNAME", "haproxy.example.com")]
    assert desired.problems == ()


def test_unroutable_instance_leaves_the_cname_of_a_routable_one():
    desired = build_desired(state(vhost("s1", port=0), vhost("s2"), HAPROXY_1), ttl=30)
    assert list(desired.records) == [rs("haproxy.example.com", "A", "10.0.9.1"),
                                     rs("shop.example.com", "CNAME", "haproxy.example.com")]
    assert [(p.reason, p.instance_id) for p in desired.problems] == [
        ("vhost-unroutable", "s1")]


def test_port_0_without_vhost_keeps_its_a_record():
    web = make_instance("web", "w", "10.0.0.1", 0, ["dns=example.com"])
    desired = build_desired(state(web), ttl=30)
    assert list(desired.records) == [rs("web.example.com", "A", "10.0.0.1")]
    assert desired.problems == ()


MISSING = ("shop.example.com (service shop) is a CNAME to haproxy.example.com, which has no "
           "record: no passing instance of service 'haproxy' carries dns=example.com (nor does "
           "a static record name it), so shop.example.com resolves to nothing until one does")


def test_vhost_without_haproxy_keeps_its_cname_with_a_problem():
    """No HAProxy instance for the domain: the CNAME would dangle. It is kept (no delete and
    re-create while HAProxy's health flickers) and reported."""
    desired = build_desired(state(SHOP), ttl=30)
    assert list(desired.records) == [rs("shop.example.com", "CNAME", "haproxy.example.com")]
    assert desired.problems == (Problem("cname-target-missing", MISSING, service="shop"),)
    critical = make_instance("haproxy", "hp-1", "10.0.9.1", 80, ["dns=example.com"],
                             status="critical")
    assert build_desired(state(SHOP, critical), ttl=30).problems == (
        Problem("cname-target-missing", MISSING, service="shop"),)
    # HAProxy for another domain only does not help
    other = make_instance("haproxy", "hp-9", "10.0.9.9", 80, ["dns=other.org"])
    assert [p.reason for p in build_desired(state(SHOP, other), ttl=30).problems] == [
        "cname-target-missing"]


def test_static_record_for_the_target_is_enough():
    lb = [rs("haproxy.example.com", "A", "192.0.2.80", origin="kv")]
    desired = build_desired(state(SHOP), ttl=30, static_layers=[lb])
    assert list(desired.records) == [rs("haproxy.example.com", "A", "192.0.2.80", origin="kv"),
                                     rs("shop.example.com", "CNAME", "haproxy.example.com")]
    assert desired.problems == ()
