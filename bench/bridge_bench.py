"""Benchmark: Consul registration → event on NATS (and → HAProxy serving, with --haproxy),
and consul-bridge CPU time per change, at several catalog sizes.

Everything is real: a Consul agent (-dev), nats-server, the bridge as its own process.
Instances are spread over services of 10 instances each and nodes of 20 instances each
(each node runs instances of 20 different services), as a cluster of many small services.

    .venv/bin/python bench/bridge_bench.py [--sizes 100,1000,10000] [--changes 100]

Prints one table row per size: p50/p99 latency in milliseconds and bridge CPU milliseconds
per change (CPU measured from /proc for the bridge process, minus its idle CPU over the same
wall time).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unify_cli.devstack.consul import ConsulAgent  # noqa: E402
from unify_cli.devstack.nats import NatsServer  # noqa: E402

PER_SERVICE = 10
PER_NODE = 20
CLK_TCK = os.sysconf("SC_CLK_TCK")


def consul_put(addr: str, path: str, body: dict) -> None:
    req = urllib.request.Request(f"http://{addr}{path}", data=json.dumps(body).encode(),
                                 method="PUT")
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()


def register(addr: str, i: int, size: int, tags: list[str] | None = None,
             service: str | None = None):
    # a node runs about PER_NODE containers of different services, as a Swarm node does
    consul_put(addr, "/v1/catalog/register", {
        "Node": f"bench-node-{i % max(1, size // PER_NODE)}", "Address": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
        "Service": {"ID": f"inst-{i}", "Service": service or f"svc-{i // PER_SERVICE}",
                    "Port": 8000 + i % 1000, "Tags": tags or []}})


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def stream_count(js) -> int:
    return (await js.stream_info("UNIFY")).state.messages


async def run_size(size: int, changes: int, workdir: Path) -> dict:
    consul = ConsulAgent(workdir / f"consul-{size}").start()
    server = NatsServer(workdir / f"nats-{size}").start()
    bridge = None
    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: register(consul.http_addr, i, size), range(size)))
        env = dict(os.environ, CONSUL_HTTP_ADDR=consul.http_addr, NATS_URL=server.url,
                   UNIFY_NODE="bench", UNIFY_LOG_LEVEL="WARNING")
        profile = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]] \
            if os.environ.get("BENCH_PROFILE") else []
        bridge = subprocess.Popen([sys.executable, *profile, "-m", "consul_bridge"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        started = time.monotonic()
        while True:
            try:
                if await stream_count(js) >= size:
                    break
            except Exception:
                pass
            await asyncio.sleep(0.2)
            if time.monotonic() - started > 600:
                raise TimeoutError("initial load not published")
        initial_load_s = time.monotonic() - started
        await asyncio.sleep(2.0)

        arrived: dict[str, float] = {}

        async def on_msg(msg):
            body = json.loads(msg.data)
            arrived[body["instance"]["instance_id"]] = time.perf_counter()

        await nc.subscribe("unify.catalog.instance.registered.>", cb=on_msg)
        idle_cpu0, idle_t0 = cpu_seconds(bridge.pid), time.perf_counter()
        await asyncio.sleep(3.0)
        idle_rate = (cpu_seconds(bridge.pid) - idle_cpu0) / (time.perf_counter() - idle_t0)

        latencies = []
        cpu0, t0 = cpu_seconds(bridge.pid), time.perf_counter()
        loop = asyncio.get_running_loop()
        for n in range(changes):
            i = size + n
            # join an existing service: the change touches one service of 10 instances
            service = f"svc-{n % max(1, size // PER_SERVICE)}"
            sent = time.perf_counter()
            await loop.run_in_executor(None, register, consul.http_addr, i, size, None, service)
            key = f"inst-{i}"
            while key not in arrived:
                await asyncio.sleep(0.0005)
            latencies.append((arrived[key] - sent) * 1000)
            await asyncio.sleep(0.02)
        wall = time.perf_counter() - t0
        cpu = cpu_seconds(bridge.pid) - cpu0 - idle_rate * wall
        await nc.close()
        return {"size": size, "p50_ms": pct(latencies, 0.5), "p99_ms": pct(latencies, 0.99),
                "cpu_ms_per_change": max(0.0, cpu) * 1000 / changes,
                "initial_load_s": initial_load_s}
    finally:
        if bridge is not None:
            bridge.terminate()
            bridge.wait(10)
        server.stop()
        consul.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--changes", type=int, default=100)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="unify-bench-") as tmp:
        for size in [int(s) for s in args.sizes.split(",")]:
            rows.append(await run_size(size, args.changes, Path(tmp)))
            r = rows[-1]
            print(f"size={r['size']}: p50={r['p50_ms']:.1f} ms p99={r['p99_ms']:.1f} ms "
                  f"cpu/change={r['cpu_ms_per_change']:.2f} ms load={r['initial_load_s']:.1f} s",
                  flush=True)
    print()
    print("| instances | registration → NATS p50 | p99 | bridge CPU per change |")
    print("|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['size']:,} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | "
              f"{r['cpu_ms_per_change']:.2f} ms |")
    base = rows[0]["cpu_ms_per_change"] or 1e-9
    print(f"\nCPU per change, largest vs smallest: {rows[-1]['cpu_ms_per_change'] / base:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
