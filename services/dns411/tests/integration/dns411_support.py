"""Helpers for dns411's integration tests: real dnsmasq queried with dnspython, real moto."""

from __future__ import annotations

import time
from pathlib import Path

import boto3
import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from dns411.apply.route53 import route53_config
from dns411.settings import Dns411Settings
from unify_common.state import CatalogState
from unify_testkit.devstack.dnsmasq import free_udp_tcp_port


def managed_settings(tmp: Path, **overrides) -> Dns411Settings:
    """Settings for a dns411 that runs its own dnsmasq on a free loopback port."""
    values = dict(hosts_path=tmp / "dnsmasq" / "dns411.hosts",
                  conf_dir=tmp / "dnsmasq" / "conf.d", manage=True,
                  port=free_udp_tcp_port(), listen="127.0.0.1", user="root",
                  owner_id="test-owner", route53_resync=0.0)
    values.update(overrides)
    return Dns411Settings(**values)


def route53_client(endpoint_url: str, *, max_attempts: int = 8, retry_mode: str = "standard"):
    """A boto3 Route 53 client for ``endpoint_url`` (moto or the fault proxy), configured as
    dns411 configures its own (:func:`route53_config`: botocore's retries)."""
    return boto3.client("route53", endpoint_url=endpoint_url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=route53_config(max_attempts=max_attempts, retry_mode=retry_mode))


def query(port: int, name: str, rtype: str = "A", *, tcp: bool = False
          ) -> tuple[str, list[tuple[str, str, int, str]]]:
    """``(rcode text, sorted answers as (name, type, ttl, value))`` from 127.0.0.1:port."""
    msg = dns.message.make_query(name, rtype)
    ask = dns.query.tcp if tcp else dns.query.udp
    resp = ask(msg, "127.0.0.1", port=port, timeout=3)
    rows = sorted((rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), rrset.ttl,
                   rd.to_text()) for rrset in resp.answer for rd in rrset)
    return dns.rcode.to_text(resp.rcode()), rows


def both(port: int, name: str, rtype: str = "A"):
    """The answer over UDP, asserted equal to the answer over TCP."""
    udp = query(port, name, rtype)
    tcp = query(port, name, rtype, tcp=True)
    assert udp == tcp
    return udp


def zone_records(client, zone_id: str) -> list[tuple[str, str, int, tuple[str, ...]]]:
    """Every record set but NS/SOA as (name, type, ttl, sorted values)."""
    pages = client.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id)
    return sorted((r["Name"], r["Type"], r.get("TTL", 0),
                   tuple(sorted(v["Value"] for v in r.get("ResourceRecords", []))))
                  for page in pages for r in page["ResourceRecordSets"]
                  if r["Type"] not in ("NS", "SOA"))


def create_zone(client, name: str) -> str:
    """Create a public hosted zone; returns its id (without ``/hostedzone/``)."""
    zone = client.create_hosted_zone(Name=name, CallerReference=f"{name}-{time.time_ns()}")
    return zone["HostedZone"]["Id"].rsplit("/", 1)[-1]


OWN = '"heritage=unify-dns411,owner=test-owner"'


def state(*instances) -> CatalogState:
    """A catalog state holding exactly ``instances``."""
    return CatalogState(instances={i.key: i for i in instances})


class Collected:
    """Publisher that keeps what it is given (the reconciler's only outside call)."""

    def __init__(self) -> None:
        self.events = []

    async def __call__(self, subject, event, msg_id):
        self.events.append((subject, event))

    def errors(self):
        """(reason, message) of the dns411 error events collected so far."""
        return [(e.reason, e.message) for s, e in self.events if s == "unify.error.dns411"]
