#!/usr/bin/env bash
# Starts the whole stack locally: private PostgreSQL and Redis (installed if
# missing), migrations, the development mailbox on http://127.0.0.1:8025
# (taking SMTP on 127.0.0.1:2525 too) and the API on http://127.0.0.1:8000
# (docs at /docs). Ctrl-C stops it all.
#
# Emails go to the mailbox: open http://127.0.0.1:8025 to read the codes.
# To try the SMTP transport instead, run with SMTP_URL=smtp://127.0.0.1:2525.
# Settings come from the environment or .env (see .env.example); this script
# only fills in what local development needs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

services=$(scripts/services.sh ensure)
eval "$services"
export SECRET_KEY="${SECRET_KEY:-local-development-secret-key-0123456789}"
export MAILBOX_PORT="${MAILBOX_PORT:-8025}"
export MAILBOX_SMTP_PORT="${MAILBOX_SMTP_PORT:-2525}"
if [ -z "${SMTP_URL:-}" ]; then
  export EMAIL_API_URL="${EMAIL_API_URL:-http://127.0.0.1:$MAILBOX_PORT/v1/send}"
fi
# Activation events go to the mailbox too, which shows them beside the mail.
export WEBHOOK_URL="${WEBHOOK_URL:-http://127.0.0.1:$MAILBOX_PORT/v1/events}"
export WEBHOOK_SECRET="${WEBHOOK_SECRET:-whsec_bG9jYWwtZGV2ZWxvcG1lbnQtc2VjcmV0}"
export WEBHOOK_EVENTS="${WEBHOOK_EVENTS:-user.activated,user.registered}"

cargo build --locked
bin=target/debug/activator

mailbox_pid=""
cleanup() {
  [ -n "$mailbox_pid" ] && kill "$mailbox_pid" 2>/dev/null && wait "$mailbox_pid" 2>/dev/null
  [ "$services_started" = 1 ] && scripts/services.sh stop
  return 0
}
trap cleanup EXIT

"$bin" migrate
"$bin" mailbox --port "$MAILBOX_PORT" --smtp-port "$MAILBOX_SMTP_PORT" &
mailbox_pid=$!

echo "API on http://127.0.0.1:${ROCKET_PORT:-8000} (docs at /docs); mailbox on http://127.0.0.1:$MAILBOX_PORT" >&2
"$bin" serve
