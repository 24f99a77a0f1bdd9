"""The images of ``deploy/images`` as built on the real engine: who they run as, their labels,
entrypoint and health check; HAProxy and dnsmasq bind ports below 1024 as the non-root user
with only NET_BIND_SERVICE; a service stops cleanly on ``docker stop`` (SIGTERM, exit 0)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from unify_cli.images import load_components
from unify_testkit import returns, wait_until

pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "libs/unify-common/pyproject.toml").read_text())["project"][
    "version"]


def test_every_component_has_an_image_with_the_one_pattern(docker_engine, suite_images):
    components = load_components()
    assert sorted(suite_images) == sorted(components)
    for name, built in suite_images.items():
        config = docker_engine.images.get(built.tag).attrs["Config"]
        assert config["User"] == components[name].user, name
        assert config["Entrypoint"] == ["tini", "--", "unify-service"], name
        assert config["Healthcheck"]["Test"] == ["CMD", "unify-probe"], name
        assert config["StopSignal"] == "SIGTERM", name
        labels = config["Labels"]
        assert labels["org.opencontainers.image.title"] == f"unify-{name}"
        assert labels["org.opencontainers.image.version"] == VERSION
        assert labels["org.opencontainers.image.revision"] == built.revision
        assert len(built.revision) == 12 and int(built.revision, 16) >= 0
        port = components[name].health_port
        env = dict(item.split("=", 1) for item in config["Env"])
        assert env["UNIFY_HEALTH_ADDR"] == (f"0.0.0.0:{port}" if port else ""), name


def _run(engine, image: str, script: str, *, caps: list[str]) -> str:
    out = engine.containers.run(image, entrypoint=["sh", "-c", script], network_mode="none",
                                cap_drop=["ALL"], cap_add=caps, remove=True)
    return out.decode().strip()


HAPROXY = ("printf 'defaults\\n mode http\\n timeout client 1s\\n timeout server 1s\\n"
           " timeout connect 1s\\nfrontend f\\n bind 127.0.0.1:80\\n' > /tmp/h.cfg; "
           "id -un; timeout 2 haproxy -db -q -f /tmp/h.cfg; echo rc=$?")
DNSMASQ = ("id -un; timeout 2 dnsmasq -k -p 53 --listen-address=127.0.0.1 --bind-interfaces "
           "--conf-file=/dev/null --pid-file=; echo rc=$?")


@pytest.mark.parametrize("component, script", [("switchboard", HAPROXY), ("dns411", DNSMASQ)])
def test_low_port_as_the_unify_user_with_only_net_bind_service(docker_engine, suite_images,
                                                                component, script):
    # still running when `timeout` stops it (124): it bound port 80/53
    assert _run(docker_engine, suite_images[component].tag, script,
                caps=["NET_BIND_SERVICE"]).splitlines()[-2:] == ["unify", "rc=124"]
    # without the capability in the container's bounding set the kernel refuses to exec a
    # binary that carries it (EPERM: `timeout` exits 126)
    assert _run(docker_engine, suite_images[component].tag, script,
                caps=[]).splitlines()[-1] == "rc=126"


def test_docker_stop_is_a_clean_sigterm_exit(docker_engine, suite_images, nats_server):
    """switchboard, connected to a real NATS and waiting for the catalog, stops on SIGTERM
    with status 0 (not 137: Docker's SIGKILL after the grace period)."""
    container = docker_engine.containers.run(
        suite_images["switchboard"].tag, detach=True, network_mode="host",
        environment={"NATS_URL": nats_server.url, "UNIFY_HEALTH_ADDR": "127.0.0.1:0",
                     "UNIFY_HAPROXY_CONFIG": "/var/lib/unify/haproxy/haproxy.cfg"})
    try:
        logs = container.logs

        def waiting_for_the_catalog() -> None:
            container.reload()
            if container.status != "running":
                raise RuntimeError(f"the switchboard container is {container.status}:\n"
                                   f"{logs().decode()[-2000:]}")
            assert b"catalog" in logs(), logs().decode()[-2000:]

        wait_until(waiting_for_the_catalog, returns, timeout=20, interval=0.2,
                   what="switchboard running and logging about the catalog")
        container.stop(timeout=10)
        container.reload()
        assert container.attrs["State"]["ExitCode"] == 0, logs().decode()[-2000:]
    finally:
        container.remove(force=True)


def test_wireline_image_serves_ssh_and_becomes_healthy(docker_engine, suite_images,
                                                       nats_server, tmp_path):
    """The wireline image on its own: sshd (as its child) answers with an SSH banner on the
    configured port, and the container's HEALTHCHECK reports healthy (NATS connected, sshd
    running)."""
    import socket

    from unify_testkit.devstack.process import free_port

    ssh_port, health_port = free_port(), free_port()
    container = docker_engine.containers.run(
        suite_images["wireline"].tag, detach=True, network_mode="host",
        environment={"NATS_URL": nats_server.url, "UNIFY_WIRELINE_REGISTRY": "127.0.0.1:5999",
                     "UNIFY_WIRELINE_SSH_PORT": str(ssh_port),
                     "UNIFY_WIRELINE_SSH_LISTEN": "127.0.0.1",
                     "UNIFY_HEALTH_ADDR": f"127.0.0.1:{health_port}"})
    try:
        def healthy() -> None:
            container.reload()
            if container.status != "running":
                raise RuntimeError(f"the wireline container is {container.status}:\n"
                                   f"{container.logs().decode()[-3000:]}")
            health = container.attrs["State"].get("Health", {}).get("Status")
            assert health == "healthy", f"{health}:\n{container.logs().decode()[-3000:]}"

        wait_until(healthy, returns, timeout=90, interval=0.5,
                   what="the wireline container healthy (its HEALTHCHECK)")
        with socket.create_connection(("127.0.0.1", ssh_port), timeout=5) as conn:
            assert conn.recv(64).startswith(b"SSH-2.0-OpenSSH_9.2")
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/metrics",
                                    timeout=5) as resp:
            lines = resp.read().decode().splitlines()
        revision = suite_images["wireline"].revision
        assert (f'unify_wireline_build_info{{revision="{revision}",version="0.1.0"}} 1.0'
                in lines), [line for line in lines if "build_info" in line]
        container.stop(timeout=10)
        container.reload()
        assert container.attrs["State"]["ExitCode"] == 0, container.logs().decode()[-2000:]
    finally:
        container.remove(force=True)
