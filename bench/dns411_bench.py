"""Benchmark dns411: render time at N instances, Route 53 API calls per reconcile at N records.

    .venv/bin/python bench/dns411_bench.py [--instances 10000] [--records 10000]

1. Render: a catalog of ``--instances`` instances (services of 10 instances; one service in
   five is a vhost behind HAProxy) -> desired records -> dnsmasq hosts and conf bytes.
   Prints the median and worst of several runs in milliseconds (pure code, no I/O).
2. Route 53: ``--records`` record sets (one single-instance service each) reconciled into a
   hosted zone of a real moto server: first reconcile (everything created), a second one
   with nothing to do (skipped: same desired records, verified less than
   ``UNIFY_ROUTE53_RESYNC`` ago), one after 1% of the instances moved, and a forced resync
   (full listing, nothing to change). Zone discovery comes first, on its own, as the
   service does it at start: ListHostedZones, or GetHostedZone per zone when
   ``UNIFY_ROUTE53_ZONE_IDS`` is set. Prints the API calls of each step by operation
   (ListHostedZones, GetHostedZone, ListResourceRecordSets, ChangeResourceRecordSets) and
   the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402

from dns411.apply.route53 import Route53Sink  # noqa: E402
from dns411.reconciler import Reconciler  # noqa: E402
from dns411.render import render_conf, render_hosts  # noqa: E402
from dns411.settings import Dns411Settings  # noqa: E402
from tests.fixtures.catalog import make_instance  # noqa: E402
from unify_common.catalog import CatalogState  # noqa: E402
from unify_testkit.devstack.moto import MotoServer  # noqa: E402


def catalog(instances: int) -> CatalogState:
    out = {}
    for n in range(instances):
        service = n // 10
        tags = ["dns=example.com"]
        if service % 5 == 0:
            tags.append(f"vhost=site{service}")
        name = "haproxy" if service == 1 else f"svc{service}"
        inst = make_instance(name, f"i{n}", f"10.{n // 65536}.{n // 256 % 256}.{n % 256}", 80,
                             tags, node=f"node{n // 20}")
        out[inst.key] = inst
    return CatalogState(instances=out)


def bench_render(instances: int, runs: int) -> None:
    state = catalog(instances)
    reconciler = Reconciler(Dns411Settings(), node="bench")
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        desired = reconciler.desired(state)
        hosts = render_hosts(desired.records)
        conf = render_conf(desired.records, ttl=30)
        times.append((time.perf_counter() - start) * 1000)
    print(f"render: {instances} instances -> {len(desired.records)} record sets, "
          f"hosts {len(hosts)} B, conf {len(conf)} B; "
          f"median {statistics.median(times):.1f} ms, worst {max(times):.1f} ms "
          f"over {runs} runs")


def bench_route53(records: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        moto = MotoServer(Path(tmp)).start()
        try:
            client = boto3.client("route53", endpoint_url=moto.endpoint_url,
                                  region_name="us-east-1", aws_access_key_id="bench",
                                  aws_secret_access_key="bench",
                                  config=Config(retries={"total_max_attempts": 1}))
            zone_id = client.create_hosted_zone(
                Name="example.com", CallerReference="bench")["HostedZone"]["Id"]
            calls: Counter = Counter()
            client.meta.events.register(
                "before-call.route53.*",
                lambda model, **kw: calls.update([model.name]))
            settings = Dns411Settings(route53_enabled=True, dnsmasq_enabled=False)
            sink = Route53Sink(client)
            reconciler = Reconciler(settings, node="bench", route53=sink)
            always = Reconciler(Dns411Settings(route53_enabled=True, dnsmasq_enabled=False,
                                               route53_resync=0.0), node="bench", route53=sink)
            instances = {}
            for n in range(records):
                inst = make_instance(f"s{n}", f"s{n}", f"10.{n // 65536}.{n // 256 % 256}."
                                     f"{n % 256}", 80, ["dns=example.com"])
                instances[inst.key] = inst
            moved = dict(instances)
            for n in range(0, records, 100):
                inst = make_instance(f"s{n}", f"s{n}", "192.0.2.1", 80, ["dns=example.com"])
                moved[inst.key] = inst
            print(f"route53: {records} record sets (+ {records} ownership TXT) in one zone")
            for label, sink_ in (("zone discovery (list)", sink),
                                 ("zone discovery (ids)", Route53Sink(client,
                                                                      zone_ids=[zone_id]))):
                calls.clear()
                sink_.zones()  # the service does this at start, before its first reconcile
                detail = ", ".join(f"{k} {v}" for k, v in sorted(calls.items()))
                print(f"  {label:20} {sum(calls.values()):4d} API calls ({detail}); "
                      "once per process, not part of a reconcile")
            for label, rec, instance_map in (
                    ("first (create all)", reconciler, instances),
                    ("steady (no change)", reconciler, instances),
                    ("1% moved", reconciler, moved),
                    ("resync (no change)", always, moved)):
                calls.clear()
                start = time.perf_counter()
                asyncio.run(rec(CatalogState(instances=instance_map)))
                took = time.perf_counter() - start
                detail = ", ".join(f"{k} {v}" for k, v in sorted(calls.items()))
                print(f"  {label:20} {sum(calls.values()):4d} API calls ({detail}); "
                      f"{took:.1f} s wall")
        finally:
            moto.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    bench_render(args.instances, args.runs)
    bench_route53(args.records)


if __name__ == "__main__":
    main()
