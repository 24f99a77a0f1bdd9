"""Benchmark: ``git push`` to a running Swarm service through wireline, split into stages.
Not a test: it prints a Markdown table.

Everything is real: nats-server, the Debian ``docker-registry`` on 127.0.0.1, wireline's
service process with its OpenSSH sshd, git over ssh, the Docker Engine at ``DOCKER_HOST`` and
its Swarm. The app is the tests' small one (``FROM unify-local/debian:bookworm``, a
``python3 -m http.server`` with a 1 s healthcheck). One cold push (a new app on an empty
registry: the base layers are uploaded once) and ``--warm`` pushes of a one-line code change
(the build cache holds every layer but the ``COPY``).

Stages (from the release record wireline keeps, seconds):

* receive: SSH session start -> the pre-receive hook runs (git's pack transfer);
* build: ``docker build``; push: the registry push; deploy: ``docker stack deploy`` plus the
  rollout wait (Swarm ``start-first``: the new task healthy, the old one stopped);
* total: the ``git push`` command, client side;
* overhead: total - build - deploy (what is neither ``docker build`` nor the rollout wait:
  ssh, git, the lock, the checkout, the registry push, NATS); "w/o push" also leaves out
  the registry push.

    DOCKER_HOST=unix:///run/unify-docker.sock .venv/bin/python bench/wireline_bench.py [--warm 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "services" / "wireline" / "tests" / "integration"))

from wireline_support import (Registry, make_app, remove_images,  # noqa: E402
                              remove_stacks, start_wireline)

from unify_testkit.devstack.nats import NatsServer  # noqa: E402

STAGES = ("receive_s", "build_s", "push_s", "deploy_s")


def one_push(wireline, pusher, repo: Path, app: str) -> dict:
    started = time.monotonic()
    result = wireline.push(repo, pusher, app)
    total = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"push failed:\n{result.stderr}")
    release = wireline.releases(app)[-1]
    row = {stage: float(release[stage]) for stage in STAGES}
    row["total"] = total
    row["overhead"] = total - row["build_s"] - row["deploy_s"]
    row["overhead_nopush"] = row["overhead"] - row["push_s"]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warm", type=int, default=5, help="warm pushes (default 5)")
    args = parser.parse_args()
    os.environ.setdefault("DOCKER_HOST", "unix:///run/unify-docker.sock")
    app = f"bench{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="wl-bench-") as tmp:
        work = Path(tmp)
        nats = NatsServer(work / "nats").start()
        registry = Registry(work / "registry").start()
        wireline = start_wireline(work / "wl", nats_url=nats.url, registry=registry.addr,
                                  extra={"UNIFY_WIRELINE_UPDATE_MONITOR": "1"})
        try:
            pusher = wireline.new_key("bench")
            repo = make_app(work / "app", version="0")
            rows = [("cold", one_push(wireline, pusher, repo, app))]
            for i in range(args.warm):
                make_app(repo, version=str(i + 1))
                rows.append(("warm", one_push(wireline, pusher, repo, app)))
        finally:
            remove_stacks([app])
            wireline.process.stop()
            registry.stop()
            nats.stop()
            remove_images(f"{registry.addr}/")
    cols = ("receive_s", "build_s", "push_s", "deploy_s", "total", "overhead",
            "overhead_nopush")
    print("| push | receive | build | push | deploy | total | overhead | overhead w/o push |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    cold = rows[0][1]
    print("| cold | " + " | ".join(f"{cold[c]:.2f} s" for c in cols) + " |")
    warm = [r for kind, r in rows if kind == "warm"]
    if warm:
        for label, pick in (("warm p50", statistics.median), ("warm max", max)):
            print(f"| {label} | " + " | ".join(f"{pick([r[c] for r in warm]):.2f} s"
                                               for c in cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
