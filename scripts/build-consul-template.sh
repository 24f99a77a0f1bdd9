#!/usr/bin/env bash
# Builds the pinned consul-template release from the Go module proxy into a cache outside the
# work tree, for bench/consul_template_compare.py. Standalone: neither setup.sh nor CI calls it
# (benchmarks are not run in CI). Idempotent: reuses the binary when it is already there and
# reports the right version. Prints the binary's path as its last line.
#
# consul-template has no Debian or PyPI package. As scripts/build-consul.sh does for Consul, we
# build it through a throwaway Go module that requires github.com/hashicorp/consul-template at
# the pinned tag and builds its main package (the module root). The go.mod of v0.41.1 has no
# `exclude` or `replace` lines, so there is nothing to repeat here.
#
# Pinned: v0.41.1 (MPL-2.0). It is the only version the module proxy lists
# (`go list -m -versions`); older tags (v0.40.0 ... v0.31.0) are served when named exactly.
# v0.41.1 resolves and builds with Go 1.26 (its go.mod says go 1.24.4).
# Override with UNIFY_CONSUL_TEMPLATE_VERSION, the cache with UNIFY_CACHE_DIR.
set -euo pipefail

CT_VERSION="${UNIFY_CONSUL_TEMPLATE_VERSION:-v0.41.1}"
CACHE_DIR="${UNIFY_CACHE_DIR:-$HOME/.cache/unify}"
BIN_DIR="$CACHE_DIR/bin"
BIN="$BIN_DIR/consul-template-${CT_VERSION}"

if [ -x "$BIN" ] && [[ "$("$BIN" -version 2>&1 || true)" == *"consul-template ${CT_VERSION}"* ]]; then
  ln -sf "$BIN" "$BIN_DIR/consul-template"
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { echo "build-consul-template: the Go toolchain is required" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$BIN_DIR"
cd "$work"
cat > go.mod <<MOD
module unify.local/consultemplatebuild

go 1.24

require github.com/hashicorp/consul-template ${CT_VERSION}
MOD
cat > tools.go <<'SRC'
//go:build tools

package tools

import _ "github.com/hashicorp/consul-template"
SRC
export GOFLAGS="-mod=mod -buildvcs=false"
go mod download github.com/hashicorp/consul-template >&2
go get "github.com/hashicorp/consul-template@${CT_VERSION}" >&2
go build -trimpath \
  -ldflags "-s -w -X github.com/hashicorp/consul-template/version.GitCommit=module-proxy" \
  -o "$BIN.tmp" github.com/hashicorp/consul-template >&2
mv "$BIN.tmp" "$BIN"
ln -sf "$BIN" "$BIN_DIR/consul-template"
echo "$BIN"
