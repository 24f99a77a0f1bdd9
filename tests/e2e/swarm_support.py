"""Helpers of ``test_swarm.py``: the Unify stack (``deploy/swarm/unify-stack.yml``) on the real
single-node Swarm, its secrets and DNS node label, a tiny app image, and the probes the test
asserts with (HTTP through HAProxy, DNS from dnsmasq, the NATS server's consumer count).

Everything made here is named with the run's prefix (``swarm-e2e-<hex>``) and removed by
:meth:`SwarmStack.remove`; nothing else on the engine is touched.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import dns.exception
import dns.message
import dns.query
import dns.rcode
import docker
import docker.errors

from unify_cli.images import BuildResult
from unify_testkit import returns, wait_until
from unify_testkit.devstack.process import reserved_port

__all__ = ["APP_IMAGE", "SwarmStack", "app_body_host", "build_app_image", "dns_answer",
           "docker_cli", "http_get", "jetstream_consumers", "nats_connect_reply",
           "service_tasks"]

ROOT = Path(__file__).resolve().parents[2]
STACK_FILE = ROOT / "deploy" / "swarm" / "unify-stack.yml"
APP_IMAGE = "unify-local/swarm-e2e-app"
DNS_LABEL = "unify.dns"
T = TypeVar("T")

# The app: writes "<version> <container hostname>" to index.html at start and serves its folder
# with http.server. /health answers 200 until SIGTERM, then 503 while the app keeps serving for
# APP_DRAIN seconds (its Consul check goes critical, switchboard takes it out of HAProxy), and
# only then stops: in-flight and late requests still get answers during a rolling update.
APP_SERVER = r'''
import os, signal, socket, threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

ROOT = "/srv/app"
os.makedirs(ROOT, exist_ok=True)
with open(os.path.join(ROOT, "index.html"), "w") as handle:
    handle.write(f"{os.environ['APP_VERSION']} {socket.gethostname()}\n")
draining = threading.Event()
stopping = threading.Event()


class Handler(SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            status = 503 if draining.is_set() else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("0.0.0.0", 8000), partial(Handler, directory=ROOT))
signal.signal(signal.SIGTERM, lambda *_: stopping.set())
threading.Thread(target=server.serve_forever, daemon=True).start()
stopping.wait()
draining.set()
stopping.clear()
stopping.wait(float(os.environ.get("APP_DRAIN", "4")))
server.shutdown()
server.server_close()
'''

APP_DOCKERFILE = """\
ARG BASE=unify-local/debian:bookworm
FROM ${BASE}
ARG VERSION
ENV APP_VERSION=${VERSION} PYTHONUNBUFFERED=1
COPY serve.py /usr/local/bin/serve.py
EXPOSE 8000
STOPSIGNAL SIGTERM
ENTRYPOINT ["tini", "--", "python3", "/usr/local/bin/serve.py"]
"""


def build_app_image(client: docker.DockerClient, version: str, *,
                    base: str = "unify-local/debian:bookworm") -> str:
    """Build ``unify-local/swarm-e2e-app:<version>`` (body ``"<version> <hostname>\\n"``);
    its reference."""
    ref = f"{APP_IMAGE}:{version}"
    with tempfile.TemporaryDirectory(prefix="swarm-e2e-app-") as ctx:
        Path(ctx, "Dockerfile").write_text(APP_DOCKERFILE)
        Path(ctx, "serve.py").write_text(APP_SERVER)
        client.images.build(path=ctx, tag=ref, buildargs={"BASE": base, "VERSION": version},
                            rm=True, forcerm=True, network_mode="host")
    return ref


def app_body_host(body: str, version: str) -> str:
    """The container hostname of an app answer ``"<version> <hostname>\\n"``.

    :raises AssertionError: the body is not an answer of that version.
    """
    prefix = f"{version} "
    assert body.startswith(prefix) and body.endswith("\n") and body.count("\n") == 1, body
    return body[len(prefix):-1]


def http_get(port: int, host: str, path: str = "/", *, timeout: float = 3.0) -> tuple[int, str]:
    """``GET http://127.0.0.1:<port><path>`` with ``Host: <host>`` on a new connection;
    ``(status, body)``. :raises OSError: the connection failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def dns_answer(port: int, name: str, rdtype: str = "A") -> tuple[str, list[str]]:
    """Ask dnsmasq at ``127.0.0.1:<port>`` (UDP); ``(rcode, sorted answer RRsets as text)``.

    :raises TimeoutError: no answer within 2 s (dns411 restarts dnsmasq for a new ``cname=``:
        a query sent meanwhile is lost, as with any UDP resolver).
    """
    try:
        reply = dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1", port=port,
                              timeout=2)
    except dns.exception.Timeout as err:
        raise TimeoutError(f"no DNS answer for {name} {rdtype} in 2 s") from err
    return dns.rcode.to_text(reply.rcode()), sorted(r.to_text() for r in reply.answer)


