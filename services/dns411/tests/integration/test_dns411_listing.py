"""``list_records`` and ``unify-dns411 list`` against real dnsmasq files and moto."""

from __future__ import annotations

import json
import subprocess
import sys

import nats
from dns411_support import create_zone, managed_settings
from test_dns411_entrypoint import dns411_env
from unify_common.catalog import CatalogState
from unify_common.settings import CommonSettings

from dns411.apply.dnsmasq import DnsmasqSink
from dns411.apply.dnsmasq_process import NoDnsmasq
from dns411.apply.route53 import Route53Sink
from dns411.drift import Row
from dns411.listing import list_records
from dns411.reconciler import Reconciler
from tests.fixtures.catalog import make_instance, put_instance

WEB = make_instance("web", "web-1", "10.0.0.1", 80, ["dns=example.com"])
API = make_instance("api", "api-1", "10.0.0.2", 80, ["dns=dev.example.com"])


async def test_listings_mark_drift(tmp_path, route53):
    top = create_zone(route53, "example.com")
    create_zone(route53, "dev.example.com")
    settings = managed_settings(tmp_path, manage=False, route53_enabled=True)
    reconciler = Reconciler(settings, node="n1", route53=Route53Sink(route53),
                            dnsmasq=DnsmasqSink(settings, NoDnsmasq()))
    state = CatalogState(instances={WEB.key: WEB, API.key: API})
    await reconciler(state)
    common = CommonSettings(node="n1")
    kw = dict(settings=settings, common=common, state=state, route53_client=route53)

    assert list_records(**kw) == [
        Row("api.dev.example.com", "A", "10.0.0.2", 30, "test-owner", "catalog"),
        Row("web.example.com", "A", "10.0.0.1", 30, "test-owner", "catalog")]
    assert list_records(source="route53", **kw) == [
        Row("api.dev.example.com", "A", "10.0.0.2", 30, "test-owner", "route53", "in-sync"),
        Row("web.example.com", "A", "10.0.0.1", 30, "test-owner", "route53", "in-sync")]
    # drift by hand: a value changed in Route 53, a line added to the hosts file
    route53.change_resource_record_sets(HostedZoneId=top, ChangeBatch={"Changes": [{
        "Action": "UPSERT", "ResourceRecordSet": {"Name": "web.example.com.", "Type": "A",
                                                  "TTL": 30,
                                                  "ResourceRecords": [{"Value": "10.9.9.9"}]}}]})
    with open(settings.hosts_path, "a") as hosts:
        hosts.write("10.7.7.7 stray.example.com\n")
    assert list_records(zone="example.com", source="route53", **kw) == [
        Row("web.example.com", "A", "10.0.0.1", 30, "", "catalog", "missing"),
        Row("web.example.com", "A", "10.9.9.9", 30, "test-owner", "route53", "extra")]
    # without hosted zones, a zone filter keeps every name at or below it
    assert list_records(zone="example.com", source="dnsmasq", **kw) == [
        Row("api.dev.example.com", "A", "10.0.0.2", 30, "test-owner", "dnsmasq", "in-sync"),
        Row("stray.example.com", "A", "10.7.7.7", 30, "test-owner", "dnsmasq", "extra"),
        Row("web.example.com", "A", "10.0.0.1", 30, "test-owner", "dnsmasq", "in-sync")]


async def test_list_command_prints_json(tmp_path, dns_common, route53, moto_server):
    create_zone(route53, "example.com")
    nc = await nats.connect(dns_common.nats_urls[0])
    await put_instance(nc.jetstream(), dns_common, WEB)
    await nc.close()
    env = dns411_env(tmp_path, dns_common.nats_urls[0], moto_server.endpoint_url, 5353)
    result = subprocess.run([sys.executable, "-m", "dns411", "list", "--source", "route53",
                             "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [{"type": "A", "name": "web.example.com",
                                          "value": "10.0.0.1", "ttl": 45, "owner": "",
                                          "origin": "catalog", "drift": "missing"}]
    table = subprocess.run([sys.executable, "-c", "import dns411; dns411.cli_list([])"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert table.stdout.splitlines() == [
        "TYPE  NAME             VALUE     TTL  OWNER       ORIGIN   DRIFT",
        "A     web.example.com  10.0.0.1  45   test-owner  catalog  -"]


def test_unreachable_nats_gives_one_clear_error_at_once():
    """`unify dns list` with NATS down fails on the first try, with the same hint as the
    events commands (not after a 10 s wait, not with a bare exception name)."""
    import os

    env = dict(os.environ, NATS_URL="nats://127.0.0.1:1")
    result = subprocess.run([sys.executable, "-m", "unify_cli.main", "dns", "list"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "unify dns list: cannot reach NATS at nats://127.0.0.1:1 (nats: no servers available "
        "for connection); set NATS_URL (for the dev stack: source .unify/dev/env)\n")
