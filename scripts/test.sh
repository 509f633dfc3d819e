#!/usr/bin/env bash
# Runs the whole test suite against private PostgreSQL and Redis instances,
# installing and starting them if needed (and Prometheus' package for the
# metrics tests): the unit and integration tests,
# then the property-based OpenAPI tester against the real binary.
# Extra arguments go to `cargo test` (e.g. scripts/test.sh activate) and
# skip the OpenAPI tester.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Services this script started are stopped again; ones already running
# (e.g. from scripts/dev.sh) are left alone.
services=$(scripts/services.sh ensure)
eval "$services"
[ "$services_started" = 1 ] && trap 'scripts/services.sh stop' EXIT

# Prometheus' promtool and server, for the metrics tests.
scripts/packages.sh promtool:prometheus prometheus:prometheus

cargo test --locked "$@"
if [ $# -eq 0 ]; then
  scripts/openapi-check.sh
fi
