#!/usr/bin/env bash
# Installs Debian packages the tests need, when a command is missing:
#
#   scripts/packages.sh COMMAND:PACKAGE...
#
# e.g. `scripts/packages.sh promtool:prometheus prometheus:prometheus`;
# `py.MODULE:PACKAGE` stands for a Python module python3 must import
# (`py.yaml:python3-yaml`), `/PATH:PACKAGE` for a file that must exist
# (`/usr/share/i18n/locales/de_DE:locales`).
# Needs root for the install (it says what to run otherwise). Daemons the
# packages bring (prometheus, nginx) are neither started nor enabled: the
# tests start their own instances on loopback.
set -euo pipefail
PATH=$PATH:/usr/sbin:/sbin

need=()
present() {
  case $1 in
    py.*) python3 -c "import ${1#py.}" >/dev/null 2>&1 ;;
    /*) [ -e "$1" ] ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}
for pair in "$@"; do
  present "${pair%%:*}" || need+=("${pair#*:}")
done
[ ${#need[@]} -eq 0 ] && exit 0
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ]; then
  echo "packages: missing ${need[*]}; install with: sudo apt-get install -y --no-install-recommends ${need[*]}" >&2
  exit 1
fi

own_policy=0
log=$(mktemp)
cleanup() {
  rm -f "$log"
  if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
}
trap cleanup EXIT
# A policy-rc.d that answers 101 keeps the packages' daemons from starting
# on install; an existing one is left alone.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  own_policy=1
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 0755 /usr/sbin/policy-rc.d
fi
echo "packages: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  exit 1
fi
# Installed for their programs only: not started at the next boot either.
if [ -d /run/systemd/system ]; then
  for pkg in "${need[@]}"; do
    systemctl disable --now --quiet "$pkg.service" 2>/dev/null || true
  done
fi
