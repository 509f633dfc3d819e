#!/usr/bin/env bash
# Runs the whole test suite against private PostgreSQL and Redis instances,
# installing and starting them if needed: the unit and integration tests
# (the email ones against a real SMTP server, aiosmtpd, and the traces ones
# against an OTLP receiver, both in the git-ignored virtualenv .local/venv,
# made once; the metrics ones with Debian's prometheus package; the
# PgBouncer one with Debian's pgbouncer), then the property-based OpenAPI
# tester against the real binary, then the original service's own endpoint
# tests against it (scripts/seed-check.sh), then the chaos run's short form
# over a local cluster (scripts/chaos.sh).
# Extra arguments go to `cargo test` (e.g. scripts/test.sh activate) and
# skip the OpenAPI tester and the original's tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Services this script started are stopped again; ones already running
# (e.g. from scripts/dev.sh) are left alone.
services=$(scripts/services.sh ensure)
eval "$services"
[ "$services_started" = 1 ] && trap 'scripts/services.sh stop' EXIT

# Prometheus' promtool and server, for the metrics tests; the German
# locale's source, compiled by the test whose PostgreSQL speaks German.
scripts/packages.sh promtool:prometheus prometheus:prometheus pgbouncer:pgbouncer \
  /usr/share/i18n/locales/de_DE:locales

# Python's venv (python3-venv on Debian) with aiosmtpd, the Standard
# Webhooks reference library and OpenTelemetry's published protobuf schema
# from PyPI; the tests start the SMTP server, the webhook receiver and the
# OTLP receiver (tests/otlp/) from .local/venv/bin/python.
scripts/venv.sh

cargo test --locked "$@"
if [ $# -eq 0 ]; then
  scripts/openapi-check.sh
  scripts/seed-check.sh target/debug/activator
  # The chaos run's short form (docs/OPERATIONS.md "Several machines"):
  # 45 s of traffic and one fault of each kind, for each Redis shape.
  scripts/chaos.sh --duration 45 --binary target/debug/activator
fi
