"""Benchmark: switchboard's pure core (desired state + Jinja2 render) at 10,000 instances.

Run: ``.venv/bin/python bench/switchboard_render.py [instances] [services] [--cold-runs N]``.

Prints, wall-clock and CPU (``process_time``) milliseconds side by side:

* import of the switchboard modules (includes compiling the Jinja2 template, once per process);
* *cold*: the first build+render of the process (empty caches), in ``--cold-runs`` fresh
  processes (default 5), median and range;

the catalog is handed over as the service does, catalog key -> instance (the bucket's keys);
* *warm*: build+render of the same catalog again (median of 5): every cache hit;
* *steady*: with the previous slot layout, as the service does (median of 5);
* *one change*: one new instance of an existing service, then one new vhost service, each
  after a build+render of the catalog without it (median of 5): the reconcile of a change;

then the config size and, when ``haproxy`` is installed, how long ``haproxy -c`` takes on it.
The machine's load average is printed first: the numbers move with it.

``--serve N`` measures instead switchboard's share of "catalog change -> HAProxy serving a new
vhost": a real HAProxy master-worker loaded with the catalog (its services with
``check=disabled`` so 10,000 unreachable servers are not health-checked), then N times a new
default-profile vhost pointing at a local HTTP server, applied by switchboard's Reconciler
(no NATS, no debounce), one second apart: time until HAProxy answers 200 for the new Host
(through a spare backend), and until the reload that follows is confirmed. p50/p99 over the N
changes.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_t0, _c0 = time.perf_counter(), time.process_time()
from switchboard.desired import build_desired  # noqa: E402
from switchboard.plan import slot_layout  # noqa: E402
from switchboard.render import RenderOptions, render  # noqa: E402

IMPORT_MS = ((time.perf_counter() - _t0) * 1000, (time.process_time() - _c0) * 1000)
from tests.fixtures.catalog import make_instance, vhost_catalog  # noqa: E402

OPTIONS = RenderOptions(bind="0.0.0.0", run_dir="/run/unify-switchboard", host_maps=False)


def timed(instances, previous=None):
    """(wall ms, cpu ms, desired, bytes) of one build+render."""
    wall, cpu = time.perf_counter(), time.process_time()
    desired = build_desired(instances, previous_slots=previous)
    data = render(desired, OPTIONS)
    return ((time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000,
            desired, data)


def median_pair(samples) -> str:
    return (f"{statistics.median(s[0] for s in samples):.1f} ms wall, "
            f"{statistics.median(s[1] for s in samples):.1f} ms CPU")


def cold_runs(count: int, services: int, runs: int) -> list[tuple[float, float]]:
    out = []
    for _ in range(runs):
        answer = subprocess.run([sys.executable, __file__, str(count), str(services),
                                 "--cold-only"], capture_output=True, text=True, check=True)
        out.append(tuple(json.loads(answer.stdout)))
    return out


def serve_latency(count: int, services: int, changes: int) -> None:
    """See the module doc (``--serve``)."""
    import asyncio
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import httpx

    from switchboard.apply.haproxy import HAProxySink
    from switchboard.reconciler import Reconciler
    from switchboard.settings import SwitchboardSettings
    from unify_common.settings import CommonSettings
    from unify_common.state import CatalogState
    from unify_testkit.devstack.haproxy import HAProxyServer
    from unify_testkit.devstack.process import free_port

    class Hello(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args) -> None:
            pass

    class Quiet(ThreadingHTTPServer):
        def handle_error(self, request, client_address) -> None:
            pass  # HAProxy's health checks close their connections early

    backend = Quiet(("127.0.0.1", 0), Hello)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    port = free_port()
    base = []
    for inst in vhost_catalog(count, services):
        tags = tuple(t.replace("http", f"http={port}") if t == "http" else t
                     for t in inst.tags) + ("check=disabled",)
        base.append(make_instance(inst.service, inst.instance_id, inst.address, inst.port,
                                  list(tags), node=inst.node, create_index=inst.create_index))

    async def run() -> tuple[list[float], list[float], list[str]]:
        with tempfile.TemporaryDirectory(prefix="sb-serve-", dir="/tmp") as tmp:
            run_dir = Path(tmp)
            haproxy = HAProxyServer(run_dir).start()
            try:
                settings = SwitchboardSettings(
                    common=CommonSettings(node="bench"), config_path=haproxy.config,
                    master_socket=haproxy.master_socket, spare_backends=4,
                    render=RenderOptions(bind="127.0.0.1", run_dir=tmp, host_maps=True))
                methods: list[str] = []
                runtime_at: list[float] = []

                async def publish(subject, event, msg_id) -> None:
                    if hasattr(event, "method"):
                        methods.append(event.method)
                        if event.method == "runtime":
                            runtime_at.append(time.perf_counter())

                reconciler = Reconciler(settings, HAProxySink(
                    config_path=haproxy.config, master_socket=haproxy.master_socket), publish)
                instances = {i.key: i for i in base}
                await reconciler(CatalogState(instances=dict(instances)))
                serving, reloaded, published = [], [], []
                async with httpx.AsyncClient(timeout=2.0) as client:
                    for n in range(changes):
                        await asyncio.sleep(1.0)  # let the last reload's old worker go
                        new = make_instance(f"new{n}", f"new{n}-1", "127.0.0.1",
                                            backend.server_address[1],
                                            ["dns=example.com", f"vhost=new{n}", f"http={port}"],
                                            node="node-0", create_index=count + n + 1)
                        instances[new.key] = new
                        start = time.perf_counter()
                        task = asyncio.create_task(
                            reconciler(CatalogState(instances=dict(instances))))
                        while True:
                            resp = await client.get(f"http://127.0.0.1:{port}/",
                                                    headers={"Host": f"new{n}.example.com"})
                            if resp.status_code == 200:
                                break
                            await asyncio.sleep(0.002)
                        serving.append((time.perf_counter() - start) * 1000)
                        await task
                        reloaded.append((time.perf_counter() - start) * 1000)
                        if len(runtime_at) == n + 1:
                            published.append((runtime_at[-1] - start) * 1000)
                return serving, reloaded, published, methods
            finally:
                haproxy.stop()
                backend.shutdown()

    serving, reloaded, published, methods = asyncio.run(run())

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    print("load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"instances={count} services={services} changes={changes}")
    print(f"new vhost -> HAProxy answering 200: p50 {pct(serving, 0.5):.1f} ms, "
          f"p99 {pct(serving, 0.99):.1f} ms")
    if published:
        print(f"new vhost -> Applied(runtime):      p50 {pct(published, 0.5):.1f} ms, "
              f"p99 {pct(published, 0.99):.1f} ms (build, render, runtime commands)")
    print(f"new vhost -> reload confirmed:      p50 {pct(reloaded, 0.5):.1f} ms, "
          f"p99 {pct(reloaded, 0.99):.1f} ms")
    print(f"Applied methods after the first: {' '.join(methods[1:])}")


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    count = int(args[0]) if args else 10_000
    services = int(args[1]) if len(args) > 1 else 500
    # As the service holds it: the catalog bucket's key -> instance (keys from the bucket)
    instances = {inst.key: inst for inst in vhost_catalog(count, services)}
    if "--serve" in sys.argv:
        serve_latency(count, services, int(sys.argv[sys.argv.index("--serve") + 1]))
        return
    if "--cold-only" in sys.argv:
        wall, cpu, _, _ = timed(instances)
        print(json.dumps([wall, cpu]))
        return
    runs = 5
    if "--cold-runs" in sys.argv:
        runs = int(sys.argv[sys.argv.index("--cold-runs") + 1])
    print("load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    cold = cold_runs(count, services, runs)
    first = timed(instances)
    desired, data = first[2], first[3]
    warm = [timed(instances) for _ in range(5)]
    layout = slot_layout(desired)
    steady = [timed(instances, layout) for _ in range(5)]

    joiner = make_instance("svc0", "svc0-new", "10.200.0.1", 8000,
                           ["dns=example.com", "dns=example.org", "vhost=svc0", "http"],
                           node="node-0", create_index=1)
    vhost = make_instance("fresh", "fresh-1", "10.200.0.2", 8000,
                          ["dns=example.com", "vhost=fresh", "http"], node="node-0",
                          create_index=count + 1)
    changes = {"new instance of a service": joiner, "new vhost service": vhost}
    changed = {}
    for label, extra in changes.items():
        samples = []
        for _ in range(5):
            timed(instances, layout)
            samples.append(timed({**instances, extra.key: extra}, layout))
        changed[label] = samples

    print(f"instances={count} services={services} backends={len(desired.backends)} "
          f"config_bytes={len(data)}")
    print(f"import (template compiled): {IMPORT_MS[0]:.1f} ms wall, {IMPORT_MS[1]:.1f} ms CPU")
    walls, cpus = sorted(c[0] for c in cold), sorted(c[1] for c in cold)
    print(f"cold build+render, {runs} fresh processes: median {median_pair(cold)} "
          f"(wall {walls[0]:.1f}-{walls[-1]:.1f}, CPU {cpus[0]:.1f}-{cpus[-1]:.1f})")
    print(f"warm build+render (median of 5): {median_pair(warm)}")
    print(f"with previous slot layout (median of 5): {median_pair(steady)}")
    for label, samples in changed.items():
        print(f"{label} (median of 5): {median_pair(samples)}")
    if shutil.which("haproxy"):
        with tempfile.TemporaryDirectory(prefix="sb-bench-") as tmp:
            cfg = Path(tmp) / "haproxy.cfg"
            cfg.write_bytes(render(desired, RenderOptions(bind="127.0.0.1", run_dir=tmp,
                                                             host_maps=False)))
            start = time.perf_counter()
            result = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True)
            took = time.perf_counter() - start
        print(f"haproxy -c on it: {took * 1000:.1f} ms (exit {result.returncode})")


if __name__ == "__main__":
    main()