def jetstream_consumers(monitor_port: int) -> tuple[int, list[str]]:
    """The NATS server's consumer count and names, from its monitoring endpoint
    ``/jsz?consumers=true`` (the server's ``consumers`` total, and every consumer of every
    stream of every account as ``<stream>/<name>``)."""
    url = f"http://127.0.0.1:{monitor_port}/jsz?consumers=true"
    with urllib.request.urlopen(url, timeout=3) as resp:
        jsz = json.load(resp)
    names = sorted(f"{stream['name']}/{consumer['name']}"
                   for account in jsz.get("account_details") or ()
                   for stream in account.get("stream_detail") or ()
                   for consumer in stream.get("consumer_detail") or ())
    return jsz["consumers"], names


def nats_connect_reply(port: int, user: str, password: str) -> str:
    """Connect to the NATS server at ``127.0.0.1:<port>`` with the client protocol (read
    ``INFO``, send ``CONNECT`` with ``user``/``pass`` and a ``PING``) and return the server's
    first reply line: ``PONG`` when it accepted the credentials, ``-ERR 'Authorization
    Violation'`` when not (NATS client protocol, docs.nats.io "Client Protocol")."""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        reader = sock.makefile("rb")
        info = reader.readline()
        assert info.startswith(b"INFO "), info
        connect = {"user": user, "pass": password, "verbose": False, "pedantic": False,
                   "lang": "python", "version": "0", "protocol": 1}
        sock.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        return reader.readline().decode().rstrip("\r\n")


def service_tasks(client: docker.DockerClient, service: str) -> list[dict]:
    """The tasks of ``service`` that Swarm wants running (desired state ``running``)."""
    return client.api.tasks(filters={"service": service, "desired-state": "running"})


def _running_container(task: dict) -> str:
    """The container id of a task that is running, else ``""``."""
    status = task.get("Status", {})
    if status.get("State") != "running":
        return ""
    return status.get("ContainerStatus", {}).get("ContainerID", "")


