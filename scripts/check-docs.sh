#!/usr/bin/env bash
# Checks that the API docs at /docs render in headless Chromium with every
# host but 127.0.0.1 unresolvable, i.e. with no internet access: every
# operation shown, no request refused by the page's Content-Security-Policy,
# no resource failing to load (a request to another host fails here), and
# none of Scalar's buttons that reach outside services.
#
#   scripts/check-docs.sh [BASE_URL]
#
# Without BASE_URL it starts the private services and an `activator serve`
# of its own on a free port. Installs Debian's chromium when missing (as
# root). Leaves a screenshot in .local/docs.png.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "check-docs: chromium is missing; install with: sudo apt-get install -y chromium" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
fi

mkdir -p .local
base=${1:-}
server_pid=""
services_started=0
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  [ "$services_started" = 1 ] && scripts/services.sh stop
  return 0
}
trap cleanup EXIT

if [ -z "$base" ]; then
  services=$(scripts/services.sh ensure)
  eval "$services"
  export SECRET_KEY=docs-check-secret-key-0123456789abcd BCRYPT_COST=4
  cargo build --locked -q
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  ROCKET_PORT=$port target/debug/activator serve --migrate 2>.local/docs-serve.log &
  server_pid=$!
  base="http://127.0.0.1:$port"
  for _ in $(seq 100); do
    curl -fs "$base/health/live" >/dev/null 2>&1 && break
    sleep 0.1
  done
fi

profile=$(mktemp -d)
chrome=(chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run
  --disable-background-networking --disable-component-update --disable-sync
  --user-data-dir="$profile"
  --host-resolver-rules="MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
  --virtual-time-budget=15000 --window-size=1280,2000)

dom=$("${chrome[@]}" --enable-logging=stderr --v=0 --dump-dom "$base/docs" 2>.local/docs-chromium.log)
"${chrome[@]}" --screenshot=.local/docs.png "$base/docs" >/dev/null 2>&1 || true
rm -rf "$profile"

fail=0
for expected in "Register an account" "Activate the account with the emailed code" \
                "Send a new activation code" "/auth/register" "/auth/resend" "/auth/activate"; do
  if ! grep -qF "$expected" <<<"$dom"; then
    echo "check-docs: the rendered page lacks \"$expected\"" >&2
    fail=1
  fi
done
for unwanted in "Ask AI" "Deploy" "Share" "Developer Tools" "Open API Client"; do
  if grep -qF "$unwanted" <<<"$dom"; then
    echo "check-docs: the rendered page shows \"$unwanted\", which reaches outside services" >&2
    fail=1
  fi
done
# The browser's console: CSP refusals ("Refused to ...") and failed loads.
if grep -E "Refused to|Failed to load resource|net::ERR_" .local/docs-chromium.log >&2; then
  echo "check-docs: the page was refused something or failed to load something (.local/docs-chromium.log)" >&2
  fail=1
fi
if [ "$fail" -ne 0 ]; then
  echo "check-docs: /docs did not render offline as it should (screenshot: .local/docs.png)" >&2
  exit 1
fi
echo "check-docs: /docs rendered offline with every operation (screenshot: .local/docs.png)"
