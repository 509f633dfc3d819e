#!/usr/bin/env bash
# Runs the property-based OpenAPI tester (schemathesis) against the real
# binary: every check on every operation of /openapi.json, authenticated
# operations included (as an account registered and activated first). Fails
# on any failed check, and on any error the server logged.
#
#   scripts/openapi-check.sh
#
# Needs PostgreSQL and Redis as scripts/services.sh provides them (it starts
# them when they are not running), python3, and PyPI for the tester's
# virtualenv in .local/venv (made once). Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

services=$(scripts/services.sh ensure)
eval "$services"

venv=.local/venv
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "4.32.5" ||
  ! "$venv/bin/python" -c 'import email_validator' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    "schemathesis==4.32.5" "email-validator==2.3.0"
fi

cargo build --locked -q
bin=target/debug/activator
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

db=activator_openapi_$$
admin=${DATABASE_URL%/*}/postgres
psql -q "$admin" -c "CREATE DATABASE $db" >/dev/null
export DATABASE_URL=${DATABASE_URL%/*}/$db SECRET_KEY=openapi-check-secret-key-0123456789 BCRYPT_COST=4
log=$(mktemp)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
  psql -q "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -f "$log"
  [ "$services_started" = 1 ] && scripts/services.sh stop
  return 0
}
trap cleanup EXIT

mailbox_port=$(free_port)
"$bin" mailbox --port "$mailbox_port" --smtp-port "$(free_port)" 2>/dev/null &
pids+=($!)
port=$(free_port)
ROCKET_PORT=$port EMAIL_API_URL="http://127.0.0.1:$mailbox_port/v1/send" \
  "$bin" serve --migrate 2>"$log" &
pids+=($!)
base=http://127.0.0.1:$port
for _ in $(seq 100); do
  curl -fs "$base/health/live" >/dev/null 2>&1 && curl -fs "http://127.0.0.1:$mailbox_port/v1/messages" >/dev/null 2>&1 && break
  sleep 0.1
done

# The account the authenticated operations use: registered and activated.
email=openapi-check@example.com
password='Secr3t!pass'
curl -fs "$base/auth/register" -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"$password\"}" >/dev/null
code=""
for _ in $(seq 100); do
  code=$(curl -fs "http://127.0.0.1:$mailbox_port/v1/messages?to=$email" |
    python3 -c 'import json,sys; m=json.load(sys.stdin); print(m[0]["code"] if m else "")')
  [ -n "$code" ] && break
  sleep 0.1
done
curl -fs "$base/auth/activate" -u "$email:$password" -H 'content-type: application/json' \
  -d "{\"code\":\"$code\"}" >/dev/null

PYTHONPATH=tests/openapi SCHEMATHESIS_HOOKS=hooks \
  "$venv/bin/schemathesis" --config-file tests/openapi/schemathesis.toml \
  run "$base/openapi.json" --checks all --auth "$email:$password" --no-color
if grep -E "ERROR|panicked" "$log" >&2; then
  echo "openapi-check: the server logged errors under the tester" >&2
  exit 1
fi
echo "openapi-check: every check passed on every operation"
