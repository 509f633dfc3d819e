#!/usr/bin/env bash
# Runs the original service's own endpoint tests, byte for byte, against the
# real binary over HTTP:
#
#   scripts/seed-check.sh [BINARY]      (default target/debug/activator)
#
# The tests are vendored unchanged in tests/seed/original/ with their sha256
# in SHA256SUMS; the run refuses to start if one differs. Where the shared
# copy is (SEED_TESTS_DIR, default ../shared/seed-tests beside the checkout;
# a CI clone may have none), the vendored files must be identical to it and
# SHA256SUMS must hold the hashes its README lists. How the tests reach the
# server: tests/seed/activator_seed_plugin.py, then live.py and app/ there.
#
# Needs PostgreSQL and Redis as scripts/services.sh provides them (it starts
# them when they are not running), psql, redis-cli, curl, python3, and PyPI
# for tests/seed/requirements.txt (the original's pins), installed once into
# the git-ignored .local/venv-seed: a venv of its own, because the
# original's pytest-asyncio 1.2.0 needs pytest < 9 while .local/venv holds
# schemathesis' pytest 9 (and its pytest plugins). Creates a
# database of its own and uses Redis database SEED_REDIS_DB (default 9);
# starts `activator mailbox` and `activator serve`; exits non-zero if any
# test fails. Run by scripts/test.sh.
set -euo pipefail
started=$SECONDS
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

fail() { echo "seed-check: $*" >&2; exit 1; }
bin=$(realpath -m "${1:-target/debug/activator}")
[ -x "$bin" ] || fail "no binary at $bin (build it with cargo build)"

# --- the original's files, unchanged ----------------------------------------
original=tests/seed/original
files=(conftest.py test_auth.py test_auth_endpoints.py)
(cd "$original" && sha256sum --quiet --strict -c SHA256SUMS) ||
  fail "$original differs from its SHA256SUMS: the original's tests are never edited"
shared=${SEED_TESTS_DIR:-../shared/seed-tests}
[ -n "${SEED_TESTS_DIR:-}" ] && [ ! -d "$shared" ] && fail "SEED_TESTS_DIR=$shared is not a directory"
for file in "${files[@]}"; do
  hash=$(awk -v file="$file" '$2 == file { print $1 }' "$original/SHA256SUMS")
  [ -n "$hash" ] || fail "$original/SHA256SUMS does not list $file"
  if [ -d "$shared" ]; then
    grep -qF "| \`$file\` | \`$hash\` |" "$shared/README.md" ||
      fail "$shared/README.md does not list sha256 $hash for $file"
    cmp -s "$shared/$file" "$original/$file" || fail "$original/$file is not $shared/$file"
  fi
done

# --- PostgreSQL, Redis, the tests' Python -----------------------------------
services=$(scripts/services.sh ensure)
eval "$services"

venv=.local/venv-seed
requirements=tests/seed/requirements.txt
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  python3 -c 'import ensurepip, venv' 2>/dev/null ||
    fail "Python's venv is missing; install it with: apt-get install -y python3-venv"
  echo "seed-check: installing $requirements into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
  echo "$want" >"$venv/.requirements.sha256"
fi

# --- the run: a database, a Redis database, a directory of its own ----------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
run=$(mktemp -d /tmp/activator-seed.XXXXXX)
db=activator_seed_$$
admin=${DATABASE_URL%/*}/postgres
case $REDIS_URL in redis://*/*) REDIS_URL=${REDIS_URL%/*} ;; esac
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
  psql -q "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  redis-cli -u "$REDIS_URL" FLUSHDB >/dev/null 2>&1 || true
  rm -rf "$run"
  [ "$services_started" = 1 ] && scripts/services.sh stop
  return 0
}
trap cleanup EXIT
psql -q "$admin" -c "CREATE DATABASE $db" >/dev/null

# The server's settings are activator's defaults, on purpose: the point is
# the original's contract at default settings. The exceptions: the limits
# the original's fixture gives its rate limiter (MemoryRateLimiter(
# max_activation_attempts=2, per_minute_resend=1, daily_resend=2), checked
# against these by tests/seed/app/main.py), a cheap bcrypt, and ports of
# the run's own. Every process starts in the run's directory, so that no
# .env of the checkout is read.
mailbox_port=$(free_port)
export DATABASE_URL=${DATABASE_URL%/*}/$db REDIS_URL=$REDIS_URL/${SEED_REDIS_DB:-9} \
  SECRET_KEY=seed-check-secret-key-0123456789abcdef BCRYPT_COST=4 \
  ACTIVATION_ATTEMPT_LIMIT=2 RESEND_PER_MINUTE_LIMIT=1 RESEND_DAILY_LIMIT=2 \
  EMAIL_API_URL=http://127.0.0.1:$mailbox_port/v1/send \
  ROCKET_ADDRESS=127.0.0.1 ROCKET_PORT=$(free_port) METRICS_ADDRESS=127.0.0.1:$(free_port)
# What tests/seed/live.py reads; TEST_DATABASE_URL is the original's own
# variable, which its fixture copies into DATABASE_URL.
export TEST_DATABASE_URL=$DATABASE_URL ACTIVATOR_BIN=$bin ACTIVATOR_URL=http://127.0.0.1:$ROCKET_PORT \
  MAILBOX_URL=http://127.0.0.1:$mailbox_port SEED_RUN_DIR=$run

migrated=$(cd "$run" && "$bin" migrate 2>&1) || fail "activator migrate failed: $migrated"
redis-cli -u "$REDIS_URL" FLUSHDB >/dev/null
(cd "$run" && exec "$bin" mailbox --port "$mailbox_port" --smtp-port "$(free_port)") \
  >"$run/mailbox.log" 2>&1 &
pids+=($!)
(cd "$run" && exec "$bin" serve) >"$run/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do
  curl -fs "$ACTIVATOR_URL/health/live" >/dev/null 2>&1 &&
    curl -fs "$MAILBOX_URL/v1/messages" >/dev/null 2>&1 && break
  sleep 0.1
done
if ! curl -fs "$ACTIVATOR_URL/health/live" >/dev/null 2>&1 ||
  ! curl -fs "$MAILBOX_URL/v1/messages" >/dev/null 2>&1; then
  tail -n 50 "$run"/*.log >&2
  fail "activator serve or mailbox did not start within 30 s"
fi

# --- the original's tests ----------------------------------------------------
# Copied into the run's directory (without the original's conftest.py, which
# activator_seed_plugin replaces) and checked again there.
cp "$original/test_auth.py" "$original/test_auth_endpoints.py" "$run/"
grep -v ' conftest\.py$' "$original/SHA256SUMS" >"$run/SHA256SUMS"
(cd "$run" && sha256sum --quiet --strict -c SHA256SUMS) || fail "the copies in $run differ"
status=0
(cd "$run" && PYTHONPATH=$root/tests/seed PYTHONDONTWRITEBYTECODE=1 \
  "$root/$venv/bin/python" -m pytest -c "$root/tests/seed/pytest.ini" --rootdir . \
  -p activator_seed_plugin .) || status=$?
if grep -q panicked "$run/serve.log"; then
  grep -B2 -A10 panicked "$run/serve.log" >&2
  echo "seed-check: the server panicked" >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "seed-check: the original's tests failed against $bin ($((SECONDS - started)) s)" >&2
  exit "$status"
fi
echo "seed-check: the original's tests passed against $bin ($((SECONDS - started)) s)"
