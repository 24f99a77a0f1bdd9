"""The whole Unify stack on real parts, on loopback: what ``unify dev up`` runs and what the
end-to-end tests drive.

Consul (``-dev``), nats-server with JetStream, moto's server for Route 53, and the three
services as their own processes, started exactly as in production (``python -m <service>``,
configured by environment only): consul-bridge, switchboard (supervising its HAProxy) and
dns411 (supervising its dnsmasq). The HAProxy "service" itself is registered in Consul with
``dns=<domain>`` as registrator would, so ``haproxy.<domain>`` resolves.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ..poll import NotReached, wait_until
from .consul import ConsulAgent
from .dnsmasq import free_udp_tcp_port
from .moto import MotoServer
from .nats import NatsServer
from .process import ManagedProcess, reserved_port, tcp_open

__all__ = ["DevStack", "StackBusy", "consul_put"]


def consul_put(addr: str, path: str, body: object) -> None:
    """PUT ``body`` (JSON) to Consul's HTTP API at ``addr``.

    :raises urllib.error.HTTPError: Consul refused.
    """
    req = urllib.request.Request(f"http://{addr}{path}", data=json.dumps(body).encode(),
                                 method="PUT")
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


class StackBusy(RuntimeError):
    """Another dev stack runs in the same working directory."""


@dataclass
class DevStack:
    """Start and stop the stack under ``workdir``.

    :param domain: the demo domain; a Route 53 hosted zone of that name is created in moto.
    :param http_port: HAProxy's HTTP frontend port for the demo vhosts (free port if 0).
    :param route53: run dns411 with Route 53 (moto) enabled.
    """

    workdir: Path
    domain: str = "unify.test"
    http_port: int = 0
    node: str = "dev-node"
    route53: bool = True
    consul: ConsulAgent | None = None
    nats: NatsServer | None = None
    moto: MotoServer | None = None
    dns_port: int = 0
    services: dict[str, ManagedProcess] = field(default_factory=dict)
    _lock: int | None = None  # an open descriptor holding the workdir's lock

    def claim(self) -> None:
        """Hold an exclusive lock on ``workdir/.lock`` while this stack runs (the kernel
        drops it when the process ends, however it ends).

        :raises StackBusy: another stack runs in the same directory.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.workdir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StackBusy(f"another `unify dev up` runs in {self.workdir}; stop it first "
                            "(Ctrl-C in its shell) or give this one another --workdir") from None
        self._lock = fd

    def env(self) -> dict[str, str]:
        """The variables every component of this stack reads."""
        assert self.consul and self.nats and self.moto
        dns_dir = self.workdir / "dnsmasq"
        return {
            "CONSUL_HTTP_ADDR": self.consul.http_addr,
            "NATS_URL": self.nats.url,
            "UNIFY_NODE": self.node,
            # where dns411 writes dnsmasq's files (`unify dns list` reads the state dns411
            # publishes on NATS, not these files)
            "UNIFY_DNSMASQ_HOSTS": str(dns_dir / "hosts"),
            "UNIFY_DNSMASQ_CONF_DIR": str(dns_dir / "conf.d"),
            "UNIFY_DNS_LOCAL_DOMAINS": self.domain,
            "UNIFY_ROUTE53_ENABLED": "1" if self.route53 else "0",
            **self.moto.env(),
        }

    def start(self) -> DevStack:
        """Start everything and wait until each part answers.

        :raises StackBusy: another stack runs in ``workdir`` (nothing was touched).
        :raises RuntimeError: a part exited (its log tail is in the message).
        :raises TimeoutError: a part did not come up.
        """
        if self._lock is None:
            self.claim()
        # Consul -dev starts empty every time, so the event store and the rendered files of
        # an earlier run would describe a catalog that no longer exists: start clean.
        for stale in ("nats", "haproxy", "dnsmasq"):
            shutil.rmtree(self.workdir / stale, ignore_errors=True)
        self.http_port = self.http_port or reserved_port()
        self.dns_port = free_udp_tcp_port()
        self.consul = ConsulAgent(self.workdir / "consul").start()
        self.nats = NatsServer(self.workdir / "nats").start()
        self.moto = MotoServer(self.workdir / "moto").start()
        self._create_zone()
        base = {**os.environ, **self.env(), "UNIFY_LOG_FORMAT": "json"}
        py = sys.executable
        self._spawn("consul-bridge", [py, "-m", "consul_bridge"], base)
        haproxy_dir = self.workdir / "haproxy"
        haproxy_dir.mkdir(exist_ok=True)
        self._spawn("switchboard", [py, "-m", "switchboard"], {
            **base, "UNIFY_HAPROXY_CONFIG": str(haproxy_dir / "haproxy.cfg"),
            "UNIFY_HAPROXY_MANAGE": "1", "UNIFY_HAPROXY_BIND": "127.0.0.1"})
        dns_dir = self.workdir / "dnsmasq"
        (dns_dir / "conf.d").mkdir(parents=True, exist_ok=True)
        self._spawn("dns411", [py, "-m", "dns411"], {
            **base, "UNIFY_DNSMASQ_MANAGE": "1", "UNIFY_DNSMASQ_PORT": str(self.dns_port),
            "UNIFY_DNSMASQ_LISTEN": "127.0.0.1", "UNIFY_DNSMASQ_USER": "root",
            "UNIFY_CONSUL_DNS_ADDR": f"127.0.0.1:{self.consul.dns_port}"})
        consul_put(self.consul.http_addr, "/v1/agent/service/register", {
            "ID": "haproxy-dev", "Name": "haproxy", "Address": "127.0.0.1", "Port": 80,
            "Tags": [f"dns={self.domain}"]})
        self._wait_dns()
        (self.workdir / "env").write_text(
            "".join(f"export {k}={v}\n" for k, v in sorted(self.env().items())))
        (self.workdir / "dev.json").write_text(json.dumps({
            **self.env(), "domain": self.domain, "http_port": self.http_port,
            "dns_port": self.dns_port, "consul_dns_port": self.consul.dns_port}, indent=2))
        return self

    def _create_zone(self) -> None:
        import boto3

        assert self.moto is not None
        client = boto3.client("route53", endpoint_url=self.moto.endpoint_url,
                              region_name="us-east-1", aws_access_key_id="testing",
                              aws_secret_access_key="testing")
        client.create_hosted_zone(Name=self.domain, CallerReference=f"unify-dev-{self.domain}")

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        proc = ManagedProcess(name, argv, log_path=self.workdir / "logs" / f"{name}.log",
                              env=env)
        proc.start()
        self.services[name] = proc

    def _wait_dns(self) -> None:
        def listening() -> bool:
            for name, proc in self.services.items():
                if not proc.alive():  # not a "not yet": fails at once
                    raise RuntimeError(f"{name} exited:\n{proc.tail()}")
            return tcp_open("127.0.0.1", self.dns_port)

        try:
            wait_until(listening, timeout=60, what="dnsmasq (through dns411) listening",
                       interval=0.1)
        except NotReached:
            raise TimeoutError(f"dnsmasq (through dns411) not listening:\n"
                               f"{self.services['dns411'].tail()}") from None

    def exited(self) -> list[tuple[str, int | None]]:
        """``(name, exit status)`` of each service process that is no longer running."""
        return [(name, proc.proc.returncode if proc.proc is not None else None)
                for name, proc in self.services.items() if not proc.alive()]

    def describe(self) -> list[tuple[str, str]]:
        """(component, where it listens or logs) rows for printing."""
        logs = self.workdir / "logs"
        assert self.consul and self.nats and self.moto, "describe() after start()"
        return [
            ("consul", f"http://{self.consul.http_addr}  (DNS 127.0.0.1:{self.consul.dns_port})"),
            ("nats", self.nats.url),
            ("route53 (moto)", f"{self.moto.endpoint_url}  zone {self.domain}"),
            ("haproxy", f"http://127.0.0.1:<vhost port>  config "
                        f"{self.workdir / 'haproxy' / 'haproxy.cfg'}"),
            ("dnsmasq", f"127.0.0.1:{self.dns_port} (udp+tcp)"),
            ("consul-bridge", f"log {logs / 'consul-bridge.log'}"),
            ("switchboard", f"log {logs / 'switchboard.log'}"),
            ("dns411", f"log {logs / 'dns411.log'}"),
        ]

    def stop(self) -> None:
        """Stop the services, then the servers, in reverse order of start."""
        for proc in reversed(list(self.services.values())):
            proc.stop()
        for part in (self.moto, self.nats, self.consul):
            if part is not None:
                part.stop()
        if self._lock is not None:
            os.close(self._lock)  # releases the workdir
            self._lock = None
