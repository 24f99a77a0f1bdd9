#!/usr/bin/env bash
# Set up (idempotent), then start the whole local stack on real parts with the demo services.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/unify dev up --demo "$@"
