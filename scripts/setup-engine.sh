#!/usr/bin/env bash
# Idempotent set-up of a Docker Engine, a single-node Swarm and the local base image, for the
# container images, the docker-compose suite and the Swarm tests.
#
#   1. Debian packages: docker.io (dockerd, containerd, runc, tini as docker-init),
#      docker-compose (v1), debootstrap.
#   2. An engine at $DOCKER_HOST: when one answers there it is used as it is; otherwise Unify
#      starts its own dockerd with its own socket, data-root and exec-root
#      (unix:///run/unify-docker.sock, /var/lib/unify-docker), detached (there may be no
#      systemd), and waits for it.
#   3. Swarm mode on that engine (single node, advertised on 127.0.0.1) unless already active.
#   4. The local base image unify-local/debian:bookworm (Debian minbase + python3, venv, tini,
#      ca-certificates) from debootstrap, since no registry can be pulled from here. The root
#      file system tarball is cached in $UNIFY_CACHE_DIR/base, so a new data-root re-imports it
#      in seconds instead of bootstrapping again (~75 s).
#
# Writes the engine's address to .unify/engine.env (`export DOCKER_HOST=...`, and
# UNIFY_DOCKER_SOCKET, the socket path the compose file mounts into registrator), which
# scripts/test.sh sources and the test fixtures read. Must run as root (or with sudo) the
# first time; later runs only check.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE_DIR="${UNIFY_CACHE_DIR:-$HOME/.cache/unify}"
BASE_IMAGE="${UNIFY_BASE_IMAGE:-unify-local/debian:bookworm}"
OWN_SOCK="unix:///run/unify-docker.sock"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
say() { printf 'setup-engine: %s\n' "$*" >&2; }

# -- 1. packages --------------------------------------------------------------------------
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v iptables >/dev/null || need+=(iptables)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The machine may carry a newer docker CLI first on PATH; both speak to dockerd 20.10.
DOCKER=(docker)

engine_up() { timeout 10 "${DOCKER[@]}" info >/dev/null 2>&1; }

# -- 2. engine ----------------------------------------------------------------------------
export DOCKER_HOST="${DOCKER_HOST:-$OWN_SOCK}"
if ! engine_up; then
  if [ "$DOCKER_HOST" != "$OWN_SOCK" ]; then
    say "no engine answers at $DOCKER_HOST; starting Unify's own at $OWN_SOCK"
    export DOCKER_HOST="$OWN_SOCK"
  fi
fi
if ! engine_up; then
  say "starting dockerd (data-root /var/lib/unify-docker, log /var/log/unify-dockerd.log)"
  if [ -f /run/unify-docker.pid ] && kill -0 "$(cat /run/unify-docker.pid)" 2>/dev/null; then
    say "a dockerd from an earlier run is alive but not answering; stopping it"
    $SUDO kill "$(cat /run/unify-docker.pid)" || true
    for _ in $(seq 1 50); do kill -0 "$(cat /run/unify-docker.pid)" 2>/dev/null || break; sleep 0.2; done
  fi
  $SUDO rm -f /run/unify-docker.pid /run/unify-docker.sock
  # shellcheck disable=SC2086
  $SUDO setsid dockerd --host "$OWN_SOCK" --data-root /var/lib/unify-docker \
    --exec-root /run/unify-docker --pidfile /run/unify-docker.pid \
    >>/var/log/unify-dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 150); do engine_up && break; sleep 0.2; done
  engine_up || { say "dockerd did not come up; see /var/log/unify-dockerd.log"; tail -20 /var/log/unify-dockerd.log >&2; exit 1; }
fi
mkdir -p .unify
{ printf 'export DOCKER_HOST=%q\n' "$DOCKER_HOST"
  # the socket path, for containers that mount it (registrator in deploy/compose)
  case "$DOCKER_HOST" in unix://*) printf 'export UNIFY_DOCKER_SOCKET=%q\n' "${DOCKER_HOST#unix://}";; esac
} > .unify/engine.env

# -- 3. swarm -----------------------------------------------------------------------------
state="$("${DOCKER[@]}" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || true)"
if [ "$state" != "active" ]; then
  say "initialising a single-node swarm"
  "${DOCKER[@]}" swarm init --advertise-addr 127.0.0.1 >/dev/null
fi

# -- 4. base image ------------------------------------------------------------------------
if ! "${DOCKER[@]}" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  tarball="$CACHE_DIR/base/bookworm-rootfs.tar"
  if [ ! -s "$tarball" ]; then
    mirror="$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
              | head -1 | grep -oE 'https?://[^ ]+' || true)"
    mirror="${mirror:-http://deb.debian.org/debian}"
    say "bootstrapping Debian bookworm from $mirror (about 75 s, once)"
    rootfs="$(mktemp -d)"
    $SUDO debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,tini \
      bookworm "$rootfs" "$mirror" >/dev/null
    echo "deb $mirror bookworm main" | $SUDO tee "$rootfs/etc/apt/sources.list" >/dev/null
    $SUDO rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    mkdir -p "$CACHE_DIR/base"
    $SUDO tar -C "$rootfs" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    $SUDO rm -rf "$rootfs"
  fi
  say "importing $BASE_IMAGE"
  "${DOCKER[@]}" import --change 'CMD ["/bin/bash"]' "$tarball" "$BASE_IMAGE" >/dev/null
fi
say "ready: DOCKER_HOST=$DOCKER_HOST, swarm active, base image $BASE_IMAGE"
