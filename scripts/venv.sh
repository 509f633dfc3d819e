#!/usr/bin/env bash
# Makes the git-ignored Python virtualenv .local/venv the tests use, once:
# aiosmtpd (the SMTP server of the email tests), the Standard Webhooks
# reference library (the webhook receiver tests/webhooks/receiver.py) and
# OpenTelemetry's published protobuf schema (the OTLP receiver
# tests/otlp/receiver.py), from PyPI. Installs Debian's python3-venv first when it is missing (as
# root).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv=.local/venv
if ! "$venv/bin/python" -c 'import aiosmtpd, standardwebhooks, opentelemetry.proto' 2>/dev/null; then
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "venv: Python's venv is missing; install it with: sudo apt-get install -y python3-venv" >&2
      exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >&2
  fi
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "aiosmtpd==1.4.6" "standardwebhooks==1.1.0" \
    "opentelemetry-proto==1.45.2" "protobuf==7.36.2"
fi
