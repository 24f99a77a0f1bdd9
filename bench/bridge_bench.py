"""Benchmark: Consul registration → event on NATS and → HAProxy serving it, and
consul-bridge CPU time per change, at several catalog sizes. Not a test: it prints numbers.

Everything is real: the dev stack (Consul -dev, nats-server, consul-bridge, switchboard with
HAProxy, dns411 with dnsmasq; Route 53 off) as separate processes on loopback.
The catalog is spread over services of 10 instances and nodes of 20 instances (each node runs
instances of 20 different services), every service exposed as a vhost, as a cluster of many
small web services. Each measured change registers one new vhost service pointing at a real
HTTP backend; the clock stops when its event arrives on NATS, when HAProxy answers 200
for its Host header, and when dnsmasq answers its name.

    .venv/bin/python bench/bridge_bench.py [--sizes 100,1000,10000] [--changes 50]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import nats

from unify_cli.devstack.process import ManagedProcess, free_port, tcp_open
from unify_cli.devstack.stack import DevStack, consul_put

PER_SERVICE = 10
PER_NODE = 20
DOMAIN = "bench.test"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def register(addr: str, i: int, size: int, http_port: int) -> None:
    consul_put(addr, "/v1/catalog/register", {
        "Node": f"bench-node-{i % max(1, size // PER_NODE)}",
        # loopback addresses where nothing listens: traffic never leaves the machine
        "Address": f"127.{1 + ((i >> 16) & 127)}.{(i >> 8) & 255}.{i & 255}",
        "Service": {"ID": f"inst-{i}", "Service": f"svc-{i // PER_SERVICE}", "Port": 8080,
                    "Tags": [f"dns={DOMAIN}", f"vhost=svc-{i // PER_SERVICE}",
                             f"http={http_port}", "check=disabled"]}})


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def resolves(dns_port: int, name: str) -> bool:
    """True when dnsmasq answers ``name`` with at least one record."""
    import dns.message
    import dns.query

    try:
        reply = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=dns_port,
                              timeout=0.2)
    except Exception:
        return False
    return bool(reply.answer)


def serves(http_port: int, host: str) -> bool:
    req = urllib.request.Request(f"http://127.0.0.1:{http_port}/", headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=0.5) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


async def run_size(size: int, changes: int, workdir: Path) -> dict:
    stack = DevStack(workdir / f"stack-{size}", domain=DOMAIN, route53=False).start()
    backend_port = free_port()
    backend = ManagedProcess("backend", [sys.executable, "-m", "unify_cli.demo_backend",
                                         "--port", str(backend_port), "--name", "bench"],
                             log_path=workdir / f"backend-{size}.log")
    backend.start(lambda: tcp_open("127.0.0.1", backend_port))
    addr = stack.consul.http_addr
    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: register(addr, i, size, stack.http_port), range(size)))
        nc = await nats.connect(stack.nats.url)
        js = nc.jetstream()
        started = time.monotonic()
        while True:  # the bridge publishes the initial catalog, switchboard renders it
            try:
                if (await js.stream_info("UNIFY")).state.messages >= size:
                    break
            except Exception:
                pass
            await asyncio.sleep(0.2)
            if time.monotonic() - started > 900:
                raise TimeoutError("initial load not published")
        initial_load_s = time.monotonic() - started
        await asyncio.sleep(3.0 + size / 2000)  # let switchboard and dns411 settle

        arrived: dict[str, float] = {}

        async def on_msg(msg):
            arrived[json.loads(msg.data)["instance"]["instance_id"]] = time.perf_counter()

        await nc.subscribe("unify.catalog.instance.registered.>", cb=on_msg)
        bridge_pid = stack.services["consul-bridge"].pid
        for _ in range(60):  # wait until the bridge is quiet (initial load fully digested)
            c0 = cpu_seconds(bridge_pid)
            await asyncio.sleep(2.0)
            if cpu_seconds(bridge_pid) - c0 <= 0.04:
                break
        idle0, t_idle = cpu_seconds(bridge_pid), time.perf_counter()
        await asyncio.sleep(5.0)
        idle_rate = (cpu_seconds(bridge_pid) - idle0) / (time.perf_counter() - t_idle)

        to_nats, to_haproxy, to_dns = [], [], []
        cpu0, t0 = cpu_seconds(bridge_pid), time.perf_counter()
        loop = asyncio.get_running_loop()
        for n in range(changes):
            i, name = size + n, f"new-{n}"
            node = f"bench-node-{i % max(1, size // PER_NODE)}"
            body = {"Node": node, "Address": "127.0.0.1",
                    "Service": {"ID": f"inst-{i}", "Service": name, "Address": "127.0.0.1",
                                "Port": backend_port,
                                "Tags": [f"dns={DOMAIN}", f"vhost={name}",
                                         f"http={stack.http_port}", "check=disabled"]}}
            sent = time.perf_counter()
            await loop.run_in_executor(None, consul_put, addr, "/v1/catalog/register", body)
            while f"inst-{i}" not in arrived:
                await asyncio.sleep(0.0005)
            to_nats.append((arrived[f"inst-{i}"] - sent) * 1000)
            async def until(check, *args) -> float:
                while not await loop.run_in_executor(None, check, *args):
                    await asyncio.sleep(0.002)
                return time.perf_counter()

            http_done, dns_done = await asyncio.gather(  # polled side by side
                until(serves, stack.http_port, f"{name}.{DOMAIN}"),
                until(resolves, stack.dns_port, f"{name}.{DOMAIN}"))
            to_haproxy.append((http_done - sent) * 1000)
            to_dns.append((dns_done - sent) * 1000)
            await asyncio.sleep(0.05)
        wall = time.perf_counter() - t0
        cpu = cpu_seconds(bridge_pid) - cpu0 - idle_rate * wall
        await nc.close()
        return {"size": size, "nats_p50": pct(to_nats, 0.5), "nats_p99": pct(to_nats, 0.99),
                "haproxy_p50": pct(to_haproxy, 0.5), "haproxy_p99": pct(to_haproxy, 0.99),
                "dns_p50": pct(to_dns, 0.5), "dns_p99": pct(to_dns, 0.99),
                "cpu_ms": max(0.0, cpu) * 1000 / changes, "load_s": initial_load_s}
    finally:
        backend.stop()
        stack.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--changes", type=int, default=50)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="unify-bench-") as tmp:
        for size in [int(s) for s in args.sizes.split(",")]:
            r = await run_size(size, args.changes, Path(tmp))
            rows.append(r)
            print(f"size={size}: NATS p50={r['nats_p50']:.1f} p99={r['nats_p99']:.1f} ms; "
                  f"HAProxy p50={r['haproxy_p50']:.1f} p99={r['haproxy_p99']:.1f} ms; "
                  f"dnsmasq p50={r['dns_p50']:.1f} p99={r['dns_p99']:.1f} ms; "
                  f"bridge CPU/change={r['cpu_ms']:.2f} ms; load {r['load_s']:.1f} s",
                  flush=True)
    print("\n| instances | → NATS p50 | → NATS p99 | → HAProxy p50 | → HAProxy p99 "
          "| → dnsmasq p50 | → dnsmasq p99 | bridge CPU per change |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['size']:,} | {r['nats_p50']:.1f} ms | {r['nats_p99']:.1f} ms | "
              f"{r['haproxy_p50']:.1f} ms | {r['haproxy_p99']:.1f} ms | "
              f"{r['dns_p50']:.1f} ms | {r['dns_p99']:.1f} ms | {r['cpu_ms']:.2f} ms |")
    base = rows[0]["cpu_ms"] or 1e-9
    print(f"\nbridge CPU per change, largest vs smallest catalog: "
          f"{rows[-1]['cpu_ms'] / base:.2f}x")


def _stop_on_sigterm() -> None:
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))


if __name__ == "__main__":
    _stop_on_sigterm()
    asyncio.run(main())
