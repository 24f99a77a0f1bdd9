"""A registry cluster on real parts: Consul (shared fixture) -> consul-bridge (in-process) ->
NATS -> registry-admin (in-process) -> three Debian ``docker-registry`` processes on loopback
addresses sharing one storage directory, restarted by registry-admin one at a time."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import sys
import time
from pathlib import Path

import msgspec
import nats
import pytest

from consul_bridge.service import run as run_bridge
from consul_bridge.settings import BridgeSettings
from registry_admin import pki, store
from registry_admin.plan import META_SECRET_FP, Node
from registry_admin.secret import fingerprint
from registry_admin.service import RegistryAdmin
from registry_admin.settings import RegistryAdminSettings
from unify_common.events import decode_event

sys.path.insert(0, str(Path(__file__).parent))
from ra_support import RegistryProcess, free_port, served_cert_der  # noqa: E402

from tests.fixtures.components import consul_call  # noqa: E402
from unify_testkit.aio import wait_until  # noqa: E402

DOMAIN = "unify.test"
CERTS_D = Path("/etc/docker/certs.d")


class Collector:
    """Every event on ``unify.>`` seen since the fixture started (core NATS subscription)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    async def handler(self, msg) -> None:
        try:
            self.events.append((msg.subject, decode_event(msg.data)))
        except msgspec.MsgspecError:
            pass

    def of(self, subject_prefix: str) -> list:
        return [e for s, e in self.events if s.startswith(subject_prefix)]

    async def wait_for(self, pred, timeout: float = 20.0):
        """The first event ``pred`` accepts, waiting up to ``timeout`` seconds for it."""
        found = await wait_until(lambda: [e for _s, e in self.events if pred(e)][:1],
                                 timeout=timeout, what="an event matching pred")
        return found[0]


class Cluster:
    def __init__(self, consul: str, admin: RegistryAdmin, procs: dict[str, RegistryProcess],
                 collector: Collector, tmp: Path) -> None:
        self.consul = consul
        self.admin = admin
        self.procs = procs  # by "host:port"
        self.collector = collector
        self.tmp = tmp
        self.restart_log: list[tuple[str, float, float]] = []

    def register(self, node: str, address: str, port: int, *, secret: str | None = None,
                 fp: str | None = None, meta: bool = True) -> None:
        meta = {META_SECRET_FP: fp or fingerprint(secret or self.admin.http_secret)} \
            if meta else {}
        consul_call(self.consul, "PUT", "/v1/catalog/register", {
            "Node": node, "Address": address,
            "Service": {"ID": f"{node}:registry:{port}", "Service": "registry",
                        "Address": address, "Port": port, "Meta": meta}})

    def add_process(self, name: str, address: str, port: int,
                    env: dict[str, str] | None = None) -> RegistryProcess:
        proc = RegistryProcess(name, port, self.admin.settings.config_path,
                               self.tmp / f"{name}.log", env=dict(env or {}))
        proc.env["REGISTRY_HTTP_ADDR"] = f"{address}:{port}"
        self.procs[f"{address}:{port}"] = proc
        return proc

    def current_fp(self) -> str:
        return pki.cert_fingerprint(self.admin.server.cert_pem)

    def serving(self, address: str, port: int) -> str | None:
        der = served_cert_der(address, port, timeout=1.0)
        return pki.cert_fingerprint(der) if der else None

    async def all_serving_current(self, timeout: float = 60.0) -> None:
        def check():
            fp = self.current_fp() if self.admin.server else None
            return fp and all(self.serving(*k.rsplit(":", 1)[0:1], int(k.rsplit(":", 1)[1]))
                              == fp for k in self.procs)
        await wait_until(check, timeout=timeout,
                         what="all registries serve the current certificate")


@pytest.fixture
async def cluster(request, common_settings, consul_http_addr, tmp_path):
    """The cluster; ``request.param`` (indirect parametrisation) is the clock's offset from
    now in days at start (``Cluster.offset`` moves it later)."""
    nc = await nats.connect(list(common_settings.nats_urls))
    collector = Collector()
    await nc.subscribe("unify.>", cb=collector.handler)
    stop_bridge = asyncio.Event()
    bridge = asyncio.create_task(run_bridge(BridgeSettings(common=common_settings,
                                                           lock_ttl_s=10.0),
                                            stop=stop_bridge))
    ports = [free_port() for _ in range(3)]
    settings = RegistryAdminSettings(
        common=common_settings, domains=(DOMAIN,), state_dir=tmp_path / "state",
        tls_dir=tmp_path / "state" / "tls", config_path=tmp_path / "state" / "registry.yml",
        storage_dir=tmp_path / "storage", listen_port=5000, certs_d=CERTS_D,
        notify_host="127.0.0.1", notify_port=0, notify_url="http://127.0.0.1:0/notify",
        registry_url=f"https://127.0.0.1:{ports[0]}", restart_timeout=30.0,
        resolve_timeout=3.0)
    procs: dict[str, RegistryProcess] = {}
    holder: dict[str, Cluster] = {}

    async def restarter(node: Node) -> None:
        c = holder["c"]
        proc = c.procs.get(node.endpoint)
        if proc is None:
            raise RuntimeError(f"no process for {node.endpoint}")
        began = time.monotonic()
        await asyncio.to_thread(proc.restart)
        c.restart_log.append((node.endpoint, began, time.monotonic()))

    # the notification URL needs the port the server gets: bind it first, then render
    notify_port = free_port()
    settings = RegistryAdminSettings(**{**settings.__dict__, "notify_port": notify_port,
                                        "notify_url": f"http://127.0.0.1:{notify_port}/notify"})
    offset = {"days": float(getattr(request, "param", 0))}
    admin = RegistryAdmin(settings, restarter=restarter, clock=lambda: dt.datetime.now(
        dt.UTC) + dt.timedelta(days=offset["days"]))
    c = Cluster(consul_http_addr, admin, procs, collector, tmp_path)
    c.offset = offset
    holder["c"] = c
    # registry-admin makes the CA and secret before the instances are registered
    admin.http_secret = store.ensure_secret(settings.state_dir, "http-secret", None)
    for i, port in enumerate(ports):
        c.add_process(f"reg-{'abc'[i]}", "127.0.0.1", port)
        c.register(f"reg-{'abc'[i]}", "127.0.0.1", port)
    await admin.start(health_addr=("127.0.0.1", 0))
    try:
        await wait_until(lambda: admin.server is not None and len(pki.sans_of(
            admin.server.cert).dns) >= 5, timeout=30,
            what="certificate issued for the three nodes")
        await c.all_serving_current()
        yield c
    finally:
        await admin.stop()
        for proc in procs.values():
            proc.terminate()
        stop_bridge.set()
        await asyncio.wait_for(asyncio.gather(bridge, return_exceptions=True), 15)
        await nc.close()
        for name in admin.trusted:
            if (CERTS_D / name / store.MARKER).exists():
                shutil.rmtree(CERTS_D / name, ignore_errors=True)

