"""Benchmark: ``git push`` to the first HTTP 200 of the new version through HAProxy, through
wireline, split into stages. Not a test: it prints a Markdown table.

Everything is real and is what ``tests/e2e/test_wireline_flow.py`` runs (started by the same
:func:`tests.e2e.wireline_flow_support.start_flow`): the dev stack (Consul, NATS JetStream,
consul-bridge, switchboard with HAProxy, dns411 with dnsmasq), a Debian ``docker-registry``
on 127.0.0.1, a registrator for the engine, and wireline from its image (built first, from
this tree) with pushes over ssh as the ``git`` user; the Docker Engine at ``DOCKER_HOST`` and
its Swarm. The app is the flow's ``ticker`` (``FROM unify-local/debian:bookworm``, a small
Python HTTP server, Docker and Consul health checks every second, ``SERVICE_TAGS`` with
``vhost=ticker``, a host-mode port), deployed with a 1 s ``update_config.monitor``. One cold
push (a new app on an empty registry: the base layers are uploaded once; HAProxy gets a new
vhost) and ``--warm`` pushes of a one-line code change (the build cache holds every layer
but the ``COPY``; the new task replaces the old one, start-first).

Stages (from the release record wireline keeps, seconds):

* receive: SSH session start -> the pre-receive hook runs (git's pack transfer);
* build: ``docker build``; push: the registry push; deploy: ``docker stack deploy`` plus the
  rollout wait (Swarm ``start-first``: the new task healthy, the old one stopped);
* git push: the ``git push`` command, client side (ssh handshake to exit);
* first 200: push start -> the first 200 through HAProxy (by Host, on loopback) whose body
  is the new version: registrator -> Consul (the check passing) -> consul-bridge -> NATS ->
  switchboard -> HAProxy, overlapping the rollout wait (it can come before ``git push`` ends);
* overhead: git push - build - deploy (what is neither ``docker build`` nor the rollout wait:
  ssh, git, the hook, the lock, the checkout, the registry push, NATS); "w/o push" also leaves
  out the registry push.

The request loop sends one request every 20 ms, at most 6,000 requests or 120 s per push.
It shares the flow's names on the engine (container ``wl-e2e-wireline``, registrator node
``wl-e2e-node``) and every registrator registers every container: run it alone, not while
``tests/e2e/test_wireline_flow.py`` runs on the same engine. Everything it creates is
removed at the end (the image ``unify-local/wireline:bench`` stays, as a build cache).

    DOCKER_HOST=unix:///run/unify-docker.sock .venv/bin/python bench/wireline_bench.py [--warm 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.wireline_flow_support import DOMAIN, http_get, start_flow, write_app  # noqa: E402
from unify_cli.images import build_images  # noqa: E402

APP = "wl-bench-ticker"
HOST = f"ticker.{DOMAIN}"
STAGES = ("receive_s", "build_s", "push_s", "deploy_s")
LOOP_INTERVAL_S = 0.02
LOOP_MAX_REQUESTS = 6000
LOOP_MAX_SECONDS = 120.0


def one_push(flow, pusher, repo: Path, version: str) -> dict:
    """Commit ``version`` of the app, push it, and poll HAProxy until the first 200 of that
    version (bounded); the stage times in seconds."""
    write_app(repo, version=version, domain=DOMAIN, http_port=flow.stack.http_port)
    wireline = flow.wireline
    started = time.monotonic()
    push = wireline.push_async(repo, pusher, APP)
    pushed = first_200 = None
    sent = 0
    while first_200 is None or pushed is None:
        now = time.monotonic()
        if pushed is None and push.poll() is not None:
            pushed = now - started
        if first_200 is None:
            if sent >= LOOP_MAX_REQUESTS or now - started > LOOP_MAX_SECONDS:
                push.kill()
                raise SystemExit(f"{version}: no 200 of it through HAProxy after {sent} "
                                 f"requests in {now - started:.0f} s")
            sent += 1
            try:
                status, body = http_get(flow.stack.http_port, HOST)
            except OSError:
                status, body = 0, ""
            if status == 200 and body.startswith(f"{version} "):
                first_200 = time.monotonic() - started
                continue
        time.sleep(LOOP_INTERVAL_S)
    output = push.communicate(timeout=60)[0]
    if push.returncode != 0:
        raise SystemExit(f"push failed:\n{output}")
    release = wireline.releases(APP)[-1]
    row = {stage: float(release[stage]) for stage in STAGES}
    row.update(total=pushed, first_200=first_200, requests=sent)
    row["overhead"] = pushed - row["build_s"] - row["deploy_s"]
    row["overhead_nopush"] = row["overhead"] - row["push_s"]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warm", type=int, default=5, help="warm pushes (default 5)")
    args = parser.parse_args()
    docker_host = os.environ.setdefault("DOCKER_HOST", "unix:///run/unify-docker.sock")
    import docker

    client = docker.DockerClient(base_url=docker_host, timeout=600)
    base = os.environ.get("UNIFY_BASE_IMAGE", "") or "unify-local/debian:bookworm"
    (image,) = build_images(["wireline"], base=base, tag="bench", client=client,
                            log=lambda line: None)
    client.close()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="wl-bench-") as tmp:
        work = Path(tmp)
        flow = start_flow(work, image=image.tag, docker_host=docker_host, apps=(APP,),
                          wireline_env={"UNIFY_WIRELINE_UPDATE_MONITOR": "1"})
        try:
            pusher = flow.wireline.new_key("bench", apps=APP)
            repo = work / "app"
            rows = [("cold", one_push(flow, pusher, repo, "v0"))]
            for i in range(args.warm):
                rows.append(("warm", one_push(flow, pusher, repo, f"v{i + 1}")))
        finally:
            flow.stop()
    load_after = os.getloadavg()[0]
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{os.cpu_count()} CPUs, load average {load_before:.1f} -> {load_after:.1f}, "
          f"image {image.tag} at {image.revision}\n")
    cols = ("receive_s", "build_s", "push_s", "deploy_s", "total", "first_200", "overhead",
            "overhead_nopush")
    print("| push | receive | build | push | deploy | git push | first 200 | overhead "
          "| overhead w/o push |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    cold = rows[0][1]
    print("| cold | " + " | ".join(f"{cold[c]:.2f} s" for c in cols) + " |")
    warm = [r for kind, r in rows if kind == "warm"]
    if warm:
        for label, pick in (("warm p50", statistics.median), ("warm max", max)):
            print(f"| {label} | " + " | ".join(f"{pick([r[c] for r in warm]):.2f} s"
                                               for c in cols) + " |")
    print(f"\nrequests until the first 200: {[r['requests'] for _, r in rows]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
