#!/usr/bin/env bash
# One-time (idempotent) set-up of a development or CI machine for Unify:
#   - Debian packages: HAProxy, dnsmasq (the real servers the tests drive)
#   - a virtualenv in .venv with every package installed editable (the test kit libs/unify-testkit
#     and the CLI's [dev] extra included), versions from constraints.txt
#   - the pinned Consul, built from the Go module proxy into ~/.cache/unify/bin (reused)
#   - Debian's docker-registry, openssh-server and git (registry-admin and wireline tests)
#   - scripts/setup-engine.sh: Docker Engine, single-node Swarm, local base image
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v haproxy >/dev/null || need_apt+=(haproxy)
command -v dnsmasq >/dev/null || need_apt+=(dnsmasq-base)
command -v go >/dev/null || need_apt+=(golang-go)
command -v git >/dev/null || need_apt+=(git)
command -v docker-registry >/dev/null || need_apt+=(docker-registry)   # registry-admin, wireline
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)  # wireline
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt \
  -e libs/unify-common -e libs/unify-testkit \
  -e services/consul-bridge -e services/switchboard -e services/dns411 -e services/registrator \
  -e services/registry-admin -e services/wireline \
  -e 'cli[dev,apps,registry]' \
  -r requirements-dev.txt

bash scripts/build-consul.sh >/dev/null
# the Docker Engine, a single-node Swarm and the local base image, for the container tests
# (UNIFY_CONTAINERS=0 leaves them out: the process-level stack and tests need none of them)
if [ "${UNIFY_CONTAINERS:-1}" != 0 ]; then
  bash scripts/setup-engine.sh
fi
echo "setup: ready (.venv, consul in ${UNIFY_CACHE_DIR:-$HOME/.cache/unify}/bin)"
