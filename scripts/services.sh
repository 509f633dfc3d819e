#!/usr/bin/env bash
# Private PostgreSQL and Redis instances on loopback for development and tests.
#
#   scripts/services.sh start   install if missing (as root), start, print env
#   scripts/services.sh stop    stop what `start` started
#   scripts/services.sh env     print the export lines for the running instances
#   scripts/services.sh status  exit 0 when both are running
#   scripts/services.sh ensure  start unless running; print the export lines
#                               and services_started=1 if this call started them
#
# State lives in .local/services (git-ignored). Ports come from
# ACTIVATOR_PG_PORT (default 55432) and ACTIVATOR_REDIS_PORT (default 56379).
# PostgreSQL refuses to run as root, so as root it runs as the `postgres` user
# with its data in a directory that user owns (outside the checkout, whose
# parents may not be traversable by it).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state="$root/.local/services"
pg_port=${ACTIVATOR_PG_PORT:-55432}
redis_port=${ACTIVATOR_REDIS_PORT:-56379}

log() { printf 'services: %s\n' "$*" >&2; }

pg_bindir() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/initdb" ]; then echo "$dir"; return 0; fi
  done
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return 0; fi
  return 1
}

ensure_installed() {
  local missing=()
  pg_bindir >/dev/null || missing+=(postgresql)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    log "missing ${missing[*]}; install with: sudo apt-get install -y ${missing[*]}"
    exit 1
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${missing[@]}" >&2
  # The Debian packages start system-wide services where they can; ours are
  # private, so leave those alone.
}

# Fails, naming the setting to change, when something else holds the port
# (another checkout's services, a system-wide server).
port_free() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    log "127.0.0.1:$1 is taken by another process; stop it or choose another port with $2=..."
    exit 1
  fi
}

# Run a PostgreSQL binary as a user it accepts (from /, which that user can
# always enter; the checkout may not be).
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

pg_dir() {
  # The data directory's location is remembered so a restart reuses it.
  if [ -f "$state/pg.dir" ] && [ -d "$(cat "$state/pg.dir")" ]; then
    cat "$state/pg.dir"; return
  fi
  local dir
  if [ "$(id -u)" -eq 0 ]; then
    dir=$(mktemp -d /tmp/activator-pg.XXXXXX)
    chown postgres:postgres "$dir"
  else
    dir="$state/pg"
    mkdir -p "$dir"
  fi
  echo "$dir" >"$state/pg.dir"
  echo "$dir"
}

start_postgres() {
  local bin dir
  bin=$(pg_bindir)
  dir=$(pg_dir)
  if as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    log "PostgreSQL already running on 127.0.0.1:$pg_port"
    return
  fi
  port_free "$pg_port" ACTIVATOR_PG_PORT
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
  fi
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
    -o "-p $pg_port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    start >/dev/null
  as_pg "$bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'activator'" | grep -q 1 ||
    as_pg "$bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres activator
  log "PostgreSQL running on 127.0.0.1:$pg_port (data in $dir/data)"
}

start_redis() {
  mkdir -p "$state/redis"
  if redis-cli -h 127.0.0.1 -p "$redis_port" ping >/dev/null 2>&1; then
    log "Redis already running on 127.0.0.1:$redis_port"
    return
  fi
  port_free "$redis_port" ACTIVATOR_REDIS_PORT
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize yes --dir "$state/redis" --pidfile "$state/redis/redis.pid" \
    --logfile "$state/redis/log" >/dev/null
  for _ in $(seq 50); do
    redis-cli -h 127.0.0.1 -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  log "Redis running on 127.0.0.1:$redis_port"
}

print_env() {
  echo "export DATABASE_URL=postgres://postgres@127.0.0.1:$pg_port/activator"
  echo "export REDIS_URL=redis://127.0.0.1:$redis_port/"
}

stop_all() {
  local bin dir
  if [ -f "$state/pg.dir" ] && bin=$(pg_bindir); then
    dir=$(cat "$state/pg.dir")
    if as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
      as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
      log "PostgreSQL stopped"
    fi
  fi
  if [ -f "$state/redis/redis.pid" ]; then
    local pid
    pid=$(cat "$state/redis/redis.pid")
    if kill "$pid" 2>/dev/null; then
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
      log "Redis stopped"
    fi
    rm -f "$state/redis/redis.pid"
  fi
}

case "${1:-}" in
  start)
    mkdir -p "$state"
    ensure_installed
    start_postgres
    start_redis
    print_env
    ;;
  ensure)
    if "$0" status; then
      print_env
      echo "services_started=0"
    else
      "$0" start
      echo "services_started=1"
    fi
    ;;
  stop) stop_all ;;
  env) print_env ;;
  status)
    bin=$(pg_bindir 2>/dev/null) && [ -f "$state/pg.dir" ] &&
      as_pg "$bin/pg_ctl" -D "$(cat "$state/pg.dir")/data" status >/dev/null 2>&1 &&
      redis-cli -h 127.0.0.1 -p "$redis_port" ping >/dev/null 2>&1
    ;;
  *)
    echo "usage: $0 start|stop|env|status|ensure" >&2
    exit 2
    ;;
esac
