"""End to end through real containers: the suite of ``deploy/compose`` (Consul, NATS, two
consul-bridges, registrator, switchboard with HAProxy, dns411 with dnsmasq, moto as Route 53)
started with ``docker-compose`` on the real engine, and an app started as a plain container
with registrator's labels.

* the app's body is served through HAProxy by Host header, dnsmasq answers its CNAME and
  Route 53 holds the record; ``docker stop`` removes all three;
* killing the leading consul-bridge: the other one takes the lock and the next change flows;
* killing the switchboard container: it comes back (restart policy) with the same HAProxy
  configuration, without a reload.

The suite runs on free ports chosen here, under its own compose project name.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.fixtures.engine import docker_host
from unify_testkit import returns, wait_until
from unify_testkit.devstack.process import free_port

pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
PROJECT = "unify-e2e"
DOMAIN = "unify.test"
APP_IMAGE = "unify-local/e2e-app:1"
APP_DOCKERFILE = b"""
FROM unify-local/debian:bookworm
# answers GET / with "hello from $APP_NAME"
CMD ["sh", "-c", "mkdir -p /srv && echo \\"hello from $APP_NAME\\" > /srv/index.html && exec python3 -m http.server 8000 --directory /srv"]
"""


class Suite:
    """The running compose project: its ports, environment and helpers to reach it."""

    def __init__(self) -> None:
        self.ports = {name: free_port() for name in (
            "consul", "consul_dns", "nats", "nats_monitor", "dns", "haproxy", "moto",
            "bridge1_health", "bridge2_health", "registrator_health", "switchboard_health",
            "dns411_health")}
        p = self.ports
        self.env = {
            **os.environ, "DOCKER_HOST": docker_host(), "UNIFY_IMAGE_TAG": "e2e",
            "UNIFY_DOMAIN": DOMAIN, "UNIFY_NODE_NAME": "e2e-node",
            "UNIFY_CONSUL_PORT": str(p["consul"]), "UNIFY_CONSUL_DNS_PORT": str(p["consul_dns"]),
            "UNIFY_NATS_PORT": str(p["nats"]), "UNIFY_NATS_MONITOR_PORT": str(p["nats_monitor"]),
            "UNIFY_DNS_PORT": str(p["dns"]), "UNIFY_HAPROXY_PORT": str(p["haproxy"]),
            "UNIFY_MOTO_PORT": str(p["moto"]),
            "UNIFY_BRIDGE1_HEALTH_PORT": str(p["bridge1_health"]),
            "UNIFY_BRIDGE2_HEALTH_PORT": str(p["bridge2_health"]),
            "UNIFY_REGISTRATOR_HEALTH_PORT": str(p["registrator_health"]),
            "UNIFY_SWITCHBOARD_HEALTH_PORT": str(p["switchboard_health"]),
            "UNIFY_DNS411_HEALTH_PORT": str(p["dns411_health"]),
            "UNIFY_DOCKER_SOCKET": docker_host().removeprefix("unix://"),
        }

    def compose(self, *args: str, timeout: float = 300) -> str:
        cmd = ["docker-compose", "-p", PROJECT, "-f", str(COMPOSE_DIR / "docker-compose.yml"),
               "-f", str(COMPOSE_DIR / "route53.yml"), *args]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}"
        return proc.stdout

    def container(self, engine, service: str):
        return engine.containers.get(f"{PROJECT}_{service}_1")

    def http(self, host: str) -> tuple[int, str]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.ports['haproxy']}/",
                                     headers={"Host": host})
        try:
            with urllib.request.urlopen(req, timeout=3) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except urllib.error.URLError as err:
            if isinstance(err.reason, ConnectionRefusedError):
                return 0, "refused"  # no frontend on the port any more
            raise

    def dns(self, name: str, rdtype: str = "A") -> tuple[str, list[str]]:
        reply = dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1",
                              port=self.ports["dns"], timeout=2)
        return dns.rcode.to_text(reply.rcode()), sorted(r.to_text() for r in reply.answer)

    def route53(self):
        return boto3.client("route53", endpoint_url=f"http://127.0.0.1:{self.ports['moto']}",
                            region_name="us-east-1", aws_access_key_id="testing",
                            aws_secret_access_key="testing")

    def route53_records(self) -> dict[tuple[str, str], list[str]]:
        client = self.route53()
        zone = client.list_hosted_zones_by_name(DNSName=DOMAIN)["HostedZones"][0]["Id"]
        out = {}
        for page in client.get_paginator("list_resource_record_sets").paginate(
                HostedZoneId=zone):
            for rrset in page["ResourceRecordSets"]:
                if rrset["Type"] in ("A", "CNAME"):
                    out[(rrset["Name"], rrset["Type"])] = sorted(
                        r["Value"] for r in rrset.get("ResourceRecords", []))
        return out

    def consul_kv(self, key: str) -> str | None:
        url = f"http://127.0.0.1:{self.ports['consul']}/v1/kv/{key}?raw"
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                return resp.read().decode()
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise

    def metrics(self, port_name: str) -> list[str]:
        url = f"http://127.0.0.1:{self.ports[port_name]}/metrics"
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.read().decode().splitlines()


def _healthy(engine, suite: Suite, services: list[str]) -> None:
    states = {s: suite.container(engine, s).attrs["State"] for s in services}
    bad = {s: (st["Status"], (st.get("Health") or {}).get("Status")) for s, st in states.items()
           if st["Status"] != "running" or (st.get("Health") or {}).get("Status") != "healthy"}
    assert not bad, f"not healthy yet: {bad}"


@pytest.fixture(scope="module")
def app_image(docker_engine):
    docker_engine.images.build(fileobj=io.BytesIO(APP_DOCKERFILE), tag=APP_IMAGE, rm=True)
    return APP_IMAGE


@pytest.fixture(scope="module")
def suite(docker_engine, suite_images):
    suite = Suite()
    suite.compose("down", "-v", "-t", "2")  # a project left by an interrupted run
    try:
        suite.compose("up", "-d", "moto")
        wait_until(lambda: _healthy(docker_engine, suite, ["moto"]), returns, timeout=90)
        # the hosted zone exists before dns411 first reads the zone list
        suite.route53().create_hosted_zone(Name=DOMAIN, CallerReference="unify-e2e")
        suite.compose("up", "-d")
        services = ["consul", "nats", "consul-bridge-1", "consul-bridge-2", "registrator",
                    "switchboard", "dns411", "moto"]
        wait_until(lambda: _healthy(docker_engine, suite, services),
                   returns, timeout=180, interval=1)
        yield suite
    finally:
        for container in docker_engine.containers.list(all=True,
                                                       filters={"label": "unify-e2e-app"}):
            container.remove(force=True)
        logs = suite.compose("logs", "--no-color", "-t", timeout=60)
        Path(ROOT / ".unify" / "e2e-compose.log").write_text(logs)
        suite.compose("down", "-v", "-t", "5")


def _start_app(engine, suite: Suite, name: str, vhost: str):
    return engine.containers.run(
        APP_IMAGE, detach=True, name=f"unify-e2e-app-{name}",
        environment={"APP_NAME": name}, ports={"8000/tcp": ("127.0.0.1", None)},
        labels={"unify-e2e-app": "1", "SERVICE_NAME": vhost,
                "SERVICE_TAGS": f"dns={DOMAIN},vhost={vhost},http={suite.ports['haproxy']}"})


def _equal(value, expected):
    assert value == expected, value
    return value


def test_app_container_is_served_resolved_and_recorded_then_gone(docker_engine, suite,
                                                                  app_image):
    app = _start_app(docker_engine, suite, "web-1", "web")
    host = f"web.{DOMAIN}"
    assert wait_until(lambda: _equal(suite.http(host), (200, "hello from web-1\n")),
                      returns, timeout=60) == (
        200, "hello from web-1\n")
    expected_dns = ("NOERROR", [f"haproxy.{DOMAIN}. 30 IN A 127.0.0.1",
                                f"web.{DOMAIN}. 30 IN CNAME haproxy.{DOMAIN}."])
    assert wait_until(lambda: _equal(suite.dns(host), expected_dns),
                      returns, timeout=60) == expected_dns
    records = wait_until(lambda: _equal(
        {k: v for k, v in suite.route53_records().items() if k[0] == f"{host}."},
        {(f"{host}.", "CNAME"): [f"haproxy.{DOMAIN}."]}), returns, timeout=60)
    assert records == {(f"{host}.", "CNAME"): [f"haproxy.{DOMAIN}."]}
    assert suite.route53_records()[(f"haproxy.{DOMAIN}.", "A")] == ["127.0.0.1"]

    app.stop(timeout=2)
    # the last vhost of the port is gone, so is the port's frontend
    assert wait_until(lambda: _equal(suite.http(host), (0, "refused")),
                      returns, timeout=60) == (0, "refused")
    assert wait_until(lambda: _equal(suite.dns(host)[0], "NXDOMAIN"),
                      returns, timeout=60) == "NXDOMAIN"
    assert wait_until(lambda: _equal(
        [k for k in suite.route53_records() if k[0] == f"{host}."], []), returns, timeout=60) == []
    app.remove(force=True)


def test_killing_the_leading_bridge_hands_over(docker_engine, suite, app_image):
    leader = wait_until(lambda: _equal(
        suite.consul_kv("unify-locks/consul-bridge") in ("consul-bridge-1", "consul-bridge-2"),
        True) and suite.consul_kv("unify-locks/consul-bridge"), returns, timeout=60)
    other = {"consul-bridge-1": "consul-bridge-2", "consul-bridge-2": "consul-bridge-1"}[leader]
    killed = suite.container(docker_engine, leader)
    killed.kill()  # SIGKILL: no lock release; `docker kill` is not restarted by the policy
    # the other bridge takes the lock once the dead one's Consul session expires (its TTL,
    # up to twice that: Consul's reaping) ...
    assert wait_until(lambda: _equal(suite.consul_kv("unify-locks/consul-bridge"), other), returns,
                      timeout=90, interval=0.5) == other
    # ... and the next change flows through it
    _start_app(docker_engine, suite, "after-1", "after")
    assert wait_until(lambda: _equal(suite.http(f"after.{DOMAIN}"),
                                     (200, "hello from after-1\n")), returns, timeout=60) == (
        200, "hello from after-1\n")
    # started again, it stands by (ready) while the other keeps the lock
    killed.start()
    wait_until(lambda: _healthy(docker_engine, suite, [leader]), returns, timeout=120, interval=1)
    assert suite.consul_kv("unify-locks/consul-bridge") == other


def _show_proc(container) -> str:
    """The HAProxy master's ``show proc`` answer, asked inside the switchboard container."""
    # the master answers once the client has shut its side down (then it closes)
    script = ("import socket;s=socket.socket(socket.AF_UNIX);s.settimeout(10);"
              "s.connect('/var/lib/unify/haproxy/master.sock');s.sendall(b'show proc\\n');"
              "s.shutdown(socket.SHUT_WR);"
              "print(b''.join(iter(lambda: s.recv(65536), b'')).decode())")
    code, out = container.exec_run(["python3", "-c", script])
    assert code == 0, out
    return out.decode()


