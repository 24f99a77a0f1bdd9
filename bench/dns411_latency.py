"""Benchmark: catalog change → dnsmasq answering, through dns411 alone. Not a test.

Real parts only: nats-server with JetStream, dns411 as its own process (``python -m dns411``,
configured by environment, Route 53 off) supervising its real dnsmasq on a loopback port.
Consul and consul-bridge are left out on purpose: each change is written the way
consul-bridge writes it (the ``instance.registered`` event on the stream, then the instance
in the ``unify-catalog`` KV bucket), so the clock measures dns411 and dnsmasq only.

The catalog before the measured changes: ``size`` instances in services of 10, every other
service a vhost (``vhost=site-<n>``), nodes of 20 instances; every instance has its own
address (``Service.Address``) on a node with a stable address; two HAProxy instances carry
``dns=<domain>`` so ``haproxy.<domain>`` resolves. Measured, one after another, with a pause
between changes so each is its own reconcile:

* (a) a new service with ``dns=<domain>``: the clock stops when dnsmasq answers
  ``<svc>.<domain>`` with the instance's A record (addn-hosts file, SIGHUP);
* (b) a new vhost service: the clock stops when dnsmasq answers ``<vhost>.<domain>`` with
  the CNAME to ``haproxy.<domain>`` and its addresses (conf-dir file, dnsmasq restart).

dnsmasq is polled every millisecond over a connected UDP socket (a query sent while the
port is closed fails at once instead of waiting for a timeout; one that reaches a dnsmasq
being stopped is lost and given up after 10 ms). dns411's log states how
long each reconcile spent in each step (``dnsmasq files applied`` lines, ``steps_ms``);
with the lines' timestamps this splits each change into: wait (sent → reconcile started:
NATS delivery plus dns411's debounce), render, validate (the hosts-file check, and
``dnsmasq --test`` before a restart), write,
signal (SIGHUP, or restart until the new dnsmasq answers) and answer (apply ended → the
poller saw the answer; can be negative when the poller sees a restarted dnsmasq before
dns411's own readiness probe does). Their medians are printed.

With ``--via-consul`` the same catalog and changes go through the whole dev stack instead
(Consul ``-dev``, consul-bridge, switchboard with HAProxy, dns411 with dnsmasq, as
``unify dev up`` runs them): each change is a ``/v1/catalog/register`` call, so the clock
also holds Consul's blocking query, the bridge and NATS ("wait" then includes them).

    .venv/bin/python bench/dns411_latency.py [--sizes 100,1000] [--changes 40] [--via-consul]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime
import json
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dns.message
import dns.rdatatype
import nats

from unify_common.events import (
    Instance,
    InstanceRegistered,
    encode_instance,
    instance_from_health_entry,
)
from unify_common.natsio import ensure_catalog_bucket, ensure_stream, publish_event
from unify_common.settings import CommonSettings
from unify_common.subjects import instance_subject
from unify_testkit.devstack.dnsmasq import free_udp_tcp_port
from unify_testkit.devstack.nats import NatsServer
from unify_testkit.devstack.process import ManagedProcess, reserved_port
from unify_testkit.devstack.stack import DevStack, consul_put

DOMAIN = "bench.test"
PER_SERVICE = 10
PER_NODE = 20


#: one registration: (service, instance id, node number, address, tags)
Reg = tuple[str, str, int, str, list[str]]


def node_address(node: int) -> str:
    """The stable address of node number ``node``."""
    return f"10.200.{node // 256}.{node % 256}"


def instance(reg: Reg) -> Instance:
    """One passing instance as the bridge builds it: the node has a stable address of its
    own, the instance its own ``Service.Address``."""
    service, instance_id, node, address, tags = reg
    return instance_from_health_entry({
        "Node": {"Node": f"node-{node}", "Address": node_address(node)},
        "Service": {"ID": instance_id, "Service": service, "Address": address, "Port": 8080,
                    "Tags": tags, "CreateIndex": 10, "ModifyIndex": 10},
        "Checks": [{"CheckID": f"service:{instance_id}", "Status": "passing",
                    "ServiceID": instance_id}]})


def consul_body(reg: Reg) -> dict:
    """The same registration for Consul's ``/v1/catalog/register`` (no checks: passing)."""
    service, instance_id, node, address, tags = reg
    return {"Node": f"node-{node}", "Address": node_address(node),
            "Service": {"ID": instance_id, "Service": service, "Address": address,
                        "Port": 8080, "Tags": tags}}


def addr(i: int) -> str:
    """A distinct IPv4 address for instance number ``i`` (10.0.0.0/8)."""
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def vhost_tags(name: str, http_port: int) -> list[str]:
    # check=disabled: with consul-bridge, switchboard routes the vhost too (nothing listens)
    return [f"dns={DOMAIN}", f"vhost={name}", f"http={http_port}", "check=disabled"]


