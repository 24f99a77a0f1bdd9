"""Image sizes and build times, cold (no layer cache) and cached, for bench/README.md.

    DOCKER_HOST=... python bench/images_bench.py [--base unify-local/debian:bookworm]

Cold: every layer built again (``--no-cache``), the wheelhouse already there (it is built
once per change of constraints.txt and reused by every later build). Cached: the same build
again with nothing changed, measured after one ordinary build (right after ``--no-cache``
builds of several images, the classic builder can pick another image's layer for a shared
``ARG`` step and miss the rest of the chain once). Prints one Markdown table row per image.
"""

from __future__ import annotations

import argparse
import time

import docker

from unify_cli.images import build_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="unify-local/debian:bookworm")
    args = parser.parse_args()
    client = docker.from_env(timeout=900)
    started = time.monotonic()
    cold = build_images(base=args.base, tag="bench", client=client, nocache=True,
                        log=lambda line: None)
    cold_total = time.monotonic() - started
    build_images(base=args.base, tag="bench", client=client, log=lambda line: None)
    started = time.monotonic()
    cached = build_images(base=args.base, tag="bench", client=client, log=lambda line: None)
    cached_total = time.monotonic() - started
    print("| image | size (MB) | cold build (s) | cached build (s) |")
    print("|---|---:|---:|---:|")
    for c, w in zip(cold, cached):
        print(f"| {c.component} | {c.size / 1e6:.0f} | {c.seconds:.1f} | {w.seconds:.1f} |")
    print(f"| all (with the wheelhouse step) | | {cold_total:.0f} | {cached_total:.0f} |")


if __name__ == "__main__":
    main()
