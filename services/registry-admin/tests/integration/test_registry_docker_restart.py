"""``UNIFY_REGISTRY_RESTART=docker`` on the real engine: a registry in a container (Debian's
docker-registry on the local base image), named as registrator names its instance, is
restarted through the Docker API and serves the re-issued certificate afterwards."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import uuid

import pytest
from ra_support import free_port
from test_registry_cluster import DOCKER_ENV, docker

from registry_admin import pki, store
from registry_admin.plan import Node
from registry_admin.restart import docker_restarter, wait_serving


@pytest.mark.timeout(180)
async def test_docker_restarter_restarts_the_container_registrator_named(tmp_path):
    now = dt.datetime.now(dt.UTC)
    state = tmp_path / "state"
    ca = store.ensure_ca(state, now, days=3650)
    first = pki.issue_server(ca, pki.SanSet.of(["localhost"], ["127.0.0.21"]), now)
    store.write_server(state / "tls", first)
    (state / "registry.yml").write_bytes(store.render_registry_config(
        storage_dir=tmp_path / "storage", tls_dir=state / "tls", port=5000, secret="s",
        notify_url="http://127.0.0.1:9/notify", notify_token="t", read_only=False))
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    shutil.copy("/usr/bin/docker-registry", ctx / "docker-registry")
    (ctx / "Dockerfile").write_text(
        "FROM unify-local/debian:bookworm\nCOPY docker-registry /usr/bin/docker-registry\n"
        'ENTRYPOINT ["/usr/bin/docker-registry"]\n')
    tag = f"ra-test/registry:{uuid.uuid4().hex[:8]}"
    name = f"ra-reg-{uuid.uuid4().hex[:8]}"
    port = free_port()
    docker("build", "-q", "-t", tag, str(ctx))
    try:
        docker("run", "-d", "--name", name, "--network", "host",
               "-e", f"REGISTRY_HTTP_ADDR=127.0.0.21:{port}",
               "-v", f"{tmp_path}:{tmp_path}", tag, "serve", str(state / "registry.yml"))
        node = Node(key="k", name=f"vm/vm:{name}:5000", instance_id=f"vm:{name}:5000",
                    host="127.0.0.21", port=port, hostname="vm", secret_fp=None)
        ca_file = str(state / "ca.crt")
        await wait_serving(node, pki.cert_fingerprint(first.cert_pem), ca_file, timeout=30)
        started = json.loads(docker("inspect", name))[0]["State"]["StartedAt"]
        second = pki.issue_server(ca, pki.SanSet.of(["localhost", "vm"], ["127.0.0.21"]),
                                  now)
        store.write_server(state / "tls", second)
        await docker_restarter(timeout=60, environment=DOCKER_ENV)(node)
        await wait_serving(node, pki.cert_fingerprint(second.cert_pem), ca_file, timeout=30)
        assert json.loads(docker("inspect", name))[0]["State"]["StartedAt"] != started
        bad = Node(key="k", name="x", instance_id="not-registrator", host="127.0.0.21",
                   port=port, hostname="", secret_fp=None)
        with pytest.raises(RuntimeError, match="instance id is not registrator's"):
            await docker_restarter(timeout=10, environment=DOCKER_ENV)(bad)
    finally:
        subprocess.run(["docker", "rm", "-f", name], env=DOCKER_ENV, capture_output=True,
                       timeout=60)
        subprocess.run(["docker", "rmi", "-f", tag], env=DOCKER_ENV, capture_output=True,
                       timeout=60)
