#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite against real components.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
bash scripts/setup.sh
echo "test.sh: set-up took $((SECONDS - started)) s" >&2
# the engine setup-engine.sh found or started (DOCKER_HOST)
[ -f .unify/engine.env ] && . .unify/engine.env
exec .venv/bin/python -m pytest "$@"
