#!/usr/bin/env bash
# Runs the whole test suite (unit and integration) against private
# PostgreSQL and Redis instances, installing and starting them if needed.
# Extra arguments go to `cargo test` (e.g. scripts/test.sh activate).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Services this script started are stopped again; ones already running
# (e.g. from scripts/dev.sh) are left alone.
if scripts/services.sh status; then
  eval "$(scripts/services.sh env)"
else
  eval "$(scripts/services.sh start)"
  trap 'scripts/services.sh stop' EXIT
fi
export DATABASE_URL REDIS_URL

cargo test --locked "$@"
