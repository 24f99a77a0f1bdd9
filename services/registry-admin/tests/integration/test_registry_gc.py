"""``unify registry ls`` and garbage collection on the real registry cluster (and, for the
protected digests of running Swarm tasks, the real Swarm)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest
import test_registry_cluster
from ra_support import push_image
from test_registry_cluster import DOCKER_ENV, build_image, docker

from conftest import DOMAIN
from registry_admin import gc, pki, plan
from registry_admin.registry_api import RegistryClient
from unify_common.events import ImageDeleted, ImagePushed, RegistryStep
from unify_testkit.aio import wait_until

UNIFY = str(Path(sys.executable).with_name("unify"))
#: the cluster tests' fixture (registry.unify.test in /etc/hosts), used here too
registry_name = test_registry_cluster.registry_name


def cli_env(cluster) -> dict[str, str]:
    s = cluster.admin.settings
    return {**DOCKER_ENV, "NATS_URL": ",".join(s.common.nats_urls),
            "UNIFY_REGISTRY_URL": s.registry_url, "UNIFY_REGISTRY_STATE_DIR": str(s.state_dir),
            "UNIFY_REGISTRY_TLS_DIR": str(s.tls_dir), "UNIFY_REGISTRY_CONFIG": str(s.config_path),
            "UNIFY_REGISTRY_STORAGE_DIR": str(s.storage_dir), "UNIFY_REGISTRY_RESTART": "none",
            "UNIFY_REGISTRY_DOMAINS": DOMAIN, "UNIFY_LOG_LEVEL": "WARNING"}


def nodes_of(cluster) -> list[plan.Node]:
    nodes, _ = plan.registry_nodes(cluster.admin.subscriber.mirror.snapshot(), "registry")
    return nodes


async def upload_status(cluster, node: plan.Node) -> int:
    ctx = ssl.create_default_context(cafile=str(cluster.admin.settings.ca_cert_path))
    ctx.check_hostname = False
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http:
        async with http.post(f"https://{node.endpoint}/v2/ra-probe/blobs/uploads/") as r:
            return r.status


async def test_ls_follows_catalog_pagination_with_sizes_and_last_push(cluster):
    s = cluster.admin.settings
    ca = str(s.ca_cert_path)
    pushed = {}
    for repo in ("ra-ls/a", "ra-ls/b", "ra-ls/c"):
        pushed[repo] = await push_image(s.registry_url, ca, repo, "v1", os.urandom(3000))
    await wait_until(lambda: len([e for e in cluster.collector.of("unify.registry.image.pushed")
                                  if isinstance(e, ImagePushed)]) == 3,
                     timeout=20, what="three pushes")
    out = await asyncio.to_thread(subprocess.run, [UNIFY, "registry", "ls", "--json",
                                                   "--page-size", "1"],
                                  env=cli_env(cluster), capture_output=True, text=True,
                                  timeout=60)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [(r["repository"], r["tag"], r["digest"], r["size"]) for r in rows] == [
        (repo, "v1", digest, size) for repo, (digest, _blobs, size) in sorted(pushed.items())]
    assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", r["last_push"]) for r in rows)
    out = await asyncio.to_thread(subprocess.run, [UNIFY, "registry", "ls", "ra-ls/b"],
                                  env=cli_env(cluster), capture_output=True, text=True,
                                  timeout=60)
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "DIGEST", "SIZE", "LAST", "PUSH"]
    assert lines[1].split()[:3] == ["ra-ls/b", "v1", pushed["ra-ls/b"][0][:19]]
    assert len(lines) == 2


@pytest.mark.timeout(240)
async def test_gc_sweeps_unreferenced_blobs_and_keeps_protected_digests(
        cluster, registry_name, tmp_path):
    s = cluster.admin.settings
    ca = str(s.ca_cert_path)
    port = int(s.registry_url.rsplit(":", 1)[1])
    # the protected image goes in with dockerd, and must pull with dockerd afterwards
    ref = f"{registry_name}:{port}/ra-gc/keep:1"
    image_id = build_image(tmp_path, ref, os.urandom(5000))
    try:
        out = docker("push", ref)
        keep = re.search(r"digest: (sha256:[0-9a-f]{64})", out).group(1)
        docker("rmi", ref)
    except BaseException:
        subprocess.run(["docker", "rmi", "-f", image_id], env=DOCKER_ENV,
                       capture_output=True, timeout=60)
        raise
    junk, junk_blobs, _ = await push_image(s.registry_url, ca, "ra-gc/junk", "1",
                                           os.urandom(5000))
    async with RegistryClient(s.registry_url, s.ca_cert_path) as reg:
        assert await reg.delete_manifest("ra-gc/junk", junk)
        manifest = await reg.manifest("ra-gc/keep", keep)
    keep_blobs = {manifest.body["config"]["digest"]} | {
        layer["digest"] for layer in manifest.body["layers"]}
    deleted = await cluster.collector.wait_for(
        lambda e: isinstance(e, ImageDeleted) and e.repository == "ra-gc/junk")
    assert (deleted.digest, deleted.tag) == (junk, "")
    # the dry run from the command line: nothing deleted, the junk blobs listed
    out = await asyncio.to_thread(subprocess.run, [UNIFY, "registry", "gc", "--dry-run"],
                                  env=cli_env(cluster), capture_output=True, text=True,
                                  timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    # the junk manifest's own blob (its JSON) goes with its config and layer
    assert sorted(re.findall(r"^blob eligible: (\S+)$", out.stdout, re.M)) == sorted(
        junk_blobs | {junk})
    assert "check: ok (no protected digest would go)" in out.stdout
    # the real run, in-process, protecting ra-gc/keep:1
    nodes = nodes_of(cluster)
    before = len(cluster.restart_log)
    outcome = await gc.run_gc(cluster.admin, nodes, dry_run=False, delete_untagged=False,
                              protected_refs={("ra-gc/keep", "1")})
    assert (outcome.status, outcome.reasons) == ("ok", [])
    assert outcome.report.eligible_blobs == junk_blobs | {junk}
    assert outcome.protected == {("ra-gc/keep", keep): keep_blobs}
    # every instance went read-only and back, one at a time: two restarts each
    rolled = cluster.restart_log[before:]
    assert sorted(r[0] for r in rolled) == sorted([n.endpoint for n in nodes] * 2)
    spans = [(b, e) for _n, b, e in rolled]
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))
    async with RegistryClient(s.registry_url, s.ca_cert_path) as reg:
        for blob in junk_blobs:
            assert not await reg.blob_exists("ra-gc/junk", blob)
        assert await reg.resolve("ra-gc/keep", "1") == keep
        for blob in keep_blobs:
            assert await reg.blob_exists("ra-gc/keep", blob)
    for node in nodes:
        assert await upload_status(cluster, node) == 202  # read-write again
    try:
        docker("pull", ref)
        assert json.loads(docker("inspect", ref))[0]["RepoDigests"] == [
            f"{registry_name}:{port}/ra-gc/keep@{keep}"]
    finally:
        subprocess.run(["docker", "rmi", "-f", ref], env=DOCKER_ENV, capture_output=True,
                       timeout=60)
    steps = [(e.step, e.status) for e in cluster.collector.of("unify.registry.step.gc")
             if isinstance(e, RegistryStep) and e.run_id == outcome.run_id
             and e.step != "restart"]
    assert steps == [("protect", "ok"), ("read-only", "started"), ("read-only", "ok"),
                     ("dry-run", "ok"), ("check", "ok"), ("sweep", "started"),
                     ("sweep", "ok"), ("read-write", "started"), ("read-write", "ok"),
                     ("verify", "ok")]


@pytest.mark.timeout(240)
async def test_gc_refuses_to_delete_the_image_of_a_running_swarm_task(
        cluster, registry_name, tmp_path):
    port = sorted(int(k.rsplit(":", 1)[1]) for k in cluster.procs)[0]
    ref = f"{registry_name}:{port}/ra-gc/sleeper:1"
    ctx = tmp_path / "ctx"
    for lib in ("/bin/sleep", "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"):
        target = ctx / lib.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(Path(lib).read_bytes())
        target.chmod(0o755)
    (ctx / "Dockerfile").write_text('FROM scratch\nCOPY . /\nCMD ["/bin/sleep", "3600"]\n')
    images = [docker("build", "-q", "-t", ref, str(ctx)).strip()]
    service = f"ra-gc-{uuid.uuid4().hex[:8]}"
    try:
        docker("push", ref)
        docker("service", "create", "-d", "--name", service, "--restart-condition", "none",
               "--stop-grace-period", "1s", ref)
        names = set(pki.sans_of(cluster.admin.server.cert).dns)

        def running() -> set:
            return {r for r in gc.swarm_protected(names, environment=DOCKER_ENV)
                    if r[0] == "ra-gc/sleeper"}

        found = await wait_until(lambda: running(), timeout=60, what="the Swarm task")
        (repo, tag, digest), = found
        assert (repo, tag) == ("ra-gc/sleeper", "1") and digest.startswith("sha256:")
        # the tag moves on: the running task's digest is untagged now
        build_image(tmp_path, ref, os.urandom(2048))
        images.append(ref)
        docker("push", ref)
        outcome = await gc.run_gc(cluster.admin, nodes_of(cluster), dry_run=False,
                                  delete_untagged=True, protected_refs={(repo, digest)})
        assert outcome.status == "refused"
        assert outcome.reasons[0] == (f"ra-gc/sleeper@{digest} is protected but eligible for "
                                      "deletion (untagged)")
        for node in nodes_of(cluster):
            assert await upload_status(cluster, node) == 202  # read-write again
        async with RegistryClient(cluster.admin.settings.registry_url,
                                  cluster.admin.settings.ca_cert_path) as reg:
            assert await reg.resolve("ra-gc/sleeper", digest) == digest
        refused = [e for e in cluster.collector.of("unify.registry.step.gc")
                   if isinstance(e, RegistryStep) and e.run_id == outcome.run_id
                   and e.status == "refused"]
        assert [e.step for e in refused] == ["check"]
    finally:
        subprocess.run(["docker", "service", "rm", service], env=DOCKER_ENV,
                       capture_output=True, timeout=60)

        def gone() -> bool:
            out = subprocess.run(["docker", "ps", "-aq", "--filter",
                                  f"label=com.docker.swarm.service.name={service}"],
                                 env=DOCKER_ENV, capture_output=True, text=True, timeout=30)
            return out.stdout.strip() == ""

        await wait_until(gone, timeout=30, what="the task's container removed")
        subprocess.run(["docker", "rmi", "-f", *images], env=DOCKER_ENV, capture_output=True,
                       timeout=60)
