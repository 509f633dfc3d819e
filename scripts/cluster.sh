#!/usr/bin/env bash
# Several machines' worth of activator on this one, on loopback:
#
#   scripts/cluster.sh up [--redis sentinel|cluster] [--binary PATH]
#   scripts/cluster.sh status
#   scripts/cluster.sh down
#
# `up` starts
# - nginx with the shipped deploy/nginx/activator.conf, templated to local
#   ports: its TLS listener on https://127.0.0.1:BASE (a self-signed
#   certificate made here, .local/cluster/nginx/ssl/fullchain.pem), its
#   plain listener (a redirect only) on BASE+80, an upstream of the three
#   instances below;
# - three `activator serve` (BASE+11..13) from target/debug/activator or
#   --binary, migrated once, trusting only nginx (127.0.0.1) as a proxy;
# - PostgreSQL: a primary (BASE+31) and a synchronous standby (BASE+32),
#   tests/failover/cluster.sh, named by a multi-host DATABASE_URL;
# - Redis, either (--redis sentinel, the default) a primary (BASE+41), a
#   replica (BASE+42) and three Sentinels (BASE+46..48), REDIS_URL
#   redis+sentinel://...; or (--redis cluster) a Redis Cluster of three
#   primaries and three replicas (BASE+51..56, buses BASE+61..66);
#   Sentinel is `redis-server --sentinel`, the same Debian package;
# - `activator mailbox` (HTTP BASE+1, SMTP BASE+2) taking the emails over
#   SMTP, and the webhook receiver tests/webhooks/receiver.py (BASE+3,
#   Standard Webhooks verification, from the test virtualenv .local/venv).
#
# BASE is ACTIVATOR_CLUSTER_PORT (default 27000). State, logs and the
# generated SECRET_KEY are in .local/cluster (git-ignored); `cluster.env`
# there holds every address for scripts (tests/chaos/chaos.py reads it).
# Faults, for the chaos run:
#
#   scripts/cluster.sh kill-serve N     SIGKILL instance N (1..3)
#   scripts/cluster.sh start-serve N    start instance N again
#   scripts/cluster.sh promote-pg       stop the PostgreSQL primary at once,
#                                       promote the standby
#   scripts/cluster.sh kill-redis       SIGKILL the Redis primary (Sentinel)
#                                       or one Cluster primary; prints its port
#
# Runs as root on Debian (PostgreSQL as the postgres user); installs nginx,
# PostgreSQL and redis-server when missing.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state=$root/.local/cluster
# Below the ephemeral range (32768-60999 on Linux), where a port of a
# passing connection could be held when a server wants it.
base=${ACTIVATOR_CLUSTER_PORT:-27000}
PATH=$PATH:/usr/sbin:/sbin

log() { printf 'cluster: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  local port=$1 what=$2
  for _ in $(seq 1 150); do port_busy "$port" && return 0; sleep 0.1; done
  die "$what did not listen on 127.0.0.1:$port (logs in $state)"
}
# Kills the process of pid file $1 (SIGKILL with $2=KILL), if it runs.
stop_pid() {
  local file=$1 signal=${2:-TERM} pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill "-$signal" "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  fi
  rm -f "$file"
}

redis_start() { # PORT ARGS...: a redis-server of ours, daemonized
  local port=$1
  shift
  mkdir -p "$state/redis/$port"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$state/redis/$port" --daemonize yes --pidfile "$state/redis/$port.pid" \
    --logfile "$state/redis/$port.log" "$@"
  wait_port "$port" "redis-server"
}

serve_port() { echo $((base + 10 + $1)); }
serve_start() {
  local n=$1 port
  port=$(serve_port "$n")
  port_busy "$port" && die "127.0.0.1:$port is taken"
  # No environment but ours, from a directory with no .env of a developer.
  (
    cd "$state"
    set -a
    . "$state/serve.env"
    set +a
    exec env -i PATH="$PATH" DATABASE_URL="$DATABASE_URL" REDIS_URL="$REDIS_URL" \
      SECRET_KEY="$SECRET_KEY" SYSTEM_EMAIL="$SYSTEM_EMAIL" SMTP_URL="$SMTP_URL" \
      WEBHOOK_URL="$WEBHOOK_URL" WEBHOOK_SECRET="$WEBHOOK_SECRET" BCRYPT_COST="$BCRYPT_COST" \
      TRUSTED_PROXIES=127.0.0.1/32 METRICS_ADDRESS=127.0.0.1:$((base + 20 + n)) \
      ROCKET_CONFIG="$root/Rocket.toml" ROCKET_ADDRESS=127.0.0.1 ROCKET_PORT="$port" \
      RUST_LOG="${RUST_LOG:-info}" \
      "$(cat "$state/binary")" serve
  ) >>"$state/serve-$n.log" 2>&1 &
  echo $! >"$state/serve-$n.pid"
  wait_port "$port" "serve $n"
}

