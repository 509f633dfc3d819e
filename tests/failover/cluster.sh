#!/usr/bin/env bash
# A PostgreSQL primary with a synchronous streaming standby, for the failover
# test: `up DIR PRIMARY_PORT STANDBY_PORT` makes both under DIR (as the
# postgres user when run as root) with a database `activator`; `fail DIR`
# stops the primary at once and promotes the standby (which then commits
# without waiting for a standby of its own); `stop-standby DIR` and
# `start-standby DIR` stop the standby at once and start it again; `down
# DIR` stops whatever still runs. `alone DIR PORT LOCALE` makes one server
# whose messages are in LOCALE (`lc_messages`, e.g. de_DE.UTF-8), the
# locale compiled under DIR with localedef (no system locale is
# installed); `restart DIR` restarts it (fast: its sessions are
# terminated).
set -euo pipefail

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r | head -1)
[ -x "$bin/initdb" ] || bin=$(dirname "$(command -v initdb)")
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}
psql_at() { as_pg "$bin/psql" -h 127.0.0.1 -p "$1" -U postgres -d postgres -Atqc "$2"; }

cmd=$1 dir=$2
case "$cmd" in
  up)
    primary_port=$3 standby_port=$4
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
    as_pg "$bin/initdb" -D "$dir/primary" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
    cat >> "$dir/primary/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $primary_port
unix_socket_directories = '$dir'
wal_level = replica
max_wal_senders = 4
synchronous_standby_names = 'standby'
synchronous_commit = on
fsync = off
CONF
    as_pg "$bin/pg_ctl" -D "$dir/primary" -l "$dir/primary.log" -w -t 60 start >/dev/null
    as_pg "$bin/pg_basebackup" -d "host=127.0.0.1 port=$primary_port user=postgres application_name=standby" \
      -D "$dir/standby" -R -X stream >/dev/null
    as_pg sh -c "echo 'port = $standby_port' >> '$dir/standby/postgresql.conf'"
    as_pg "$bin/pg_ctl" -D "$dir/standby" -l "$dir/standby.log" -w -t 60 start >/dev/null
    for _ in $(seq 1 100); do
      [ "$(psql_at "$primary_port" "SELECT sync_state FROM pg_stat_replication" 2>/dev/null)" = sync ] && break
      sleep 0.1
    done
    [ "$(psql_at "$primary_port" "SELECT sync_state FROM pg_stat_replication")" = sync ]
    psql_at "$primary_port" "CREATE DATABASE activator" >/dev/null
    ;;
  alone)
    port=$3 locale=$4
    mkdir -p "$dir/locales"
    # glibc finds the locale under LOCPATH; PostgreSQL's translations are
    # Debian's (/usr/share/locale/*/LC_MESSAGES/postgres-*.mo).
    localedef -i "${locale%%.*}" -f "${locale#*.}" "$dir/locales/$locale" 2>/dev/null || true
    [ -e "$dir/locales/$locale/LC_MESSAGES" ] || { echo "localedef $locale failed" >&2; exit 1; }
    [ "$(id -u)" -eq 0 ] && chown -R postgres: "$dir"
    as_pg "$bin/initdb" -D "$dir/alone" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >/dev/null
    cat >> "$dir/alone/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
lc_messages = '$locale'
fsync = off
CONF
    echo "$dir/locales" > "$dir/locpath"
    as_pg env LOCPATH="$dir/locales" "$bin/pg_ctl" -D "$dir/alone" -l "$dir/alone.log" -w -t 60 start >/dev/null
    psql_at "$port" "CREATE DATABASE activator" >/dev/null
    ;;
  restart)
    as_pg env LOCPATH="$(cat "$dir/locpath")" "$bin/pg_ctl" -D "$dir/alone" -l "$dir/alone.log" \
      -m fast -w -t 60 restart >/dev/null
    ;;
  fail)
    standby_port=$(sed -n "s/^port = //p" "$dir/standby/postgresql.conf" | tail -1)
    as_pg "$bin/pg_ctl" -D "$dir/primary" -m immediate -w stop >/dev/null
    as_pg "$bin/pg_ctl" -D "$dir/standby" -w -t 60 promote >/dev/null
    # The new primary has no standby of its own: commits must not wait for
    # one (its configuration came from the old primary).
    psql_at "$standby_port" "ALTER SYSTEM SET synchronous_standby_names = ''" >/dev/null
    psql_at "$standby_port" "SELECT pg_reload_conf()" >/dev/null
    ;;
  stop-standby)
    as_pg "$bin/pg_ctl" -D "$dir/standby" -m immediate -w stop >/dev/null
    ;;
  start-standby)
    as_pg "$bin/pg_ctl" -D "$dir/standby" -l "$dir/standby.log" -w -t 60 start >/dev/null
    ;;
  down)
    for node in primary standby alone; do
      if [ -d "$dir/$node" ] && as_pg "$bin/pg_ctl" -D "$dir/$node" status >/dev/null 2>&1; then
        as_pg "$bin/pg_ctl" -D "$dir/$node" -m immediate -w stop >/dev/null || true
      fi
    done
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 up DIR PRIMARY_PORT STANDBY_PORT | fail DIR | stop-standby DIR | start-standby DIR | alone DIR PORT LOCALE | restart DIR | down DIR" >&2
    exit 2
    ;;
esac
