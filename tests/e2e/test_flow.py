"""End to end on real parts: a service registered in Consul reaches HAProxy (HTTP works
through it), dnsmasq (the name resolves) and Route 53 (moto), through consul-bridge, NATS
JetStream, switchboard and dns411 running as their own processes. Deregistration removes
all three."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request

import boto3
import dns.message
import dns.query
import dns.rcode
import pytest

from unify_testkit import returns, wait_until
from unify_testkit.devstack.process import ManagedProcess, free_port, tcp_open
from unify_testkit.devstack.stack import DevStack, consul_put

DOMAIN = "unify.test"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = DevStack(tmp_path_factory.mktemp("stack"), domain=DOMAIN).start()
    yield stack
    stack.stop()


@pytest.fixture
def backend(tmp_path):
    started = []

    def start(name: str) -> int:
        port = free_port()
        proc = ManagedProcess(name, [sys.executable, "-m", "unify_testkit.demo_backend",
                                     "--port", str(port), "--name", name],
                              log_path=tmp_path / f"{name}.log")
        proc.start(lambda: tcp_open("127.0.0.1", port))
        started.append(proc)
        return port

    yield start
    for proc in started:
        proc.stop()


def register(stack: DevStack, service_id: str, name: str, address: str, port: int,
             tags: list[str]) -> None:
    """Register one service instance with the stack's Consul agent."""
    consul_put(stack.consul.http_addr, "/v1/agent/service/register", {
        "ID": service_id, "Name": name, "Address": address, "Port": port, "Tags": tags})


def deregister(stack: DevStack, service_id: str) -> None:
    """Deregister one service instance from the stack's Consul agent."""
    consul_put(stack.consul.http_addr, f"/v1/agent/service/deregister/{service_id}", {})


def http_get(port: int, host: str) -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def dns_answer(stack: DevStack, name: str, rdtype: str, *, tcp: bool = False):
    query = dns.message.make_query(name, rdtype)
    send = dns.query.tcp if tcp else dns.query.udp
    reply = send(query, "127.0.0.1", port=stack.dns_port, timeout=2)
    return dns.rcode.to_text(reply.rcode()), sorted(r.to_text() for r in reply.answer)


def route53_records(stack: DevStack) -> dict[tuple[str, str], list[str]]:
    client = boto3.client("route53", endpoint_url=stack.moto.endpoint_url,
                          region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    zone = client.list_hosted_zones_by_name(DNSName=DOMAIN)["HostedZones"][0]["Id"]
    out = {}
    for page in client.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone):
        for rrset in page["ResourceRecordSets"]:
            if rrset["Type"] in ("A", "CNAME", "TXT"):
                out[(rrset["Name"], rrset["Type"])] = sorted(
                    r["Value"] for r in rrset.get("ResourceRecords", []))
    return out


def test_vhost_service_reaches_haproxy_dnsmasq_and_route53(stack, backend):
    port = backend("shop-1")
    # a second vhost on the same frontend port keeps the frontend after shop leaves
    register(stack, "keep-1", "keep", "127.0.0.1", port,
             [f"dns={DOMAIN}", "vhost=keep", f"http={stack.http_port}"])
    register(stack, "shop-1", "shop", "127.0.0.1", port,
             [f"dns={DOMAIN}", "vhost=shop", f"http={stack.http_port}"])

    assert wait_until(lambda: _ok(http_get(stack.http_port, f"shop.{DOMAIN}")), returns) == (
        200, "hello from shop-1\n")
    # the Host header may carry a port; it is ignored for matching
    assert http_get(stack.http_port, f"shop.{DOMAIN}:{stack.http_port}") == (
        200, "hello from shop-1\n")
    expected_dns = ("NOERROR", [f"haproxy.{DOMAIN}. 30 IN A 127.0.0.1",
                                f"shop.{DOMAIN}. 30 IN CNAME haproxy.{DOMAIN}."])
    assert wait_until(lambda: _eq(dns_answer(stack, f"shop.{DOMAIN}", "A"), expected_dns),
                      returns) \
        == expected_dns
    assert dns_answer(stack, f"shop.{DOMAIN}", "A", tcp=True) == expected_dns
    records = wait_until(lambda: _has(route53_records(stack), (f"shop.{DOMAIN}.", "CNAME")),
                         returns)
    assert records[(f"shop.{DOMAIN}.", "CNAME")] == [f"haproxy.{DOMAIN}."]
    assert records[(f"haproxy.{DOMAIN}.", "A")] == ["127.0.0.1"]

    deregister(stack, "shop-1")
    assert wait_until(lambda: _eq(http_get(stack.http_port, f"shop.{DOMAIN}"),
                                  (404, "no-route")), returns) == (404, "no-route")
    assert wait_until(lambda: _eq(dns_answer(stack, f"shop.{DOMAIN}", "A")[0], "NXDOMAIN"),
                      returns) \
        == "NXDOMAIN"
    remaining = wait_until(lambda: _lacks(route53_records(stack), (f"shop.{DOMAIN}.", "CNAME")),
                           returns)
    assert [k for k in remaining if k[0].endswith(f"shop.{DOMAIN}.")] == []
    assert http_get(stack.http_port, f"keep.{DOMAIN}") == (200, "hello from shop-1\n")
    deregister(stack, "keep-1")


