"""``python -m dns411`` as a process, configured only by environment variables."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import msgspec
import nats
from dns411_support import OWN, both, create_zone, zone_records
from nats.js.api import KeyValueConfig

from tests.fixtures.catalog import make_instance, put_instance
from unify_common.listeners import VerdictDocument, VhostVerdict
from unify_testkit import returns
from unify_testkit.aio import wait_until
from unify_testkit.devstack.dnsmasq import free_udp_tcp_port
from unify_testkit.devstack.process import tcp_open

WEB = make_instance("web", "web-1", "10.0.0.1", 8080, ["dns=example.com"])


def dns411_env(tmp_path, nats_url, moto_url, port, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "UNIFY_"))}
    env.update({
        "NATS_URL": nats_url, "UNIFY_NODE": "edge-1", "UNIFY_LOG_LEVEL": "INFO",
        "UNIFY_DNSMASQ_MANAGE": "1", "UNIFY_DNSMASQ_PORT": str(port),
        "UNIFY_DNSMASQ_USER": "root",
        "UNIFY_DNSMASQ_HOSTS": str(tmp_path / "dns411.hosts"),
        "UNIFY_DNSMASQ_CONF_DIR": str(tmp_path / "conf.d"),
        "UNIFY_DNS_TTL": "45", "UNIFY_ROUTE53_ENABLED": "1", "UNIFY_DNS_OWNER_ID": "test-owner",
        "AWS_ENDPOINT_URL_ROUTE_53": moto_url, "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    })
    env.update(extra)
    return env


async def test_module_entry_point_runs_from_env(tmp_path, dns_common, route53, moto_server):
    zone = create_zone(route53, "example.com")
    nc = await nats.connect(dns_common.nats_urls[0])
    await put_instance(nc.jetstream(), dns_common, WEB)
    port = free_udp_tcp_port()
    env = dns411_env(tmp_path, dns_common.nats_urls[0], moto_server.endpoint_url, port)
    log = open(tmp_path / "dns411.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "dns411"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        await wait_until(lambda: _answers(port), returns, timeout=30)
        await wait_until(lambda: _route53(route53, zone), returns, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
        log.close()
        await nc.close()
    assert code == 0, (tmp_path / "dns411.log").read_text()[-2000:]
    assert not _port_open(port)  # the dnsmasq child went with it


async def test_replica_mode_serves_route53_and_stops_on_sigterm(tmp_path, route53,
                                                                moto_server):
    """Replica mode runs on the one run loop: it serves what Route 53 holds for dns411 and
    exits 0 on SIGTERM with its dnsmasq child gone."""
    zone = create_zone(route53, "example.com")
    route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [
        {"Action": "CREATE", "ResourceRecordSet": {
            "Name": name, "Type": rtype, "TTL": 45, "ResourceRecords": [{"Value": value}]}}
        for name, rtype, value in (("web.example.com.", "A", "10.0.0.1"),
                                   ("_dns411-a.web.example.com.", "TXT", OWN))]})
    port = free_udp_tcp_port()
    env = dns411_env(tmp_path, "nats://127.0.0.1:1", moto_server.endpoint_url, port,
                     UNIFY_DNS411_MODE="replica", UNIFY_DNS411_REPLICA_EVERY="1")
    log = open(tmp_path / "replica.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "dns411"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        await wait_until(lambda: _answers(port), returns, timeout=30,
                         what="the replica's dnsmasq answering web.example.com")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
        log.close()
    assert code == 0, (tmp_path / "replica.log").read_text()[-2000:]
    assert not _port_open(port)


def _answers(port):
    assert both(port, "web.example.com") == ("NOERROR", [("web.example.com.", "A", 45, "10.0.0.1")])


def _route53(client, zone):
    assert zone_records(client, zone) == [
        ("_dns411-a.web.example.com.", "TXT", 45, (OWN,)),
        ("web.example.com.", "A", 45, ("10.0.0.1",))]


def _port_open(port):
    try:
        return tcp_open("127.0.0.1", port)
    except OSError:
        return False


async def test_dry_run_withholds_what_switchboard_rejects(tmp_path, dns_common, route53,
                                                        moto_server):
    """The plan follows switchboard's verdicts as the service does: a rejected vhost has no
    CNAME in it."""
    create_zone(route53, "example.com")
    shop = make_instance("shop", "shop-1", "127.0.0.1", 8081,
                         ["dns=example.com", "vhost=shop", "https=8443"])
    nc = await nats.connect(dns_common.nats_urls[0])
    js = nc.jetstream()
    for inst in (WEB, shop):
        await put_instance(js, dns_common, inst)
    kv = await js.create_key_value(KeyValueConfig(bucket="dry-run-verdicts", history=1))
    await kv.put("edge-1", msgspec.json.encode(VerdictDocument(
        node="edge-1", revision=99, written_at=0, vhosts={"shop.example.com": VhostVerdict(
            False, "missing-certificate", "no certificate covers shop.example.com", "shop")})))
    await nc.close()
    env = dns411_env(tmp_path, dns_common.nats_urls[0], moto_server.endpoint_url,
                     free_udp_tcp_port(), UNIFY_VERDICT_BUCKET="dry-run-verdicts",
                     UNIFY_ROUTE53_ENABLED="0")
    result = subprocess.run([sys.executable, "-m", "dns411", "--dry-run"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "# 1 record sets desired"
    assert [line for line in lines if "shop.example.com" in line] == [
        line for line in lines if line.startswith("# problem")] == [
        "# problem (vhost-rejected): shop.example.com gets no CNAME: switchboard on edge-1 "
        "rejects it (missing-certificate: no certificate covers shop.example.com)"]
    assert "+10.0.0.1 web.example.com" in lines


async def test_dry_run_prints_plan_and_writes_nothing(tmp_path, dns_common, route53, moto_server):
    zone = create_zone(route53, "example.com")
    nc = await nats.connect(dns_common.nats_urls[0])
    await put_instance(nc.jetstream(), dns_common, WEB)
    await nc.close()
    env = dns411_env(tmp_path, dns_common.nats_urls[0], moto_server.endpoint_url,
                     free_udp_tcp_port())
    result = subprocess.run([sys.executable, "-m", "dns411", "--dry-run"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    hosts, conf = tmp_path / "dns411.hosts", tmp_path / "conf.d" / "dns411.conf"
    assert result.stdout.splitlines() == [
        "# 1 record sets desired",
        f"--- {hosts}", f"+++ {hosts} (desired)", "@@ -0,0 +1,2 @@",
        "+# Written by dns411 from the Unify catalog; edits are overwritten.",
        "+10.0.0.1 web.example.com",
        f"--- {conf}", f"+++ {conf} (desired)", "@@ -0,0 +1,2 @@",
        "+# Written by dns411 from the Unify catalog; edits are overwritten.",
        "+local-ttl=45",
        f"route53 {zone} CREATE web.example.com. A 45 10.0.0.1",
        f"route53 {zone} CREATE _dns411-a.web.example.com. TXT 45 {OWN}",
    ]
    assert not hosts.exists() and not conf.exists()
    assert zone_records(route53, zone) == []
