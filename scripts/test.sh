#!/usr/bin/env bash
# Runs the whole test suite against private PostgreSQL and Redis instances,
# installing and starting them if needed: the unit and integration tests
# (the email ones against a real SMTP server, aiosmtpd, and the traces ones
# against an OTLP receiver, both in the git-ignored virtualenv .local/venv,
# made once; the metrics ones with Debian's prometheus package; the
# PgBouncer one with Debian's pgbouncer), then the property-based OpenAPI
# tester against the real binary, then the original service's own endpoint
# tests against it (scripts/seed-check.sh).
# Extra arguments go to `cargo test` (e.g. scripts/test.sh activate) and
# skip the OpenAPI tester and the original's tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Services this script started are stopped again; ones already running
# (e.g. from scripts/dev.sh) are left alone.
services=$(scripts/services.sh ensure)
eval "$services"
[ "$services_started" = 1 ] && trap 'scripts/services.sh stop' EXIT

# Prometheus' promtool and server, for the metrics tests.
scripts/packages.sh promtool:prometheus prometheus:prometheus pgbouncer:pgbouncer

# Python's venv (python3-venv on Debian) with aiosmtpd, the Standard
# Webhooks reference library and OpenTelemetry's published protobuf schema
# from PyPI; the tests start the SMTP server, the webhook receiver and the
# OTLP receiver (tests/otlp/) from .local/venv/bin/python.
venv=.local/venv
if ! "$venv/bin/python" -c 'import aiosmtpd, standardwebhooks, opentelemetry.proto' 2>/dev/null; then
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "test: Python's venv is missing; install it with: sudo apt-get install -y python3-venv" >&2
      exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >&2
  fi
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "aiosmtpd==1.4.6" "standardwebhooks==1.1.0" \
    "opentelemetry-proto==1.45.2" "protobuf==7.36.2"
fi

cargo test --locked "$@"
if [ $# -eq 0 ]; then
  scripts/openapi-check.sh
  scripts/seed-check.sh target/debug/activator
fi