def test_plain_service_gets_a_records_and_scales_down(stack, backend):
    for i, address in ((1, "127.0.0.11"), (2, "127.0.0.12")):
        register(stack, f"db-{i}", "db", address, 5432, [f"dns={DOMAIN}"])
    both = ("NOERROR", [f"db.{DOMAIN}. 30 IN A 127.0.0.11\n"
                        f"db.{DOMAIN}. 30 IN A 127.0.0.12"])
    assert wait_until(lambda: _eq(_joined(dns_answer(stack, f"db.{DOMAIN}", "A")), both), returns) \
        == both
    records = wait_until(lambda: _eq_item(route53_records(stack), (f"db.{DOMAIN}.", "A"),
                                          ["127.0.0.11", "127.0.0.12"]), returns)
    assert records[(f"db.{DOMAIN}.", "A")] == ["127.0.0.11", "127.0.0.12"]

    deregister(stack, "db-2")
    one = ("NOERROR", [f"db.{DOMAIN}. 30 IN A 127.0.0.11"])
    assert wait_until(lambda: _eq(dns_answer(stack, f"db.{DOMAIN}", "A"), one), returns) == one
    records = wait_until(lambda: _eq_item(route53_records(stack), (f"db.{DOMAIN}.", "A"),
                                          ["127.0.0.11"]), returns)
    assert records[(f"db.{DOMAIN}.", "A")] == ["127.0.0.11"]
    deregister(stack, "db-1")
    assert wait_until(lambda: _eq(dns_answer(stack, f"db.{DOMAIN}", "A")[0], "NXDOMAIN"), returns) \
        == "NXDOMAIN"


def test_malformed_tags_skip_one_instance_and_publish_an_error(stack, backend):
    import asyncio

    import nats

    good = backend("good-1")
    register(stack, "bad-1", "bad", "127.0.0.1", good,
             [f"dns={DOMAIN}", "vhost=evil\n}", f"http={stack.http_port}"])
    register(stack, "good-1", "good", "127.0.0.1", good,
             [f"dns={DOMAIN}", "vhost=good", f"http={stack.http_port}"])
    assert wait_until(lambda: _ok(http_get(stack.http_port, f"good.{DOMAIN}")), returns) == (
        200, "hello from good-1\n")

    async def errors() -> list[dict]:
        nc = await nats.connect(stack.nats.url)
        js = nc.jetstream()
        sub = await js.subscribe("unify.error.>", ordered_consumer=True,
                                 deliver_policy=nats.js.api.DeliverPolicy.ALL)
        found = []
        try:
            while True:
                msg = await sub.next_msg(timeout=1)
                found.append(json.loads(msg.data))
        except nats.errors.TimeoutError:
            pass
        await nc.close()
        return found

    found = [e for e in asyncio.run(errors()) if e.get("instance_id") == "bad-1"]
    assert [(e["source"], e["reason"]) for e in found][:1] == [("consul-bridge", "invalid-tags")]
    assert found[0]["message"] == "tag 'vhost=evil\\n}': only printable ASCII is allowed"
    deregister(stack, "bad-1")
    deregister(stack, "good-1")


def _ok(result):
    assert result[0] == 200, result
    return result


def _eq(actual, expected):
    assert actual == expected, actual
    return actual


def _joined(answer):
    return answer[0], ["\n".join(answer[1])] if answer[1] else []


def _has(records, key):
    assert key in records, records
    return records


def _lacks(records, key):
    assert key not in records, records
    return records


def _eq_item(records, key, value):
    assert records.get(key) == value, records
    return records


def test_unify_dns_list_shows_records_from_every_source(stack):
    import os
    import subprocess

    register(stack, "listed-1", "listed", "127.0.0.21", 80, [f"dns={DOMAIN}"])
    wait_until(lambda: _eq(dns_answer(stack, f"listed.{DOMAIN}", "A"),
                           ("NOERROR", [f"listed.{DOMAIN}. 30 IN A 127.0.0.21"])), returns)
    wait_until(lambda: _eq_item(route53_records(stack), (f"listed.{DOMAIN}.", "A"),
                                ["127.0.0.21"]), returns)
    env = {**os.environ, **stack.env()}

    def listed(source: str) -> list[dict]:
        out = subprocess.run([sys.executable, "-m", "unify_cli.main", "dns", "list", "--json",
                              "--zone", DOMAIN, "--source", source], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return [row for row in json.loads(out.stdout) if row["name"] == f"listed.{DOMAIN}"]

    # the desired listing is the reference; the other sources are marked against it
    for source, drift in (("desired", ""), ("dnsmasq", "in-sync"), ("route53", "in-sync")):
        expected = [("A", "127.0.0.21", 30, drift)]
        rows = wait_until(lambda source=source, expected=expected: _eq(
            [(r["type"], r["value"], r["ttl"], r["drift"]) for r in listed(source)],
            expected), returns)
        assert rows == expected, source
    deregister(stack, "listed-1")


def test_name_registered_after_a_negative_answer_resolves_within_the_ttl(stack):
    assert dns_answer(stack, f"late.{DOMAIN}", "A")[0] == "NXDOMAIN"
    registered = time.monotonic()
    register(stack, "late-1", "late", "127.0.0.31", 80, [f"dns={DOMAIN}"])
    expected = ("NOERROR", [f"late.{DOMAIN}. 30 IN A 127.0.0.31"])
    # dnsmasq keeps no negative cache for its own names: the answer changes as soon as
    # dns411 has written the record, well inside the 30 s TTL
    assert wait_until(lambda: _eq(dns_answer(stack, f"late.{DOMAIN}", "A"), expected), returns,
                      timeout=30) == expected
    assert time.monotonic() - registered < 30
    deregister(stack, "late-1")
