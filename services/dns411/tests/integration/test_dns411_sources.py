"""Static records (Consul KV, hosts files) and ``.consul`` forwarding, through real dnsmasq
and moto."""

from __future__ import annotations

from dns411_support import Collected, both, create_zone, managed_settings, zone_records

from dns411.apply.dnsmasq import DnsmasqSink
from dns411.apply.dnsmasq_process import ManagedDnsmasq
from dns411.apply.route53 import Route53Sink
from dns411.reconciler import Reconciler
from tests.fixtures.catalog import make_instance
from unify_common.catalog import CatalogState
from unify_common.events import KvEntry
from unify_testkit.devstack.dnsmasq import Dnsmasq

WEB = make_instance("web", "web-1", "10.0.0.1", 80, ["dns=example.com"])



def kv(**pairs) -> dict[str, KvEntry]:
    return {key: KvEntry(key=key, value=value) for key, value in pairs.items()}


async def test_static_records_merge_with_catalog(tmp_path, route53):
    zone = create_zone(route53, "example.com")
    static = tmp_path / "static.hosts"
    static.write_text("192.0.2.10 printer.example.com\n192.0.2.11 db.example.com\n"
                      "broken line\n")
    settings = managed_settings(tmp_path, route53_enabled=True, static_files=(static,), ttl=120)
    control = ManagedDnsmasq(settings)
    publish = Collected()
    reconciler = Reconciler(settings, node="n1", dnsmasq=DnsmasqSink(settings, control),
                            route53=Route53Sink(route53), publish=publish)
    entries = {**{"unify/dns/db.example.com": "192.0.2.1, 2001:db8::1",
                  "unify/dns/www.example.com": "web.example.com",
                  "unify/dns/web.example.com": "192.0.2.99"}}
    state = CatalogState(instances={WEB.key: WEB}, kv=kv(**entries))
    try:
        await reconciler(state)
        port = settings.port
        assert both(port, "db.example.com") == ("NOERROR", [
            ("db.example.com.", "A", 120, "192.0.2.1")])           # KV beats the file
        assert both(port, "db.example.com", "AAAA") == ("NOERROR", [
            ("db.example.com.", "AAAA", 120, "2001:db8::1")])
        assert both(port, "printer.example.com") == ("NOERROR", [
            ("printer.example.com.", "A", 120, "192.0.2.10")])
        assert both(port, "www.example.com") == ("NOERROR", [
            ("web.example.com.", "A", 120, "10.0.0.1"),             # catalog beats KV
            ("www.example.com.", "CNAME", 120, "web.example.com.")])
        assert [r for r in zone_records(route53, zone) if r[1] != "TXT"] == [
            ("db.example.com.", "A", 120, ("192.0.2.1",)),
            ("db.example.com.", "AAAA", 120, ("2001:db8::1",)),
            ("printer.example.com.", "A", 120, ("192.0.2.10",)),
            ("web.example.com.", "A", 120, ("10.0.0.1",)),
            ("www.example.com.", "CNAME", 120, ("web.example.com.",)),
        ]
        assert sorted((e.reason, e.message) for s, e in publish.events
                      if s == "unify.error.dns411") == [
            ("invalid-static", f"{static} line 3: expected '<address> <name>...'"),
            ("static-conflict",
             "db.example.com (A, from file) is already defined by kv; ignored"),
            ("static-conflict",
             "web.example.com (A, from kv) is already defined by catalog; ignored"),
        ]
    finally:
        control.stop()


async def test_consul_names_are_forwarded(tmp_path):
    upstream = Dnsmasq(tmp_path / "consul-dns")  # a real DNS server standing where Consul's is
    upstream.workdir.mkdir(parents=True)
    upstream.hosts_path.write_text("10.5.5.5 web.service.consul\n")
    upstream.start()
    settings = managed_settings(tmp_path, consul_dns=f"127.0.0.1:{upstream.port}")
    control = ManagedDnsmasq(settings)
    reconciler = Reconciler(settings, node="n1", dnsmasq=DnsmasqSink(settings, control))
    try:
        await reconciler(CatalogState(instances={WEB.key: WEB}))
        assert f"server=/consul/127.0.0.1#{upstream.port}\n" in settings.conf_path.read_text()
        rcode, rows = both(settings.port, "web.service.consul")
        assert (rcode, [(n, t, v) for n, t, _, v in rows]) == (
            "NOERROR", [("web.service.consul.", "A", "10.5.5.5")])
        assert both(settings.port, "web.example.com")[0] == "NOERROR"
        assert both(settings.port, "elsewhere.org")[0] == "REFUSED"  # nothing else forwarded
    finally:
        control.stop()
        upstream.stop()