nginx_up() {
  local d=$state/nginx
  mkdir -p "$d/ssl" "$d/log" "$d/tmp" "$d/snippets"
  openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj /CN=api.example.com \
    -keyout "$d/ssl/privkey.pem" -out "$d/ssl/fullchain.pem" 2>/dev/null
  ln -sf "$root/deploy/nginx/activator-client-network.conf" "$d/snippets/"
  # The shipped site as it is, but for its addresses: the listeners on
  # loopback ports, the upstream of our three instances, certificate and
  # log paths here.
  local upstream="" n
  for n in 1 2 3; do
    upstream+="    server 127.0.0.1:$(serve_port "$n") max_fails=3 fail_timeout=10s;\\n"
  done
  sed -e "s#/etc/ssl/activator/#$d/ssl/#g" -e "s#/var/log/nginx/#$d/log/#g" \
    -e '/listen \[::\]/d' \
    -e "s#listen 80;#listen 127.0.0.1:$((base + 80));#" \
    -e "s#listen 443 ssl http2;#listen 127.0.0.1:$base ssl http2;#" \
    -e '/# server 127.0.0.1:8001/d' \
    -e "s#^    server 127.0.0.1:8000 .*#$upstream#" \
    "$root/deploy/nginx/activator.conf" >"$d/activator.conf"
  grep -q "127.0.0.1:$(serve_port 3)" "$d/activator.conf" || die "the nginx site's upstream was not templated"
  cat >"$d/nginx.conf" <<EOF
worker_processes 2;
pid $d/nginx.pid;
error_log $d/log/error.log;
events { worker_connections 1024; }
http {
    include /etc/nginx/mime.types;
    access_log off;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    include $d/activator.conf;
}
EOF
  nginx -q -p "$d" -c "$d/nginx.conf"
  wait_port "$base" nginx
}

pg_ctl_dir() { cat "$state/pg.dir"; }

redis_primary_port() { # the port of the Redis primary (Sentinel) or a Cluster primary
  case $(cat "$state/redis.shape") in
    sentinel)
      local port
      for port in $((base + 46)) $((base + 47)) $((base + 48)); do
        redis-cli -p "$port" SENTINEL GET-MASTER-ADDR-BY-NAME activator 2>/dev/null | sed -n 2p |
          grep -E '^[0-9]+$' && return 0
      done
      return 1
      ;;
    cluster)
      local port
      for port in $(seq $((base + 51)) $((base + 56))); do
        redis-cli -p "$port" CLUSTER NODES 2>/dev/null |
          awk '$3 ~ /master/ && $3 !~ /fail/ { split($2, a, "[:@]"); print a[2] }' | sort -n | head -1 |
          grep -E '^[0-9]+$' && return 0
      done
      return 1
      ;;
  esac
}

up() {
  local shape=sentinel binary=$root/target/debug/activator
  while [ $# -gt 0 ]; do
    case $1 in
      --redis) shape=$2; shift 2 ;;
      --binary) binary=$(readlink -f "$2"); shift 2 ;;
      *) die "unknown argument $1" ;;
    esac
  done
  case $shape in sentinel | cluster) ;; *) die "--redis is sentinel or cluster" ;; esac
  [ -x "$binary" ] || die "no binary at $binary (cargo build first, or --binary PATH)"
  [ -e "$state/serve.env" ] && die "already up ($state); scripts/cluster.sh down first"
  local python=$root/.local/venv/bin/python
  "$root/scripts/venv.sh"
  "$root/scripts/packages.sh" nginx:nginx openssl:openssl redis-server:redis-server redis-cli:redis-tools
  local port
  for port in $base $((base + 1)) $((base + 2)) $((base + 3)) $((base + 80)) \
    $(seq $((base + 11)) $((base + 13))) $(seq $((base + 21)) $((base + 23))) \
    $((base + 31)) $((base + 32)) $((base + 41)) $((base + 42)) $(seq $((base + 46)) $((base + 48))) \
    $(seq $((base + 51)) $((base + 56))) $(seq $((base + 61)) $((base + 66))); do
    port_busy "$port" && die "127.0.0.1:$port is taken; choose another block with ACTIVATOR_CLUSTER_PORT=..."
  done
  mkdir -p "$state/redis"
  echo "$binary" >"$state/binary"
  echo "$shape" >"$state/redis.shape"
  trap 'if [ $? -ne 0 ]; then log "up failed; stopping what started"; down >/dev/null 2>&1 || true; fi' EXIT

  # PostgreSQL: a primary and its synchronous standby, outside the checkout
  # (the postgres user may not enter it).
  local pg_dir
  pg_dir=$(mktemp -d /tmp/activator-cluster-pg.XXXXXX)
  echo "$pg_dir/pg" >"$state/pg.dir"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$pg_dir"
  bash "$root/tests/failover/cluster.sh" up "$pg_dir/pg" $((base + 31)) $((base + 32))
  local database_url="postgresql://postgres@127.0.0.1:$((base + 31)),127.0.0.1:$((base + 32))/activator?target_session_attrs=read-write"

  # Redis.
  local redis_url
  if [ "$shape" = sentinel ]; then
    redis_start $((base + 41))
    redis_start $((base + 42)) --replicaof 127.0.0.1 $((base + 41))
    for port in $((base + 46)) $((base + 47)) $((base + 48)); do
      mkdir -p "$state/redis/$port"
      # Sentinel rewrites its configuration file: one of its own each.
      cat >"$state/redis/$port/sentinel.conf" <<EOF
