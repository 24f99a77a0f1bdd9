"""registry-admin on real parts: real Consul, consul-bridge, NATS, Debian docker-registry
processes on one storage, TLS with the generated CA, and the real dockerd pushing and pulling
through ``registry.unify.test:<port>``."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest
from ra_support import free_port

from conftest import DOMAIN
from registry_admin import pki
from registry_admin.secret import fingerprint, new_secret
from unify_common.events import ErrorEvent, ImagePushed, RegistryStep
from unify_testkit.aio import wait_until

DOCKER_ENV = {**os.environ, "DOCKER_HOST": os.environ.get(
    "DOCKER_HOST", "unix:///run/unify-docker.sock")}
HOSTS = Path("/etc/hosts")


#: Go's resolver (dockerd's) keeps what it read of /etc/hosts for 5 s, so a line added just
#: after an earlier lookup is seen only once that copy expires
HOSTS_CACHE_S = 5.0


def docker(*args: str, timeout: float = 120) -> str:
    for attempt in range(4):  # other suites on this machine rewrite /etc/hosts too
        if args[0] in ("push", "pull", "service"):
            ensure_hosts_line()
        out = subprocess.run(["docker", *args], env=DOCKER_ENV, capture_output=True,
                             text=True, timeout=timeout)
        if "no such host" not in out.stderr:
            break
        if attempt < 3:
            time.sleep(HOSTS_CACHE_S / 2)  # until dockerd's copy of /etc/hosts expires
    assert out.returncode == 0, f"docker {' '.join(args)}: {out.stderr}"
    return out.stdout


HOSTS_LINE = f"127.0.0.1 registry.{DOMAIN}  # registry-admin tests"


def ensure_hosts_line() -> None:
    """Put the test's /etc/hosts line back if someone rewrote the file meanwhile (other
    suites edit it too); only this line is ever added or removed."""
    text = HOSTS.read_text()
    if HOSTS_LINE not in text.splitlines():
        HOSTS.write_text(text + ("" if text.endswith("\n") else "\n") + HOSTS_LINE + "\n")


@pytest.fixture
def registry_name():
    """``registry.unify.test`` resolves to 127.0.0.1 for dockerd (an /etc/hosts line that
    is removed again)."""
    ensure_hosts_line()
    try:
        yield f"registry.{DOMAIN}"
    finally:
        lines = HOSTS.read_text().splitlines(keepends=True)
        HOSTS.write_text("".join(line for line in lines if line.rstrip("\n") != HOSTS_LINE))


def build_image(tmp: Path, ref: str, payload: bytes) -> str:
    ctx = tmp / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "payload").write_bytes(payload)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY payload /payload\n")
    return docker("build", "-q", "-t", ref, str(ctx)).strip()


@pytest.mark.timeout(180)
async def test_push_gives_one_event_with_the_exact_digest_and_pulls_through_every_node(
        cluster, registry_name, tmp_path):
    ports = sorted(int(k.rsplit(":", 1)[1]) for k in cluster.procs)
    # the CA is where dockerd looks for every name and port, and nowhere else is needed
    for port in ports:
        ca = Path(f"/etc/docker/certs.d/{registry_name}:{port}/ca.crt").read_bytes()
        assert ca == cluster.admin.ca.cert_pem
    ref = f"{registry_name}:{ports[0]}/ra-test/app:1"
    build_image(tmp_path, ref, os.urandom(4096))
    try:
        out = docker("push", ref)
        digest = re.search(r"digest: (sha256:[0-9a-f]{64})", out).group(1)
        pushed = await cluster.collector.wait_for(
            lambda e: isinstance(e, ImagePushed) and e.repository == "ra-test/app")
        assert (pushed.tag, pushed.digest, pushed.media_type) == (
            "1", digest, "application/vnd.docker.distribution.manifest.v2+json")
        assert pushed.instance.endswith(f":{ports[0]}") and pushed.size > 0
        # the same image pulls by name through the other nodes (shared storage, same CA)
        docker("rmi", ref)
        for port in ports[1:]:
            other = f"{registry_name}:{port}/ra-test/app:1"
            docker("pull", other)
            assert json.loads(docker("inspect", other))[0]["RepoDigests"] == [
                f"{registry_name}:{port}/ra-test/app@{digest}"]
            docker("rmi", other)
        # exactly one event: the stream holds one pushed event for this registry event id
        js = cluster.admin.subscriber.js
        info = await js.stream_info("UNIFY", subjects_filter="unify.registry.image.pushed")
        assert info.state.subjects == {"unify.registry.image.pushed": 1}
    finally:
        subprocess.run(["docker", "rmi", "-f", ref], env=DOCKER_ENV, capture_output=True,
                       timeout=60)


@pytest.mark.timeout(180)
async def test_new_node_gains_its_san_and_registries_roll_one_at_a_time(cluster):
    before_fp = cluster.current_fp()
    port = free_port()
    cluster.add_process("reg-d", "127.0.0.4", port)
    cluster.register("reg-d", "127.0.0.4", port)
    await wait_until(lambda: "reg-d" in pki.sans_of(cluster.admin.server.cert).dns, timeout=30,
                     what="reg-d in the certificate")
    sans = pki.sans_of(cluster.admin.server.cert)
    assert sans == pki.SanSet(("localhost", "reg-a", "reg-b", "reg-c", "reg-d",
                               f"registry.{DOMAIN}"), ("127.0.0.1", "127.0.0.4"))
    assert cluster.current_fp() != before_fp
    await cluster.all_serving_current()
    # every instance restarted once for the new certificate, never two at the same time
    rolled = [r for r in cluster.restart_log if r[1] >= cluster.restart_log[-4][1]]
    assert sorted(r[0] for r in rolled) == sorted(cluster.procs)
    spans = sorted((began, ended) for _n, began, ended in rolled)
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))
    steps = [e for e in cluster.collector.of("unify.registry.step.certificate")
             if isinstance(e, RegistryStep)]
    assert steps[-1].step == "issue" and "sans-changed" in steps[-1].detail
    assert Path(f"/etc/docker/certs.d/reg-d:{port}/ca.crt").exists()


@pytest.mark.timeout(180)
async def test_mismatched_secret_is_reported_and_uploads_move_only_between_matching_nodes(
        cluster):
    ports = sorted(int(k.rsplit(":", 1)[1]) for k in cluster.procs)
    ca = str(cluster.admin.settings.ca_cert_path)
    blob = os.urandom(10_000)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    ssl_ctx = __import__("ssl").create_default_context(cafile=ca)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_ctx)) as http:
        async def start_upload(port: int, repo: str) -> str:
            async with http.post(f"https://127.0.0.1:{port}/v2/{repo}/blobs/uploads/") as r:
                assert r.status == 202
                return r.headers["Location"]

        def elsewhere(location: str, port: int, host: str = "127.0.0.1") -> str:
            return re.sub(r"^https://[^/]+", f"https://{host}:{port}", location)

        # started on node a, finished on node b, readable on node c
        loc = await start_upload(ports[0], "ra-test/moved")
        sep = "&" if "?" in loc else "?"
        async with http.put(elsewhere(loc, ports[1]) + f"{sep}digest={digest}", data=blob,
                            headers={"Content-Type": "application/octet-stream"}) as r:
            assert r.status == 201
        async with http.head(f"https://127.0.0.1:{ports[2]}/v2/ra-test/moved/blobs/{digest}"
                             ) as r:
            assert r.status == 200

        # a fourth node with another secret and no fingerprint in the catalog: the
        # upload-state probe finds it; readiness fails; uploads moving to it break
        other = new_secret()
        port = free_port()
        proc = cluster.add_process("reg-e", "127.0.0.5", port,
                                   env={"REGISTRY_HTTP_SECRET": other})
        cluster.register("reg-e", "127.0.0.5", port, meta=False)
        err = await cluster.collector.wait_for(
            lambda e: isinstance(e, ErrorEvent) and e.reason == "secret-mismatch")
        assert err.node == "reg-e" and other not in err.message
        port_a = next(p.port for p in cluster.procs.values() if p.name == "reg-a")
        assert err.message == ("REGISTRY_HTTP_SECRET of reg-e/reg-e:registry:"
                               f"{port} differs from reg-a/reg-a:registry:{port_a}'s: it "
                               "refuses uploads started there ('blob upload unknown')")
        checks = dict(cluster.admin.health.readiness())
        assert checks["secret"] == err.message
        assert not cluster.admin.health.ready()
        loc = await start_upload(ports[0], "ra-test/broken")
        async with http.put(elsewhere(loc, port, "127.0.0.5") + f"{sep}digest={digest}",
                            data=blob, headers={"Content-Type": "application/octet-stream"}
                            ) as r:
            assert r.status in (400, 404)
            assert re.search(r"BLOB_UPLOAD_(INVALID|UNKNOWN)", await r.text())
        # it gets the cluster's secret: the next reconcile clears the problem
        del proc.env["REGISTRY_HTTP_SECRET"]
        await asyncio.to_thread(proc.restart)
        proc.wait_serving()
        await cluster.admin.reconcile_now()
        assert cluster.admin.secret_mismatches == {}
        assert dict(cluster.admin.health.readiness())["secret"] is None
        # a fingerprint in the catalog that is not the cluster's is reported too
        cluster.register("reg-e", "127.0.0.5", port, fp=fingerprint(other))
        err = await cluster.collector.wait_for(
            lambda e: isinstance(e, ErrorEvent) and e.reason == "secret-mismatch"
            and "fingerprint" in e.message)
        assert err.message.startswith("REGISTRY_HTTP_SECRET of reg-e/reg-e:registry:")
        assert fingerprint(other) not in err.message
        assert not cluster.admin.health.ready()
        cluster.register("reg-e", "127.0.0.5", port)
        await wait_until(lambda: cluster.admin.secret_mismatches == {}, timeout=30,
                         what="mismatch cleared")


async def test_notifications_need_the_token_and_a_well_formed_body(cluster):
    url = f"http://127.0.0.1:{cluster.admin.notify_port}/notify"
    token = cluster.admin.notify_token
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=b'{"events": []}') as r:
            assert r.status == 401
        async with http.post(url, data=b'{"events": []}',
                             headers={"Authorization": "Bearer wrong"}) as r:
            assert r.status == 401
        async with http.post(url, data=b'{"events": [{"id": "x y", "action": "push", '
                             b'"target": {"mediaType": "application/vnd.oci.image.manifest.'
                             b'v1+json", "repository": "a"}}]}',
                             headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 400
            assert await r.text() == "event 0: id is not a registry event id\n"
        async with http.post(url, data=io.BytesIO(b"x" * (2 << 20)),
                             headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 413
    err = await cluster.collector.wait_for(
        lambda e: isinstance(e, ErrorEvent) and e.reason == "invalid-notification")
    assert err.message == "notification rejected: event 0: id is not a registry event id"
    assert cluster.collector.of("unify.registry.image") == []
