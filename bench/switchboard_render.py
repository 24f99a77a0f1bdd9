"""Benchmark: switchboard's pure core (desired state + Jinja2 render) at 10,000 instances.

Run: ``.venv/bin/python bench/switchboard_render.py [instances] [services]``. Prints the time of
a cold build+render, the median of warm ones, and a re-render with a previous slot layout
(the steady-state path), plus the config size; then, when ``haproxy`` is installed, the time
``haproxy -c`` takes to validate that configuration (the other fixed cost of a change).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from switchboard.desired import build_desired  # noqa: E402
from switchboard.plan import slot_layout  # noqa: E402
from switchboard.render import RenderOptions, render  # noqa: E402
from tests.fixtures.catalog import make_instance  # noqa: E402


def catalog(count: int, services: int):
    """``count`` passing instances spread over ``services`` vhost services on two domains,
    every fifth service on a url_prefix, every tenth a tcp service."""
    out = []
    for i in range(count):
        s = i % services
        if s % 10 == 9:
            tags = [f"tcp={20000 + s}"]
        else:
            tags = ["dns=example.com", "dns=example.org", f"vhost=svc{s}", "http"]
            if s % 5 == 4:
                tags.append(f"url_prefix=/p{s}")
        out.append(make_instance(f"svc{s}", f"svc{s}-{i}", f"10.{i // 65536}.{i // 256 % 256}."
                                 f"{i % 256}", 8000 + i % 1000, tags, node=f"node-{i % 50}",
                                 create_index=s + 1))
    return out


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    services = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    instances = catalog(count, services)
    options = RenderOptions(bind="0.0.0.0", run_dir="/run/unify-switchboard")

    def once(previous=None):
        start = time.perf_counter()
        desired = build_desired(instances, previous_slots=previous)
        data = render(desired, options)
        return time.perf_counter() - start, desired, data

    cold, desired, data = once()
    warm = [once()[0] for _ in range(5)]
    layout = slot_layout(desired)
    steady = [once(layout)[0] for _ in range(5)]
    print(f"instances={count} services={services} backends={len(desired.backends)} "
          f"config_bytes={len(data)}")
    print(f"cold build+render: {cold * 1000:.1f} ms")
    print(f"warm build+render (median of 5): {statistics.median(warm) * 1000:.1f} ms")
    print(f"with previous slot layout (median of 5): {statistics.median(steady) * 1000:.1f} ms")
    if shutil.which("haproxy"):
        with tempfile.TemporaryDirectory(prefix="sb-bench-") as tmp:
            cfg = Path(tmp) / "haproxy.cfg"
            cfg.write_bytes(render(desired, RenderOptions(bind="127.0.0.1", run_dir=tmp)))
            start = time.perf_counter()
            result = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True)
            took = time.perf_counter() - start
        print(f"haproxy -c on it: {took * 1000:.1f} ms (exit {result.returncode})")


if __name__ == "__main__":
    main()
