"""Benchmark: the private registry cluster (registry-admin, issue 10). Not a test.

Real parts only: Consul ``-dev``, nats-server, consul-bridge and registry-admin (in this
process), three Debian ``docker-registry`` processes on 127.0.0.11-13, one port, one
storage directory, TLS with the generated CA; the real dockerd at ``DOCKER_HOST``.
``registry.unify.test`` is written into /etc/hosts three times (one line per instance: the
"round-robin DNS" of the original design, as far as /etc/hosts can give it; Go's resolver
returns all three, dockerd dials them in order) and removed again at the end.

Measured:

* **push of a 50 MB image** (one 50 MB random layer, ``FROM scratch``), through the cluster
  name ``registry.unify.test:<port>`` versus straight to one instance ``127.0.0.11:<port>``
  (also TLS, same CA), alternating, a new random layer every push; overhead ratio of the
  medians (goal <= 1.1);
* **notification -> event on NATS**: (a) end to end, a manifest PUT through the registry API
  until the ``image.pushed`` event arrives on a NATS subscription (the registry's own
  notification, the tag resolution, the publish); (b) registry-admin alone, a notification
  POSTed to it for an existing tag until the event arrives (goal p99 <= 50 ms);
* **certificate re-issue + rolling restart of 3 instances**: a third registry node is
  registered in Consul (the other two are there); the clock runs until all three serve the
  re-issued certificate (consul-bridge, NATS, the re-issue, three restarts one at a time,
  each waiting until the instance serves again). Between rounds the node is deregistered and
  that rollout waited for.

    DOCKER_HOST=unix:///run/unify-docker.sock .venv/bin/python bench/registry_bench.py \\
        [--pushes 5] [--events 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import nats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "services/registry-admin/tests/integration"))
sys.path.insert(0, str(ROOT))

from ra_support import RegistryProcess, free_port, push_image, served_cert_der  # noqa: E402

from consul_bridge.service import run as run_bridge  # noqa: E402
from consul_bridge.settings import BridgeSettings  # noqa: E402
from registry_admin import pki  # noqa: E402
from registry_admin.plan import META_SECRET_FP, Node  # noqa: E402
from registry_admin.secret import fingerprint  # noqa: E402
from registry_admin.service import RegistryAdmin  # noqa: E402
from registry_admin.settings import RegistryAdminSettings  # noqa: E402
from unify_common.events import ImagePushed, decode_event  # noqa: E402
from unify_common.settings import CommonSettings  # noqa: E402
from unify_testkit.aio import wait_until  # noqa: E402
from unify_testkit.devstack.consul import ConsulAgent  # noqa: E402
from unify_testkit.devstack.nats import NatsServer  # noqa: E402

DOMAIN = "unify.test"
NAME = f"registry.{DOMAIN}"
HOSTS = Path("/etc/hosts")
ADDRS = ("127.0.0.11", "127.0.0.12", "127.0.0.13")
DOCKER_ENV = {**os.environ, "DOCKER_HOST": os.environ.get(
    "DOCKER_HOST", "unix:///run/unify-docker.sock")}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * len(values) + 0.5) - 1))]


def docker(*args: str, timeout: float = 600) -> str:
    out = subprocess.run(["docker", *args], env=DOCKER_ENV, capture_output=True, text=True,
                         timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


#: seconds between polls: fine enough not to blur the measured rollout times
POLL_S = 0.005


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.port = free_port()
        self.procs = {f"{a}:{self.port}": RegistryProcess(
            f"reg-{i}", self.port, work / "state" / "registry.yml", work / f"reg-{i}.log",
            env={"REGISTRY_HTTP_ADDR": f"{a}:{self.port}"}) for i, a in enumerate(ADDRS)}
        self.events: list[tuple[float, object]] = []

    def register(self, i: int) -> None:
        body = {"Node": f"reg-{i}", "Address": ADDRS[i], "Service": {
            "ID": f"reg-{i}:registry:{self.port}", "Service": "registry",
            "Address": ADDRS[i], "Port": self.port,
            "Meta": {META_SECRET_FP: fingerprint(self.admin.http_secret)}}}
        self._consul("PUT", "/v1/catalog/register", body)

    def deregister(self, i: int) -> None:
        self._consul("PUT", "/v1/catalog/deregister", {"Node": f"reg-{i}"})

    def _consul(self, method: str, path: str, body: object) -> None:
        import urllib.request
        req = urllib.request.Request(f"http://{self.consul.http_addr}{path}",
                                     data=json.dumps(body).encode(), method=method)
        with urllib.request.urlopen(req, timeout=10):
            pass

    def all_serving(self, fp: str, keys) -> bool:
        for key in keys:
            host, port = key.rsplit(":", 1)
            der = served_cert_der(host, int(port), timeout=1.0)
            if der is None or pki.cert_fingerprint(der) != fp:
                return False
        return True

    async def __aenter__(self) -> Bench:
        self.nats = NatsServer(self.work / "nats").start()
        self.consul = ConsulAgent(self.work / "consul").start()
        common = CommonSettings(consul_addr=self.consul.http_addr, nats_urls=(self.nats.url,),
                                node="bench")
        self.stop_bridge = asyncio.Event()
        self.bridge = asyncio.create_task(run_bridge(BridgeSettings(common=common),
                                                     stop=self.stop_bridge))
        notify = free_port()
        settings = RegistryAdminSettings(
            common=common, domains=(DOMAIN,), state_dir=self.work / "state",
            tls_dir=self.work / "state" / "tls", config_path=self.work / "state" / "registry.yml",
            storage_dir=self.work / "storage", certs_d=Path("/etc/docker/certs.d"),
            notify_host="127.0.0.1", notify_port=notify,
            notify_url=f"http://127.0.0.1:{notify}/notify",
            registry_url=f"https://{ADDRS[0]}:{self.port}", restart_timeout=30.0)

        async def restarter(node: Node) -> None:
            await asyncio.to_thread(self.procs[node.endpoint].restart)

        self.admin = RegistryAdmin(settings, restarter=restarter)
        self.admin.load_secrets()
        for i in range(3):
            self.register(i)
        self.nc = await nats.connect(self.nats.url)

        async def on_msg(msg) -> None:
            self.events.append((time.monotonic(), decode_event(msg.data)))

        await self.nc.subscribe("unify.registry.image.pushed", cb=on_msg)
        await self.admin.start()
        await wait_until(lambda: self.admin.server is not None
                         and "reg-2" in pki.sans_of(self.admin.server.cert).dns,
                         timeout=60, what="cert", interval=POLL_S)
        await wait_until(lambda: self.all_serving(
            pki.cert_fingerprint(self.admin.server.cert_pem), self.procs),
            timeout=60, what="serving", interval=POLL_S)
        self.hosts_before = HOSTS.read_text()
        HOSTS.write_text(self.hosts_before + "".join(f"{a} {NAME}\n" for a in ADDRS))
        return self

    async def __aexit__(self, *exc) -> None:
        HOSTS.write_text(self.hosts_before)
        await self.admin.stop()
        for proc in self.procs.values():
            proc.terminate()
        self.stop_bridge.set()
        await asyncio.gather(self.bridge, return_exceptions=True)
        await self.nc.close()
        for name in self.admin.trusted:
            shutil.rmtree(Path("/etc/docker/certs.d") / name, ignore_errors=True)
        self.consul.stop()
        self.nats.stop()

    # ---- measurements -------------------------------------------------------------------

    async def pushes(self, n: int) -> dict:
        ctx = self.work / "ctx"
        ctx.mkdir(exist_ok=True)
        (ctx / "Dockerfile").write_text("FROM scratch\nCOPY layer /layer\n")
        times: dict[str, list[float]] = {"cluster": [], "direct": []}
        for i in range(n):
            for kind, host in (("direct", ADDRS[0]), ("cluster", NAME)):
                (ctx / "layer").write_bytes(os.urandom(50_000_000))
                ref = f"{host}:{self.port}/bench/big:{kind}-{i}"
                docker("build", "-q", "-t", ref, str(ctx))
                started = time.monotonic()
                docker("push", ref)
                times[kind].append(time.monotonic() - started)
                docker("rmi", ref)
        direct, cluster = statistics.median(times["direct"]), statistics.median(times["cluster"])
        return {"direct": times["direct"], "cluster": times["cluster"],
                "ratio": cluster / direct}

    async def event_latency(self, n: int) -> dict:
        s = self.admin.settings
        ca = str(s.ca_cert_path)
        end_to_end, alone = [], []
        import ssl
        ctx = ssl.create_default_context(cafile=ca)
        digest, _b, _s = await push_image(s.registry_url, ca, "bench/small", "base",
                                          os.urandom(1000))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http:
            async with http.get(f"{s.registry_url}/v2/bench/small/manifests/base", headers={
                    "Accept": "application/vnd.docker.distribution.manifest.v2+json"}) as r:
                raw, media = await r.read(), r.headers["Content-Type"]
            for i in range(n):
                tag = f"t{i}"
                started = time.monotonic()
                async with http.put(f"{s.registry_url}/v2/bench/small/manifests/{tag}",
                                    data=raw, headers={"Content-Type": media}) as r:
                    assert r.status == 201
                t = await self._wait_event(lambda e, tag=tag: e.tag == tag and e.repository ==
                                           "bench/small")
                end_to_end.append(t - started)
            url = f"http://127.0.0.1:{s.notify_port}/notify"
            auth = {"Authorization": f"Bearer {self.admin.notify_token}"}
            for _ in range(n):
                eid = str(uuid.uuid4())
                body = json.dumps({"events": [{
                    "id": eid, "action": "push", "timestamp": "2026-12-06T00:00:00Z",
                    "target": {"mediaType": media, "digest": digest, "size": len(raw),
                               "repository": "bench/small", "tag": "base"},
                    "source": {"addr": "bench:0"}}]}).encode()
                started = time.monotonic()
                async with http.post(url, data=body, headers=auth) as r:
                    assert r.status == 200
                t = await self._wait_event(lambda e, eid=eid: e.registry_event_id == eid)
                alone.append(t - started)
        return {"end_to_end": end_to_end, "alone": alone}

    async def _wait_event(self, pred, timeout: float = 10.0) -> float:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for at, event in self.events[seen:]:
                if isinstance(event, ImagePushed) and pred(event):
                    return at
            seen = len(self.events)
            await asyncio.sleep(0.0005)
        raise TimeoutError("event")

    async def rollouts(self, rounds: int) -> list[float]:
        out = []
        keys = list(self.procs)
        for _ in range(rounds):
            fp_before = pki.cert_fingerprint(self.admin.server.cert_pem)
            self.deregister(2)
            await wait_until(lambda fp_before=fp_before: pki.cert_fingerprint(
                self.admin.server.cert_pem) != fp_before, timeout=60, what="re-issue on deregistration",
                             interval=POLL_S)
            await wait_until(lambda: self.admin._rollout_task is None
                             or self.admin._rollout_task.done(),
                             timeout=120, what="rollout after leave", interval=POLL_S)
            await wait_until(lambda: self.all_serving(pki.cert_fingerprint(
                self.admin.server.cert_pem), keys[:2]),
                timeout=60, what="two serving", interval=POLL_S)
            fp_mid = pki.cert_fingerprint(self.admin.server.cert_pem)
            started = time.monotonic()
            self.register(2)
            await wait_until(lambda fp_mid=fp_mid: pki.cert_fingerprint(
                self.admin.server.cert_pem) != fp_mid, timeout=60, what="re-issue", interval=POLL_S)
            fp_new = pki.cert_fingerprint(self.admin.server.cert_pem)
            await wait_until(lambda fp_new=fp_new: self.all_serving(fp_new, keys),
                             timeout=120, what="all serving", interval=POLL_S)
            out.append(time.monotonic() - started)
            await wait_until(lambda: self.admin._rollout_task.done(),
                             timeout=60, what="rollout done", interval=POLL_S)
        return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=5)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="registry-bench-"))
    try:
        async with Bench(work) as bench:
            print(f"# registry bench {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
                  f"load {os.getloadavg()[0]:.2f}")
            lat = await bench.event_latency(args.events)
            for key in ("end_to_end", "alone"):
                ms = [v * 1000 for v in lat[key]]
                print(f"notification -> event ({key}): n={len(ms)} p50 {pct(ms, 50):.1f} ms "
                      f"p99 {pct(ms, 99):.1f} ms max {max(ms):.1f} ms")
            if args.rounds:
                roll = await bench.rollouts(args.rounds)
                print(f"re-issue + rolling restart of 3: n={len(roll)} median "
                      f"{statistics.median(roll):.2f} s min {min(roll):.2f} s "
                      f"max {max(roll):.2f} s")
            push = await bench.pushes(args.pushes) if args.pushes else None
            if push is None:
                return
            print("push 50 MB direct: " + ", ".join(f"{t:.2f}" for t in push["direct"])
                  + f" s (median {statistics.median(push['direct']):.2f} s)")
            print("push 50 MB cluster: " + ", ".join(f"{t:.2f}" for t in push["cluster"])
                  + f" s (median {statistics.median(push['cluster']):.2f} s)")
            print(f"overhead ratio (median cluster / median direct): {push['ratio']:.3f}")
            print(f"load after: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
