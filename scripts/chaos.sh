#!/usr/bin/env bash
# The chaos run (tests/chaos/chaos.py) over a local cluster
# (scripts/cluster.sh), for each Redis shape asked for:
#
#   scripts/chaos.sh [--duration SECONDS] [--redis sentinel|cluster|both] [--binary PATH]
#
# Defaults: 60 s of traffic, both shapes, target/debug/activator. Brings
# the cluster up, runs the traffic and the faults, checks, brings it down;
# exits 1 if a check failed. The figures of each run are also written to
# .local/chaos-<shape>.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
duration=60 shapes="sentinel cluster" binary=target/debug/activator
while [ $# -gt 0 ]; do
  case $1 in
    --duration) duration=$2; shift 2 ;;
    --redis) shapes=$2; [ "$shapes" = both ] && shapes="sentinel cluster"; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    *) echo "usage: $0 [--duration SECONDS] [--redis sentinel|cluster|both] [--binary PATH]" >&2; exit 2 ;;
  esac
done
trap 'scripts/cluster.sh down >/dev/null 2>&1 || true' EXIT
failed=0
for shape in $shapes; do
  started=$SECONDS
  scripts/cluster.sh down >/dev/null 2>&1 || true
  scripts/cluster.sh up --redis "$shape" --binary "$binary" >/dev/null
  python3 tests/chaos/chaos.py --duration "$duration" --report ".local/chaos-$shape.json" || failed=1
  scripts/cluster.sh down 2>/dev/null
  echo "chaos: Redis $shape: $((SECONDS - started)) s in all, the cluster's start and stop included"
done
exit $failed