def initial_catalog(size: int, http_port: int) -> list[Reg]:
    out: list[Reg] = [("haproxy", f"haproxy-{n}", n, f"192.0.2.{n + 1}", [f"dns={DOMAIN}"])
                      for n in range(2)]
    for i in range(size):
        svc = i // PER_SERVICE
        tags = vhost_tags(f"site-{svc}", http_port) if svc % 2 == 0 else [f"dns={DOMAIN}"]
        out.append((f"svc-{svc}", f"inst-{i}", i // PER_NODE, addr(i), tags))
    return out


def answer(sock: socket.socket, query: bytes) -> list[tuple[str, str]] | None:
    """``(type, value)`` rows of dnsmasq's answer, or ``None`` (port closed, no answer)."""
    try:
        sock.send(query)
        reply = dns.message.from_wire(sock.recv(4096))
    except (OSError, dns.exception.DNSException):
        return None
    return sorted((dns.rdatatype.to_text(rr.rdtype), rd.to_text())
                  for rr in reply.answer for rd in rr)


async def until_answer(port: int, name: str, want: list[tuple[str, str]]) -> float:
    """Poll dnsmasq for ``name`` (type A) every millisecond; the ``perf_counter`` time at
    which the answer equals ``want``. A query is given up after 10 ms: one sent to a
    dnsmasq that is being stopped is lost without any reply (a real resolver would wait
    its retry timeout, seconds), and waiting longer would only measure this poller."""
    query = dns.message.make_query(name, "A").to_wire()
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.01)
            sock.connect(("127.0.0.1", port))
            if answer(sock, query) == want:
                return time.perf_counter()
        await asyncio.sleep(0.001)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def applies_from_log(path: Path, since: int) -> list[tuple[float, str, dict[str, float]]]:
    """``(wall-clock seconds, method, {step: ms})`` of each ``dnsmasq files applied`` line
    of dns411's JSON log after byte ``since`` (the line is written when the apply ended)."""
    out = []
    with open(path, "rb") as handle:
        handle.seek(since)
        for line in handle:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("msg") != "dnsmasq files applied" or "steps_ms" not in rec:
                continue
            stamp = datetime.datetime.strptime(rec["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
            wall = stamp.replace(tzinfo=datetime.UTC).timestamp()
            out.append((wall, rec["method"], {k: float(v) for k, v in rec["steps_ms"].items()}))
    return out


def breakdown(sends: list[tuple[float, str, float]], applies) -> dict[str, dict[str, list]]:
    """Per kind of change, ms of: ``wait`` (sent → reconcile started: NATS delivery and
    dns411's debounce), each apply step, and ``answer`` (apply ended → the poller saw the
    answer), and ``total``; lists are in the order of the changes. Each send is matched with
    the first apply that ended after it. The log's timestamps have millisecond resolution."""
    out: dict[str, dict[str, list]] = {}
    for sent, kind, done in sends:
        match = next((a for a in applies if a[0] >= sent), None)
        if match is None:
            continue
        ended, _, steps = match
        rows = out.setdefault(kind, {})
        rows.setdefault("wait", []).append((ended - sent) * 1000 - sum(steps.values()))
        for step, ms in steps.items():
            rows.setdefault(step, []).append(ms)
        rows.setdefault("answer", []).append((done - ended) * 1000)
        rows.setdefault("total", []).append((done - sent) * 1000)
    return out


class DirectTarget:
    """nats-server + dns411 (its dnsmasq); changes written as consul-bridge writes them."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.http_port = 8080

    async def start(self, catalog: list[Reg]) -> None:
        self.nats = NatsServer(self.workdir / "nats").start()
        self.dns_port = free_udp_tcp_port()
        dns_dir = self.workdir / "dnsmasq"
        (dns_dir / "conf.d").mkdir(parents=True)
        self.common = CommonSettings(nats_urls=(self.nats.url,), node="bench")
        self.nc = await nats.connect(self.nats.url)
        self.js = self.nc.jetstream()
        await ensure_stream(self.js, self.common)
        self.bucket = await ensure_catalog_bucket(self.js, self.common)
        for reg in catalog:
            inst = instance(reg)
            await self.bucket.put(inst.key, encode_instance(inst))
        self.log_path = self.workdir / "dns411.log"
        env = {**os.environ, "NATS_URL": self.nats.url, "UNIFY_NODE": "bench",
               "UNIFY_LOG_FORMAT": "json", "UNIFY_ROUTE53_ENABLED": "0",
               "UNIFY_DNSMASQ_MANAGE": "1", "UNIFY_DNSMASQ_PORT": str(self.dns_port),
               "UNIFY_DNSMASQ_LISTEN": "127.0.0.1", "UNIFY_DNSMASQ_USER": "root",
               "UNIFY_DNSMASQ_HOSTS": str(dns_dir / "hosts"),
               "UNIFY_DNSMASQ_CONF_DIR": str(dns_dir / "conf.d"),
               "UNIFY_DNS_LOCAL_DOMAINS": DOMAIN}
        self.dns411 = ManagedProcess("dns411", [sys.executable, "-m", "dns411"],
                                     log_path=self.log_path, env=env)
        self.dns411.start()

    async def register(self, reg: Reg, n: int) -> float:
        """Write the change; returns the wall-clock time it was sent."""
        inst = instance(reg)
        event = InstanceRegistered(instance=inst, observed_at=int(time.time() * 1000))
        payload = encode_instance(inst)
        sent = time.time()
        # as consul-bridge writes a change: the event on the stream, then the bucket
        await publish_event(self.js, instance_subject("registered", inst.service), event,
                            msg_id=f"bench:{inst.key}:{n}")
        await self.bucket.put(inst.key, payload)
        return sent

    async def stop(self) -> None:
        await self.nc.close()
        self.dns411.stop()
        self.nats.stop()


class ConsulTarget:
    """The whole dev stack (Consul -dev, nats-server, consul-bridge, switchboard with
    HAProxy, dns411 with dnsmasq); changes registered in Consul's catalog."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.http_port = reserved_port()

    async def start(self, catalog: list[Reg]) -> None:
        self.stack = DevStack(self.workdir / "stack", domain=DOMAIN, route53=False,
                              http_port=self.http_port).start()
        self.dns_port = self.stack.dns_port
        self.log_path = self.workdir / "stack" / "logs" / "dns411.log"
        addr_ = self.stack.consul.http_addr
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda reg: consul_put(addr_, "/v1/catalog/register",
                                                 consul_body(reg)), catalog))

    async def register(self, reg: Reg, n: int) -> float:
        sent = time.time()
        await asyncio.get_running_loop().run_in_executor(
            None, consul_put, self.stack.consul.http_addr, "/v1/catalog/register",
            consul_body(reg))
        return sent

    async def stop(self) -> None:
        self.stack.stop()


async def run_size(size: int, changes: int, workdir: Path, via_consul: bool) -> dict:
    target = (ConsulTarget if via_consul else DirectTarget)(workdir)
    await target.start(initial_catalog(size, target.http_port))
    try:
        # the dev stack registers its own HAProxy (127.0.0.1) as well
        haproxy = [("A", "192.0.2.1"), ("A", "192.0.2.2")] + (
            [("A", "127.0.0.1")] if via_consul else [])
        cname = sorted([("CNAME", f"haproxy.{DOMAIN}.")] + haproxy)
        await asyncio.wait_for(until_answer(target.dns_port, f"site-0.{DOMAIN}", cname), 300)
        await asyncio.sleep(2.0 if via_consul else 1.0)
        log_from = target.log_path.stat().st_size
        results: dict[str, list[float]] = {"a": [], "cname": []}
        sends: list[tuple[float, str, float]] = []  # wall clock: sent, kind, answered
        for n in range(changes):
            kind = "a" if n % 2 == 0 else "cname"
            name, node, address = f"new-{kind}-{n}", n % max(1, size // PER_NODE), addr(
                1_000_000 + n)
            if kind == "a":
                reg: Reg = (name, f"new-{n}", node, address, [f"dns={DOMAIN}"])
                want = [("A", address)]
            else:
                reg = (name, f"new-{n}", node, address, vhost_tags(name, target.http_port))
                want = cname
            start = time.perf_counter()
            sent = await target.register(reg, n)
            done = await asyncio.wait_for(until_answer(target.dns_port, f"{name}.{DOMAIN}",
                                                       want), 30)
            results[kind].append((done - start) * 1000)
            sends.append((sent, kind, sent + done - start))
            await asyncio.sleep(0.3)
        await asyncio.sleep(0.5)  # the last log line
        steps = breakdown(sends, applies_from_log(target.log_path, log_from))
        return {"size": size, "results": results, "steps": steps}
    finally:
        await target.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--changes", type=int, default=40,
                        help="changes per size, half (a) and half (b)")
    parser.add_argument("--via-consul", action="store_true",
                        help="the whole dev stack: register in Consul, through consul-bridge")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="unify-dns411-lat-") as tmp:
        for size in [int(s) for s in args.sizes.split(",")]:
            row = await run_size(size, args.changes, Path(tmp) / f"size-{size}",
                                 args.via_consul)
            rows.append(row)
            for kind, steps in sorted(row["steps"].items()):
                text = ", ".join(f"{k} {statistics.median(v):.1f}"
                                 for k, v in steps.items())
                print(f"size={size} ({kind}) median ms: {text}", flush=True)
                worst = max(range(len(steps["total"])), key=steps["total"].__getitem__)
                text = ", ".join(f"{k} {v[worst]:.1f}" for k, v in steps.items())
                print(f"size={size} ({kind}) slowest ms: {text}", flush=True)
    print("\n| instances | change | n | p50 | p99 | max |")
    print("|---:|---|---:|---:|---:|---:|")
    for row in rows:
        for kind, label in (("a", "(a) new A record"), ("cname", "(b) new vhost CNAME")):
            v = row["results"][kind]
            print(f"| {row['size']:,} | {label} | {len(v)} | {pct(v, 0.5):.1f} ms | "
                  f"{pct(v, 0.99):.1f} ms | {max(v):.1f} ms |")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    asyncio.run(main())
