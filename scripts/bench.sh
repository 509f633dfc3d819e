#!/usr/bin/env bash
# Benchmarks the release binary end to end against private PostgreSQL and
# Redis (see benches/service.rs for what is measured and its knobs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if scripts/services.sh status; then
  eval "$(scripts/services.sh env)"
else
  eval "$(scripts/services.sh start)"
  trap 'scripts/services.sh stop' EXIT
fi
export DATABASE_URL REDIS_URL

cargo bench --locked --bench service