port $port
bind 127.0.0.1
dir $state/redis/$port
sentinel monitor activator 127.0.0.1 $((base + 41)) 2
sentinel down-after-milliseconds activator 2000
sentinel failover-timeout activator 10000
EOF
      redis-server "$state/redis/$port/sentinel.conf" --sentinel --daemonize yes \
        --pidfile "$state/redis/$port.pid" --logfile "$state/redis/$port.log"
      wait_port "$port" "redis-sentinel"
    done
    # A failover needs Sentinels that know each other and the replica.
    for _ in $(seq 1 200); do
      local ready=0
      for port in $((base + 46)) $((base + 47)) $((base + 48)); do
        redis-cli -p "$port" SENTINEL MASTER activator |
          awk 'prev == "num-other-sentinels" && $0 == "2" { ok++ } prev == "num-slaves" && $0 == "1" { ok++ } { prev = $0 } END { exit ok == 2 ? 0 : 1 }' &&
          ready=$((ready + 1))
      done
      [ "$ready" = 3 ] && break
      sleep 0.1
    done
    [ "$ready" = 3 ] || die "the Sentinels did not meet"
    redis_url="redis+sentinel://127.0.0.1:$((base + 46)),127.0.0.1:$((base + 47)),127.0.0.1:$((base + 48))/activator"
  else
    local nodes=()
    for port in $(seq $((base + 51)) $((base + 56))); do
      redis_start "$port" --cluster-enabled yes --cluster-config-file nodes.conf \
        --cluster-port $((port + 10)) --cluster-node-timeout 2000 --cluster-replica-validity-factor 0
      nodes+=("127.0.0.1:$port")
    done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$state/redis/create.log"
    for port in $(seq $((base + 51)) $((base + 56))); do
      for _ in $(seq 1 200); do
        redis-cli -p "$port" CLUSTER INFO | grep -q cluster_state:ok && break
        sleep 0.1
      done
    done
    redis_url=$(printf 'redis://127.0.0.1:%s/,' $(seq $((base + 51)) $((base + 56))))
    redis_url=${redis_url%,}
  fi

  # The mail sink (SMTP in, JSON out) and the webhook receiver.
  "$binary" mailbox --port $((base + 1)) --smtp-port $((base + 2)) --capacity 100000 \
    >"$state/mailbox.log" 2>&1 &
  echo $! >"$state/mailbox.pid"
  wait_port $((base + 1)) mailbox
  local webhook_secret
  webhook_secret="whsec_$(openssl rand -base64 24)"
  (umask 077 && echo "$webhook_secret" >"$state/webhook.secret")
  "$python" "$root/tests/webhooks/receiver.py" --secret "$webhook_secret" --port $((base + 3)) \
    >"$state/webhooks.log" 2>&1 &
  echo $! >"$state/webhooks.pid"
  wait_port $((base + 3)) "webhook receiver"

  (
    umask 077
    cat >"$state/serve.env" <<EOF
DATABASE_URL='$database_url'
REDIS_URL='$redis_url'
SECRET_KEY='$(openssl rand -hex 32)'
SYSTEM_EMAIL='noreply@example.com'
SMTP_URL='smtp://127.0.0.1:$((base + 2))'
WEBHOOK_URL='http://127.0.0.1:$((base + 3))/'
WEBHOOK_SECRET='$webhook_secret'
BCRYPT_COST=4
EOF
  )
  (cd "$state" && set -a && . "$state/serve.env" && "$binary" migrate >"$state/migrate.log" 2>&1) ||
    die "migrate failed: $(tail -3 "$state/migrate.log")"
  local n
  for n in 1 2 3; do serve_start "$n"; done
  nginx_up
  trap - EXIT

  cat >"$state/cluster.env" <<EOF
