#!/usr/bin/env bash
# Benchmarks the release binary end to end against private PostgreSQL and
# Redis. `scripts/bench.sh` runs every benchmark; `scripts/bench.sh email`
# (or `service`) one of them; `scripts/bench.sh traces` only the service
# benchmark's section on what traces cost (about 70 s; it needs the OTLP
# receiver's virtualenv, which scripts/test.sh makes). See benches/*.rs for
# what each measures and its knobs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Services this script started are stopped again; ones already running
# (e.g. from scripts/dev.sh) are left alone.
services=$(scripts/services.sh ensure)
eval "$services"
[ "$services_started" = 1 ] && trap 'scripts/services.sh stop' EXIT

benches=("$@")
[ ${#benches[@]} -eq 0 ] && benches=(service email connections passwords)
for bench in "${benches[@]}"; do
  case "$bench" in
    traces) BENCH_ONLY=traces cargo bench --locked --bench service ;;
    *) cargo bench --locked --bench "$bench" ;;
  esac
done
