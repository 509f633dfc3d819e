#!/usr/bin/env bash
# Benchmarks the release binary end to end against private PostgreSQL and
# Redis (see benches/service.rs for what is measured and its knobs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Services this script started are stopped again; ones already running
# (e.g. from scripts/dev.sh) are left alone.
services=$(scripts/services.sh ensure)
eval "$services"
[ "$services_started" = 1 ] && trap 'scripts/services.sh stop' EXIT

cargo bench --locked --bench service