def _config_hash(lines: list[str]) -> str:
    found = [line for line in lines
             if line.startswith("unify_switchboard_applied_config_info{")]
    assert len(found) == 1, found
    return found[0].split('config_hash="', 1)[1].split('"', 1)[0]


def test_killed_switchboard_comes_back_with_the_same_config_and_no_reload(docker_engine,
                                                                           suite, app_image):
    initial = wait_until(lambda: _config_hash(suite.metrics("switchboard_health")),
                         returns, timeout=60)
    _start_app(docker_engine, suite, "steady-1", "steady")
    host = f"steady.{DOMAIN}"
    wait_until(lambda: _equal(suite.http(host), (200, "hello from steady-1\n")),
               returns, timeout=60)
    # served at once through the runtime API ("ahead of the file"); the configuration in force
    # is the one the reconcile after it writes, with the new vhost
    before = wait_until(lambda: _config_hash(suite.metrics("switchboard_health")),
                        lambda digest: digest != initial, timeout=60,
                        what="the file with steady.<domain> in force")
    switchboard = suite.container(docker_engine, "switchboard")
    started_before = switchboard.attrs["State"]["StartedAt"]
    # a crash, not an operator's stop: SIGKILL to the container's init from outside, so the
    # restart policy brings it back (Docker does not restart after `docker kill`)
    os.kill(switchboard.attrs["State"]["Pid"], signal.SIGKILL)
    wait_until(lambda: _equal(suite.container(docker_engine, "switchboard")
                              .attrs["State"]["StartedAt"] != started_before, True),
               returns, timeout=60)
    wait_until(lambda: _healthy(docker_engine, suite, ["switchboard"]),
               returns, timeout=120, interval=1)
    assert wait_until(lambda: _equal(suite.http(host), (200, "hello from steady-1\n")),
                      returns, timeout=60) == (
        200, "hello from steady-1\n")
    assert _config_hash(suite.metrics("switchboard_health")) == before
    # a fresh HAProxy master with the kept file: started once, never reloaded
    proc = _show_proc(suite.container(docker_engine, "switchboard"))
    master = next(line for line in proc.splitlines() if " master " in line)
    assert master.split()[2] == "0", proc
