"""Benchmark: Consul registration → event on NATS and → HAProxy serving it, and
consul-bridge CPU time per change, at several catalog sizes. Not a test: it prints numbers.

Everything is real: the dev stack (Consul -dev, nats-server, consul-bridge, switchboard with
HAProxy, dns411 with dnsmasq; Route 53 off) as separate processes on loopback.
The catalog is spread over services of 10 instances and nodes of 20 instances (each node runs
instances of 20 different services), every service exposed as a vhost, as a cluster of many
small web services; every node keeps one address and each instance has its own address
(``Service.Address``), as registrator writes them. Two kinds of measured change: an instance
joins an existing vhost service (the clock stops when HAProxy answers from the new backend),
and a new vhost service appears (the clock stops when HAProxy answers 200 for its Host
header and when dnsmasq answers its name). Both also stop a clock when the event arrives
on NATS. Each change starts once switchboard has reported the previous one done (its
``Applied`` event), so a change is not timed behind the previous one's ``haproxy -c``.

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

from unify_testkit.devstack.process import ManagedProcess, free_port, tcp_open
from unify_testkit.devstack.stack import DevStack, consul_put

PER_SERVICE = 10
PER_NODE = 20
DOMAIN = "bench.test"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def node_of(i: int, size: int) -> tuple[str, str]:
    """Node name and its one, stable address for instance number ``i`` (nodes of
    ``PER_NODE`` instances). A node keeps its address: registrator on a host always sends
    the same one, and a changed node address is a real change to every instance on it."""
    k = i % max(1, size // PER_NODE)
    return f"bench-node-{k}", f"127.254.{(k >> 8) & 255}.{k & 255}"


def register(addr: str, i: int, size: int, http_port: int) -> None:
    node, node_address = node_of(i, size)
    consul_put(addr, "/v1/catalog/register", {
        "Node": node, "Address": node_address,
        # loopback addresses where nothing listens: traffic never leaves the machine
        "Service": {"ID": f"inst-{i}", "Service": f"svc-{i // PER_SERVICE}", "Port": 8080,
                    "Address": f"127.{1 + ((i >> 16) & 127)}.{(i >> 8) & 255}.{i & 255}",
                    "Tags": [f"dns={DOMAIN}", f"vhost=svc-{i // PER_SERVICE}",
                             f"http={http_port}", "check=disabled"]}})


def register_join_target(addr: str, n: int, size: int, http_port: int, port: int) -> None:
    """Service ``join-<n>``: one instance on the backend that answers "old"; a measured
    change later adds a second instance on the backend that answers "new"."""
    node, node_address = node_of(n, size)
    consul_put(addr, "/v1/catalog/register", {
        "Node": node, "Address": node_address,
        "Service": {"ID": f"join-{n}-a", "Service": f"join-{n}", "Port": port,
                    "Address": "127.0.0.1",
                    "Tags": [f"dns={DOMAIN}", f"vhost=join-{n}", f"http={http_port}",
                             "check=disabled"]}})


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def resolves(dns_port: int, name: str) -> bool:
    """True when dnsmasq answers ``name`` with at least one record. The timeout is short
    (20 ms): a query sent while dns411 restarts dnsmasq is lost, and a long timeout would
    add itself to the measured time instead of polling again."""
    import dns.message
    import dns.query

    try:
        reply = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=dns_port,
                              timeout=0.02)
    except Exception:
        return False
    return bool(reply.answer)


def serves(http_port: int, host: str, backend: str | None = None) -> bool:
    """True when HAProxy answers 200 for ``host`` (from ``backend``, by its X-Backend
    header, when given)."""
    req = urllib.request.Request(f"http://127.0.0.1:{http_port}/", headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=0.5) as resp:
            return resp.status == 200 and backend in (None, resp.headers.get("X-Backend"))
    except (urllib.error.URLError, OSError):
        return False


def start_backend(name: str, workdir: Path) -> tuple[ManagedProcess, int]:
    port = free_port()
    proc = ManagedProcess(f"backend-{name}", [sys.executable, "-m", "unify_testkit.demo_backend",
                                              "--port", str(port), "--name", name],
                          log_path=workdir / f"backend-{name}.log")
    proc.start(lambda: tcp_open("127.0.0.1", port))
    return proc, port


async def run_size(size: int, changes: int, workdir: Path) -> dict:
    """One catalog of ``size`` instances; ``changes`` measured changes of each kind."""
    stack = DevStack(workdir / f"stack-{size}", domain=DOMAIN, route53=False).start()
    old, old_port = start_backend("old", workdir)
    new, new_port = start_backend("new", workdir)
    addr = stack.consul.http_addr
    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: register(addr, i, size, stack.http_port),
                          range(size - changes)))
            list(pool.map(lambda n: register_join_target(addr, n, size, stack.http_port,
                                                         old_port), range(changes)))
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
        loop = asyncio.get_running_loop()

        async def until(check, *args) -> float:
            while not await loop.run_in_executor(None, check, *args):
                await asyncio.sleep(0.002)
            return time.perf_counter()

        await until(serves, stack.http_port, f"join-{changes - 1}.{DOMAIN}", "old")
        await asyncio.sleep(2.0)  # let switchboard and dns411 settle

        arrived: dict[str, float] = {}

        async def on_msg(msg):
            arrived[json.loads(msg.data)["instance"]["instance_id"]] = time.perf_counter()

        await nc.subscribe("unify.catalog.instance.registered.>", cb=on_msg)
        applied: list[tuple[float, str]] = []  # (arrival, method) of switchboard's reports

        async def on_applied(msg):
            report = json.loads(msg.data)
            if report["config_hash"]:  # empty: the quick step ahead of the file; the full
                applied.append((time.perf_counter(), report["method"]))  # apply follows

        await nc.subscribe("unify.applied.switchboard.>", cb=on_applied)

        async def settled(sent: float, final: str) -> None:
            """Wait until switchboard reported the change done (``final``: ``runtime`` for a
            join; ``reload`` for a new vhost, which serves through a spare first), so each
            change is timed alone, not behind the previous one's ``haproxy -c`` and reload
            (a burst is debounced into one apply; that is another measure)."""
            deadline = time.perf_counter() + 30
            while not any(t > sent and m == final for t, m in applied):
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"no Applied {final} from switchboard")
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
        bridge_pid = stack.services["consul-bridge"].pid
        for _ in range(60):  # wait until the bridge is quiet (initial load fully digested)
            c0 = cpu_seconds(bridge_pid)
            await asyncio.sleep(2.0)
            if cpu_seconds(bridge_pid) - c0 <= 0.04:
                break
        idle0, t_idle = cpu_seconds(bridge_pid), time.perf_counter()
        await asyncio.sleep(20.0)  # long: blocking queries time out and are re-asked at random
        idle_rate = (cpu_seconds(bridge_pid) - idle0) / (time.perf_counter() - t_idle)

        async def register_and_wait(body: dict) -> tuple[float, float]:
            instance_id = body["Service"]["ID"]
            sent = time.perf_counter()
            await loop.run_in_executor(None, consul_put, addr, "/v1/catalog/register", body)
            while instance_id not in arrived:
                await asyncio.sleep(0.0005)
            return sent, (arrived[instance_id] - sent) * 1000

        result: dict = {"size": size, "load_s": initial_load_s}
        # kind 1: a new instance joins an existing vhost service (the common case: scaling,
        # a redeploy); HAProxy must answer from the new backend.
        to_nats, to_haproxy = [], []
        cpu0, t0 = cpu_seconds(bridge_pid), time.perf_counter()
        for n in range(changes):
            node, node_address = node_of(n, size)
            sent, nats_ms = await register_and_wait({
                "Node": node, "Address": node_address,
                "Service": {"ID": f"join-{n}-b", "Service": f"join-{n}", "Port": new_port,
                            "Address": "127.0.0.1",
                            "Tags": [f"dns={DOMAIN}", f"vhost=join-{n}",
                                     f"http={stack.http_port}", "check=disabled"]}})
            to_nats.append(nats_ms)
            done = await until(serves, stack.http_port, f"join-{n}.{DOMAIN}", "new")
            to_haproxy.append((done - sent) * 1000)
            await settled(sent, "runtime")
        wall = time.perf_counter() - t0
        cpu = cpu_seconds(bridge_pid) - cpu0 - idle_rate * wall
        result["join"] = summary(to_nats, to_haproxy, [], cpu, changes)

        # kind 2: a new vhost service (new frontend routing: a reload, and a new DNS name)
        to_nats, to_haproxy, to_dns = [], [], []
        cpu0, t0 = cpu_seconds(bridge_pid), time.perf_counter()
        for n in range(changes):
            i, name = size + n, f"new-{n}"
            node, node_address = node_of(i, size)
            sent, nats_ms = await register_and_wait({
                "Node": node, "Address": node_address,
                "Service": {"ID": f"inst-{i}", "Service": name, "Address": "127.0.0.1",
                            "Port": new_port,
                            "Tags": [f"dns={DOMAIN}", f"vhost={name}",
                                     f"http={stack.http_port}", "check=disabled"]}})
            to_nats.append(nats_ms)
            http_done, dns_done = await asyncio.gather(  # polled side by side
                until(serves, stack.http_port, f"{name}.{DOMAIN}"),
                until(resolves, stack.dns_port, f"{name}.{DOMAIN}"))
            to_haproxy.append((http_done - sent) * 1000)
            to_dns.append((dns_done - sent) * 1000)
            await settled(sent, "reload")
        wall = time.perf_counter() - t0
        cpu = cpu_seconds(bridge_pid) - cpu0 - idle_rate * wall
        result["vhost"] = summary(to_nats, to_haproxy, to_dns, cpu, changes)
        await nc.close()
        return result
    finally:
        old.stop()
        new.stop()
        stack.stop()


def summary(to_nats: list[float], to_haproxy: list[float], to_dns: list[float],
            cpu_s: float, changes: int) -> dict:
    """p50/p99 in ms of each list (None when empty) and bridge CPU ms per change."""
    out = {"cpu_ms": max(0.0, cpu_s) * 1000 / changes}
    for key, values in (("nats", to_nats), ("haproxy", to_haproxy), ("dns", to_dns)):
        out[f"{key}_p50"] = pct(values, 0.5) if values else None
        out[f"{key}_p99"] = pct(values, 0.99) if values else None
    return out


def fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} ms"


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
            for kind in ("join", "vhost"):
                k = r[kind]
                print(f"size={size} {kind}: NATS p50={fmt(k['nats_p50'])} "
                      f"p99={fmt(k['nats_p99'])}; HAProxy p50={fmt(k['haproxy_p50'])} "
                      f"p99={fmt(k['haproxy_p99'])}; dnsmasq p50={fmt(k['dns_p50'])} "
                      f"p99={fmt(k['dns_p99'])}; bridge CPU/change={k['cpu_ms']:.2f} ms; "
                      f"initial load {r['load_s']:.1f} s", flush=True)
    print("\n| instances | change | → NATS p50 | → NATS p99 | → HAProxy p50 | → HAProxy p99 "
          "| → dnsmasq p50 | → dnsmasq p99 | bridge CPU per change |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        for kind, label in (("join", "instance joins a vhost"), ("vhost", "new vhost service")):
            k = r[kind]
            print(f"| {r['size']:,} | {label} | {fmt(k['nats_p50'])} | {fmt(k['nats_p99'])} | "
                  f"{fmt(k['haproxy_p50'])} | {fmt(k['haproxy_p99'])} | {fmt(k['dns_p50'])} | "
                  f"{fmt(k['dns_p99'])} | {k['cpu_ms']:.2f} ms |")
    for kind in ("join", "vhost"):
        base = rows[0][kind]["cpu_ms"] or 1e-9
        print(f"bridge CPU per change ({kind}), largest vs smallest catalog: "
              f"{rows[-1][kind]['cpu_ms'] / base:.2f}x")


def _stop_on_sigterm() -> None:
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))


if __name__ == "__main__":
    _stop_on_sigterm()
    asyncio.run(main())