def docker_cli(args: list[str], *, env: dict[str, str], timeout: float = 120) -> str:
    """Run the ``docker`` CLI (on the test's engine); its stdout.

    :raises AssertionError: it failed (its output in the message).
    """
    docker_bin = shutil.which("docker")
    assert docker_bin, "the docker CLI is not installed (scripts/setup-engine.sh installs it)"
    proc = subprocess.run([docker_bin, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, f"docker {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc.stdout


@dataclass
class SwarmStack:
    """One deployment of ``deploy/swarm/unify-stack.yml`` on the engine of ``client``.

    Every port is chosen free (below the ephemeral range) by the constructor and passed to
    ``docker stack deploy`` through its environment; the secrets hold a real Consul ACL
    management token (the Consul of the stack enforces it), a real NATS password (the NATS
    of the stack requires it) and an AWS credentials file with a fake key. ``images`` is the
    ``suite_images`` fixture's mapping (component -> ``unify_cli.images.BuildResult``); the
    images' prefix and tag are taken from consul-bridge's.
    """

    client: docker.DockerClient
    docker_host: str
    images: dict[str, BuildResult]
    name: str
    domain: str = "unify.test"
    ports: dict[str, int] = field(default_factory=dict)
    bridge_health_prefix: int = 0
    consul_token: str = ""
    nats_password: str = ""
    aws_key_id: str = ""
    node_id: str = ""
    _secrets: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        taken: set[int] = set()

        def port() -> int:
            while (value := reserved_port()) in taken:
                pass
            taken.add(value)
            return value

        for key in ("consul", "consul_dns", "consul_server", "consul_serf_lan",
                    "consul_serf_wan", "nats", "nats_monitor", "registrator_health",
                    "switchboard_health", "dns411_health", "haproxy", "dns"):
            self.ports[key] = port()
        # the bridges' health ports are <prefix><slot>1: prefix 200..299 gives 20011..29921
        for _ in range(200):
            prefix = 200 + int.from_bytes(os.urandom(1), "big") % 100
            candidates = (prefix * 100 + 11, prefix * 100 + 21)
            if not taken & set(candidates) and all(_tcp_free(p) for p in candidates):
                self.bridge_health_prefix = prefix
                taken.update(candidates)
                break
        else:
            raise RuntimeError("no free pair of bridge health ports")
        self.consul_token = str(uuid.uuid4())
        self.nats_password = os.urandom(12).hex()
        self.aws_key_id = "AKIA" + os.urandom(8).hex().upper()

    # -- names --------------------------------------------------------------------------
    def service(self, name: str) -> str:
        """The Swarm name of one of the stack's services (``<stack>_<name>``)."""
        return f"{self.name}_{name}"

    def bridge_health_ports(self) -> tuple[int, int]:
        """Health ports of the consul-bridge tasks of slot 1 and 2."""
        return (self.bridge_health_prefix * 100 + 11, self.bridge_health_prefix * 100 + 21)

    def environment(self) -> dict[str, str]:
        """The environment ``docker stack deploy`` substitutes into the stack file."""
        # the images' prefix and tag, from consul-bridge's reference (a BuildResult's tag)
        prefix, _, tag = self.images["consul-bridge"].tag.rpartition(":")
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("UNIFY_", "CONSUL_", "NATS_", "AWS_"))}
        p = self.ports
        env.update({
            "DOCKER_HOST": self.docker_host,
            "UNIFY_IMAGE_PREFIX": prefix.rsplit("/", 1)[0],
            "UNIFY_IMAGE_TAG": tag,
            "UNIFY_SECRET_PREFIX": self.name,
            "UNIFY_DOMAIN": self.domain,
            "UNIFY_CONSUL_PORT": str(p["consul"]),
            "UNIFY_CONSUL_DNS_PORT": str(p["consul_dns"]),
            "UNIFY_CONSUL_SERVER_PORT": str(p["consul_server"]),
            "UNIFY_CONSUL_SERF_LAN_PORT": str(p["consul_serf_lan"]),
            "UNIFY_CONSUL_SERF_WAN_PORT": str(p["consul_serf_wan"]),
            "UNIFY_NATS_PORT": str(p["nats"]),
            "UNIFY_NATS_MONITOR_PORT": str(p["nats_monitor"]),
            "UNIFY_BRIDGE_HEALTH_PREFIX": str(self.bridge_health_prefix),
            "UNIFY_REGISTRATOR_HEALTH_PORT": str(p["registrator_health"]),
            "UNIFY_SWITCHBOARD_HEALTH_PORT": str(p["switchboard_health"]),
            "UNIFY_DNS411_HEALTH_PORT": str(p["dns411_health"]),
            "UNIFY_HAPROXY_PORT": str(p["haproxy"]),
            "UNIFY_HAPROXY_BIND": "127.0.0.1",
            "UNIFY_DNS_PORT": str(p["dns"]),
            "UNIFY_DNS_LISTEN": "127.0.0.1",
            "UNIFY_DOCKER_SOCKET": self.docker_host.removeprefix("unix://"),
            "UNIFY_RESTART_DELAY": "1s",
        })
        return env

    def consul_get(self, path: str) -> object:
        """``GET`` the stack's Consul HTTP API with the stack's token; the decoded JSON."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.ports['consul']}{path}",
                                     headers={"X-Consul-Token": self.consul_token})
        with urllib.request.urlopen(req, timeout=3) as resp:
            return json.load(resp)

    # -- life cycle ---------------------------------------------------------------------
    def deploy(self) -> None:
        """Create the secrets, label this node as the DNS node and deploy the stack."""
        acl = ("acl {\n  enabled = true\n  default_policy = \"deny\"\n"
               "  tokens {\n"
               f"    initial_management = \"{self.consul_token}\"\n"
               f"    agent = \"{self.consul_token}\"\n  }}\n}}\n")
        nats_conf = ("authorization {\n  user: unify\n"
                     f"  password: \"{self.nats_password}\"\n}}\n")
        aws = (f"[default]\naws_access_key_id = {self.aws_key_id}\n"
               f"aws_secret_access_key = {os.urandom(20).hex()}\n")
        for key, data in (("consul_acl", acl), ("consul_token", self.consul_token + "\n"),
                          ("nats_server_conf", nats_conf),
                          ("nats_password", self.nats_password + "\n"),
                          ("aws_credentials", aws)):
            secret = self.client.secrets.create(name=f"{self.name}_{key}", data=data.encode(),
                                                labels={"swarm-e2e": self.name})
            self._secrets.append(secret.id)
        self.node_id = self.client.info()["Swarm"]["NodeID"]
        self._set_dns_label(True)
        docker_cli(["stack", "deploy", "-c", str(STACK_FILE), self.name],
                   env=self.environment())

    def _set_dns_label(self, on: bool) -> None:
        """Add (``on``) or remove the ``unify.dns=true`` label of this node; the node spec is
        re-read on a version conflict (another client may update the node meanwhile)."""
        for attempt in range(10):
            node = self.client.nodes.get(self.node_id)
            spec = dict(node.attrs["Spec"])
            labels = dict(spec.get("Labels") or {})
            if on:
                labels[DNS_LABEL] = "true"
            elif labels.pop(DNS_LABEL, None) is None:
                return
            spec["Labels"] = labels
            try:
                node.update(spec)
                return
            except docker.errors.APIError:
                if attempt == 9:
                    raise
                time.sleep(0.2)

    def converged(self, services: dict[str, int]) -> dict[str, list[str]]:
        """Assert every named service (short name -> wanted running tasks) has exactly that
        many running tasks, each container healthy; the container ids by service."""
        out = {}
        for short, wanted in services.items():
            containers = [c for c in map(_running_container,
                                         service_tasks(self.client, self.service(short))) if c]
            assert len(containers) == wanted, (short, len(containers), wanted)
            for cid in containers:
                health = self.client.api.inspect_container(cid)["State"].get("Health", {})
                assert health.get("Status") == "healthy", (short, cid[:12], health.get("Status"))
            out[short] = containers
        return out

    def remove(self) -> None:
        """Remove the stack, then (once its containers are gone) its volumes, secrets and the
        node label. Each step runs even when an earlier one failed; the first error is raised
        at the end."""
        errors: list[BaseException] = []

        def step(action: Callable[[], object]) -> None:
            try:
                action()
            except Exception as err:  # noqa: BLE001 - every step must run
                errors.append(err)

        step(lambda: docker_cli(["stack", "rm", self.name], env=self.environment()))
        label = f"com.docker.stack.namespace={self.name}"

        def containers_gone() -> None:
            left = self.client.containers.list(all=True, filters={"label": label})
            assert not left, [c.name for c in left]

        step(lambda: wait_until(containers_gone, returns, timeout=90,
                                what="stack containers removed"))
        for volume in self.client.volumes.list(filters={"label": label}):
            step(lambda volume=volume: volume.remove(force=True))
        for secret_id in self._secrets:
            step(lambda secret_id=secret_id: wait_until(
                lambda: self.client.api.remove_secret(secret_id), returns, timeout=30,
                what="secret removed"))
        if self.node_id:
            step(lambda: self._set_dns_label(False))
        if errors:
            raise errors[0]


def _tcp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


