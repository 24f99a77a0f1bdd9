#!/usr/bin/env bash
# Builds the pinned Consul release from the Go module proxy into a cache outside the work tree.
# Idempotent: reuses the binary when it is already there and reports the right version.
#
# Consul has no Debian or PyPI package. We build it through a throwaway Go module that requires
# github.com/hashicorp/consul at the pinned tag, repeats the `exclude` lines of Consul's own go.mod
# (a dependency's excludes do not apply to the main module), and builds the main package.
# Consul's own `replace ./api` etc. lines are ignored outside its repository, so the submodules
# resolve to the versions its go.mod requires.
#
# Pinned: v1.14.11 — see README "Consul build" for why this release.
set -euo pipefail

CONSUL_VERSION="${UNIFY_CONSUL_VERSION:-v1.14.11}"
CACHE_DIR="${UNIFY_CACHE_DIR:-$HOME/.cache/unify}"
BIN_DIR="$CACHE_DIR/bin"
BIN="$BIN_DIR/consul-${CONSUL_VERSION}"

# (the version text is read whole: `version | grep -q` under pipefail fails at random when
# grep exits before the binary finished writing, which rebuilt Consul for nothing)
if [ -x "$BIN" ] && [[ "$("$BIN" version 2>/dev/null || true)" == *"Consul ${CONSUL_VERSION}"* ]]; then
  ln -sf "$BIN" "$BIN_DIR/consul"
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { echo "build-consul: the Go toolchain is required" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$BIN_DIR"
cd "$work"
cat > go.mod <<MOD
module unify.local/consulbuild

go 1.20

require github.com/hashicorp/consul ${CONSUL_VERSION}

exclude (
	github.com/hashicorp/go-msgpack v1.1.5
	github.com/hashicorp/go-msgpack v1.1.6
)
MOD
cat > tools.go <<'SRC'
//go:build tools

package tools

import _ "github.com/hashicorp/consul"
SRC
export GOFLAGS="-mod=mod -buildvcs=false"
go mod download github.com/hashicorp/consul >&2
go get "github.com/hashicorp/consul@${CONSUL_VERSION}" >&2
ver="${CONSUL_VERSION#v}"
go build -trimpath \
  -ldflags "-s -w -X github.com/hashicorp/consul/version.GitVersion=${ver} -X github.com/hashicorp/consul/version.Version=${ver} -X github.com/hashicorp/consul/version.VersionPrerelease=" \
  -o "$BIN.tmp" github.com/hashicorp/consul >&2
mv "$BIN.tmp" "$BIN"
ln -sf "$BIN" "$BIN_DIR/consul"
echo "$BIN"
