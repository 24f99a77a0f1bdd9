"""The wireline flow's parts, shared by ``test_wireline_flow.py`` and
``bench/wireline_bench.py``: :func:`start_flow` (the dev stack, a registry, a registrator on
the stack's Consul, and wireline from its image, pushes logging in as ``git``), the ``ticker``
app's repository (a tiny HTTP server that answers ``"<version> <container hostname>"``), and
the probes the test asserts with (HTTP through HAProxy, DNS from dnsmasq, the Swarm tasks of
a service, the passing instances in Consul).

wireline and its registry are started with the helpers of wireline's own integration tests
(``services/wireline/tests/integration/wireline_support.py``), imported from there.

Everything created on the engine is named ``wl-e2e-...`` (the app is ``wl-e2e-ticker``, with
no stack prefix: stack ``wl-e2e-ticker``, service ``wl-e2e-ticker_web``, images
``<registry>/wl-e2e-ticker/web``; the wireline container ``wl-e2e-wireline``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import docker

from tests.e2e.swarm_support import dns_answer, http_get  # noqa: F401 (re-exported)
from unify_testkit import NotReached, returns, wait_until
from unify_testkit.devstack.process import ManagedProcess, free_port
from unify_testkit.devstack.stack import DevStack

WIRELINE_TESTS = Path(__file__).resolve().parents[2] / "services" / "wireline" / "tests" / \
    "integration"
if str(WIRELINE_TESTS) not in sys.path:
    sys.path.insert(0, str(WIRELINE_TESTS))

from wireline_support import Registry, Wireline, remove_images, start_wireline_image  # noqa: E402

__all__ = ["APP", "DOMAIN", "Flow", "Registry", "Wireline", "consul_passing", "dns_answer",
           "http_get", "remove_images", "remove_stack", "returns", "start_flow",
           "start_registrator", "task_hosts", "wait_until", "write_app"]

APP = "wl-e2e-ticker"
SERVICE = f"{APP}_web"
DOMAIN = "wl-e2e.test"
BASE_IMAGE = "unify-local/debian:bookworm"

# The app's code; VERSION and HEALTHY are what a "code change" edits. /health answers 200
# (500 when HEALTHY is false) until SIGTERM, then 503 while the server keeps answering for
# DRAIN seconds, so its Consul check turns critical and switchboard takes it out of HAProxy
# before it stops: a rolling update loses no request.
SERVER = r'''
import signal, socket, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "{version}"
HEALTHY = {healthy}
DRAIN = 4.0
BODY = f"{{VERSION}} {{socket.gethostname()}}\n".encode()
draining = threading.Event()
stopping = threading.Event()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            status, body = (503 if draining.is_set() else 200 if HEALTHY else 500), b""
        else:
            status, body = 200, BODY
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("0.0.0.0", 8000), Handler)
signal.signal(signal.SIGTERM, lambda *_: stopping.set())
threading.Thread(target=server.serve_forever, daemon=True).start()
stopping.wait()
draining.set()
stopping.clear()
stopping.wait(DRAIN)
server.shutdown()
'''

DOCKERFILE = f"""FROM {BASE_IMAGE}
COPY serve.py /srv/serve.py
EXPOSE 8000
CMD ["python3", "-u", "/srv/serve.py"]
"""

HEALTHCHECK = ["CMD", "python3", "-c",
               "import urllib.request; urllib.request.urlopen("
               "'http://127.0.0.1:8000/health', timeout=2)"]


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 0, f"git {args}: {result.stdout}{result.stderr}"
    return result.stdout.strip()


def write_app(repo: Path, *, version: str, domain: str, http_port: int, healthy: bool = True,
              ini: str = "") -> str:
    """Write (or rewrite) the app in ``repo`` and commit it on ``main``; the commit's sha.

    The original layout: ``deploy.yaml`` (labels ``SERVICE_NAME=ticker``,
    ``SERVICE_TAGS=dns=<domain>,vhost=ticker,http=<http_port>``, a Consul HTTP check on
    ``/health``, a host-mode port without a published number so Swarm picks one per task,
    the Docker healthcheck) and ``build.yaml``; ``wireline.ini`` holds ``ini`` (none when
    empty)."""
    if not (repo / ".git").exists():
        repo.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, timeout=30)
        _git(repo, "config", "user.email", "e2e@example.test")
        _git(repo, "config", "user.name", "e2e")
    (repo / "serve.py").write_text(SERVER.format(version=version, healthy=healthy))
    (repo / "Dockerfile").write_text(DOCKERFILE)
    web = {
        "init": True,  # docker-init as PID 1 hands SIGTERM to the server
        "labels": {"SERVICE_NAME": "ticker",
                   "SERVICE_TAGS": f"dns={domain},vhost=ticker,http={http_port}",
                   "SERVICE_CHECK_HTTP": "/health", "SERVICE_CHECK_INTERVAL": "1s",
                   "SERVICE_CHECK_TIMEOUT": "1s"},
        "ports": [{"target": 8000, "mode": "host"}],
        "healthcheck": {"test": HEALTHCHECK, "interval": "1s", "timeout": "3s",
                        "retries": 2},
        "stop_grace_period": "10s",
    }
    (repo / "deploy.yaml").write_text(json.dumps(
        {"version": "3.8", "services": {"web": web}}, indent=1))
    (repo / "build.yaml").write_text(json.dumps(
        {"services": {"web": {"build": {"context": "."}}}}))
    if ini:
        (repo / "wireline.ini").write_text(ini)
    elif (repo / "wireline.ini").exists():
        (repo / "wireline.ini").unlink()
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "--allow-empty", "-m", f"{version} healthy={healthy} {ini!r}")
    return _git(repo, "rev-parse", "HEAD")


def start_registrator(workdir: Path, *, consul_addr: str, nats_url: str, docker_host: str
                      ) -> ManagedProcess:
    """``python -m registrator`` for this engine on the dev stack's Consul (node
    ``wl-e2e-node``, published ports registered at 127.0.0.1); returns once its first full
    resync succeeded (``/readyz`` 200)."""
    health = f"127.0.0.1:{free_port()}"
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("UNIFY_", "CONSUL_", "NATS_"))}
    env.update({"CONSUL_HTTP_ADDR": consul_addr, "NATS_URL": nats_url,
                "DOCKER_HOST": docker_host, "UNIFY_NODE": "wl-e2e-node",
                "UNIFY_REGISTRATOR_IP": "127.0.0.1", "UNIFY_REGISTRATOR_RESYNC": "10",
                "UNIFY_REGISTRATOR_RETRY": "1", "UNIFY_HEALTH_ADDR": health,
                "UNIFY_LOG_FORMAT": "json"})
    process = ManagedProcess("registrator", [sys.executable, "-m", "registrator"],
                             log_path=workdir / "registrator.log", env=env)

    def ready() -> bool:
        with urllib.request.urlopen(f"http://{health}/readyz", timeout=2) as resp:
            return resp.status == 200

    process.start(ready, timeout=60)
    return process


def task_hosts(client: docker.APIClient, service: str = SERVICE) -> dict[str, tuple[str, int]]:
    """Container hostname -> (spec image, host-mode published port) of every task of
    ``service`` that Swarm wants running; asserts each of them runs."""
    out = {}
    for task in client.tasks(filters={"service": service, "desired-state": "running"}):
        assert task["Status"]["State"] == "running", task["Status"]
        container = client.inspect_container(task["Status"]["ContainerStatus"]["ContainerID"])
        out[container["Config"]["Hostname"]] = (
            task["Spec"]["ContainerSpec"]["Image"],
            task["Status"]["PortStatus"]["Ports"][0]["PublishedPort"])
    return out


def consul_passing(addr: str, name: str) -> list[tuple[str, int]]:
    """(address, port) of every instance of ``name`` whose checks all pass, sorted."""
    url = f"http://{addr}/v1/health/service/{name}?passing=true"
    with urllib.request.urlopen(url, timeout=3) as resp:
        entries = json.load(resp)
    return sorted((e["Service"]["Address"], e["Service"]["Port"]) for e in entries)


def remove_stack(client: docker.APIClient, docker_host: str, stack: str = APP) -> None:
    """``docker stack rm <stack>`` when anything of it is left, then wait (60 s at most)
    until its services and networks are gone."""
    label = f"com.docker.stack.namespace={stack}"

    def left() -> list[str]:
        return [s["Spec"]["Name"] for s in client.services(filters={"label": label})] + \
            [n["Name"] for n in client.networks(filters={"label": label})]

    if left():
        subprocess.run(["docker", "stack", "rm", stack], capture_output=True, timeout=60,
                       env={**os.environ, "DOCKER_HOST": docker_host},
                       check=False)
    try:
        wait_until(left, lambda names: names == [], timeout=60, interval=0.5,
                   what=f"stack {stack}'s services and networks gone")
    except NotReached:
        pass  # best effort, as before: anything left is named after the stack


@dataclass
class Flow:
    """The running parts of the flow; :meth:`stop` ends them in reverse order (the app's
    stack and the images pushed to this registry go too)."""

    stack: DevStack
    registry: Registry
    wireline: Wireline
    docker_host: str
    apps: tuple[str, ...] = (APP,)
    parts: list = field(default_factory=list)

    def stop(self) -> None:
        engine = docker.APIClient(base_url=self.docker_host, version="1.41", timeout=60)
        try:
            for app in self.apps:
                remove_stack(engine, self.docker_host, app)
        finally:
            engine.close()
            for part in reversed(self.parts):
                part.stop()
            for app in self.apps:
                remove_images(f"{self.registry.addr}/{app}/")


def start_flow(work: Path, *, image: str, docker_host: str, apps: tuple[str, ...] = (APP,),
               wireline_env: dict | None = None) -> Flow:
    """Start the flow's parts under ``work``: the dev stack (domain :data:`DOMAIN`, node
    ``wl-e2e-node``), a registry, a registrator for the engine at ``docker_host`` on the
    stack's Consul, and wireline's ``image`` (container ``wl-e2e-wireline``, pushes as
    ``git``; ``wireline_env`` added to its settings). ``apps``: the stacks :meth:`Flow.stop`
    removes. Whatever started is stopped again when a later part fails."""
    stack = DevStack(work / "stack", domain=DOMAIN, node="wl-e2e-node").start()
    parts: list = [stack]
    try:
        registry = Registry(work / "registry").start()
        parts.append(registry)
        parts.append(start_registrator(work, consul_addr=stack.consul.http_addr,
                                       nats_url=stack.nats.url, docker_host=docker_host))
        wireline = start_wireline_image(
            work / "wireline", image=image, nats_url=stack.nats.url, registry=registry.addr,
            name="wl-e2e-wireline", docker_host=docker_host, extra=wireline_env)
        parts.append(wireline.process)
    except BaseException:
        for part in reversed(parts):
            part.stop()
        raise
    return Flow(stack=stack, registry=registry, wireline=wireline, docker_host=docker_host,
                apps=apps, parts=parts)
