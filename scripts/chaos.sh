#!/usr/bin/env bash
# The chaos run (tests/chaos/chaos.py) over a local cluster
# (scripts/cluster.sh), for each Redis shape asked for:
#
#   scripts/chaos.sh [--duration SECONDS] [--redis sentinel|cluster|both] [--binary PATH]
#
# Defaults: 60 s of traffic, both shapes, target/debug/activator. Brings
# the cluster up, runs the traffic and the faults, checks, brings it down;
# exits 1 if a check failed, keeping every part's logs in
# .local/chaos-failed-<shape>. The figures of each run are also written to
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
  if ! python3 tests/chaos/chaos.py --duration "$duration" --report ".local/chaos-$shape.json"; then
    failed=1
    # The logs of every part, for the post-mortem.
    rm -rf ".local/chaos-failed-$shape"
    cp -r .local/cluster ".local/chaos-failed-$shape"
    cp "$(cat .local/cluster/pg.dir)"/*.log ".local/chaos-failed-$shape/" 2>/dev/null || true
    echo "chaos: Redis $shape failed; the logs are in .local/chaos-failed-$shape" >&2
  fi
  scripts/cluster.sh down 2>/dev/null
  echo "chaos: Redis $shape: $((SECONDS - started)) s in all, the cluster's start and stop included"
done
exit $failed