CLUSTER_URL=https://127.0.0.1:$base
CLUSTER_CA=$state/nginx/ssl/fullchain.pem
CLUSTER_ACCESS_LOG=$state/nginx/log/activator.access.log
CLUSTER_MAILBOX=http://127.0.0.1:$((base + 1))
CLUSTER_WEBHOOKS=http://127.0.0.1:$((base + 3))
CLUSTER_SERVE_PORTS=$(serve_port 1),$(serve_port 2),$(serve_port 3)
CLUSTER_PG_PORTS=$((base + 31)),$((base + 32))
CLUSTER_REDIS=$shape
CLUSTER_REDIS_URL=$redis_url
EOF
  status
}

status() {
  [ -f "$state/cluster.env" ] || { echo "cluster: down"; return 1; }
  local ok=0 port n shape
  shape=$(cat "$state/redis.shape")
  line() { # NAME PORT
    if port_busy "$2"; then printf '  %-22s 127.0.0.1:%s up\n' "$1" "$2"; else
      printf '  %-22s 127.0.0.1:%s DOWN\n' "$1" "$2"; ok=1; fi
  }
  echo "cluster (Redis: $shape) in $state"
  line "nginx (https)" "$base"
  for n in 1 2 3; do line "serve $n" "$(serve_port "$n")"; done
  local pg_role
  for port in $((base + 31)) $((base + 32)); do
    pg_role=$(cd / && runuser -u postgres -- psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atqc \
      "SELECT CASE WHEN pg_is_in_recovery() THEN 'standby' ELSE 'primary' END" 2>/dev/null || echo "")
    if [ -n "$pg_role" ]; then printf '  %-22s 127.0.0.1:%s up\n' "postgresql $pg_role" "$port"; else
      printf '  %-22s 127.0.0.1:%s down\n' postgresql "$port"; fi
  done
  if [ "$shape" = sentinel ]; then
    for port in $((base + 41)) $((base + 42)); do
      local role
      role=$(redis-cli -p "$port" ROLE 2>/dev/null | head -1)
      printf '  %-22s 127.0.0.1:%s %s\n' "redis ${role:-}" "$port" "$([ -n "$role" ] && echo up || echo down)"
    done
    for port in $((base + 46)) $((base + 47)) $((base + 48)); do line "redis sentinel" "$port"; done
    printf '  %-22s %s\n' "primary named" "127.0.0.1:$(redis_primary_port || echo '?')"
  else
    printf '  %-22s %s\n' "redis cluster" "$(redis-cli -p "$(redis_primary_port || echo $((base + 51)))" CLUSTER INFO 2>/dev/null | grep cluster_state | tr -d '\r')"
  fi
  line mailbox $((base + 1))
  line "webhook receiver" $((base + 3))
  return $ok
}

down() {
  [ -d "$state" ] || return 0
  [ -f "$state/nginx/nginx.pid" ] && stop_pid "$state/nginx/nginx.pid"
  local n file
  for n in 1 2 3; do stop_pid "$state/serve-$n.pid"; done
  stop_pid "$state/mailbox.pid"
  stop_pid "$state/webhooks.pid"
  for file in "$state"/redis/*.pid; do [ -e "$file" ] && stop_pid "$file" KILL; done
  if [ -f "$state/pg.dir" ]; then
    local dir
    dir=$(pg_ctl_dir)
    [ -d "$dir" ] && bash "$root/tests/failover/cluster.sh" down "$dir"
    rmdir "$(dirname "$dir")" 2>/dev/null || true
  fi
  rm -rf "$state"
  log "down"
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) down ;;
  status) status ;;
  kill-serve) stop_pid "$state/serve-$2.pid" KILL ;;
  start-serve) serve_start "$2" ;;
  promote-pg) bash "$root/tests/failover/cluster.sh" fail "$(pg_ctl_dir)" ;;
  kill-redis)
    port=$(redis_primary_port) || die "no Redis primary found"
    stop_pid "$state/redis/$port.pid" KILL
    echo "$port"
    ;;
  *)
    echo "usage: $0 up [--redis sentinel|cluster] [--binary PATH] | status | down" >&2
    echo "       $0 kill-serve N | start-serve N | promote-pg | kill-redis" >&2
    exit 2
    ;;
esac
