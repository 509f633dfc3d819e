#!/usr/bin/env bash
# Builds the container image from the Dockerfile with podman and proves it
# works, so the image cannot break unseen:
#
#   scripts/container-check.sh
#
# 1. base images: no registry is needed. A Debian base (debootstrap from
#    Debian's mirror) and a Rust builder on it (the host's toolchain copied
#    in) are made once and kept in podman's storage under tags that name
#    their recipe, so later runs reuse them. The Dockerfile gets them through
#    its RUST_IMAGE and RUNTIME_IMAGE build arguments; its defaults stay the
#    public images.
# 2. the build runs with no network: the crates come from `cargo vendor`
#    (into .local/container/vendor, redone when Cargo.lock changes), mounted
#    into the build and named by the builder's cargo configuration. podman's
#    layer cache keeps the dependency layer while only the code changes.
# 3. the image: runs as a non-root user, has a HEALTHCHECK, a stripped binary.
# 4. the container, on the host network against the test suite's PostgreSQL
#    and Redis (scripts/services.sh; stopped again if this script started
#    them) in a database of its own: `migrate`, then `mailbox` and `serve`;
#    both healthchecks pass; register -> the code from the mailbox's JSON
#    API -> activate through the container's port; SIGTERM, and serve exits
#    0 within its grace.
#
# Run as root on Debian 12: installs podman, runc, debootstrap, binutils and
# curl when missing. Containers (and the build's RUN steps) run with runc,
# whatever podman's default runtime is (see "The runtime" below).
# Containers and the database it made are removed at the end; the images
# stay as the cache (`podman rmi` the localhost/activator-check/* tags to
# start cold). DEBIAN_MIRROR overrides the mirror taken from apt's
# sources.
set -euo pipefail
started=$SECONDS
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
state=$root/.local/container
mkdir -p "$state"

log() { printf 'container-check: %s (%ss)\n' "$*" "$((SECONDS - started))" >&2; }
fail() {
  printf 'container-check: FAIL %s\n' "$*" >&2
  exit 1
}

# Bump when a base image's recipe below changes, so cached ones are remade.
recipe=1
image=localhost/activator-check/activator:latest
base=localhost/activator-check/debian:bookworm-slim-r$recipe
name=activator-check-$$

# --- tools -------------------------------------------------------------------
need=()
command -v podman >/dev/null 2>&1 || need+=(podman uidmap fuse-overlayfs slirp4netns)
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v readelf >/dev/null 2>&1 || need+=(binutils)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    fail "missing ${need[*]}; install with: sudo apt-get install -y ${need[*]}"
  fi
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq "${need[@]}"; } >"$state/apt.log" 2>&1 ||
    { cat "$state/apt.log" >&2; fail "apt-get install ${need[*]}"; }
fi
if [ "$(id -u)" -ne 0 ]; then
  fail "run as root: debootstrap and the container runs need it"
fi
# The runtime: runc for every podman command here, the build's RUN steps
# included. podman prefers crun when it is installed (Debian's podman pulls
# it in when installed on its own), and crun (1.8, Debian 12) runs nothing
# on a host with hybrid cgroups, v1 controllers plus a v2 tree at
# /sys/fs/cgroup/unified: "cgroups in hybrid mode not supported". runc
# works with cgroups v1, hybrid and v2. A container keeps the runtime that
# created it, for its healthchecks and stop as well.
podman() { command podman --runtime runc "$@"; }
# podman's default limits for containers (open files 1048576) are above the
# hard limits of many hosts, where `podman run` then fails to set them: the
# host's open-files limit instead, and at most 32768 processes (higher ones
# fail the same way on some hosts).
nofile=$(ulimit -Hn)
[ "$nofile" != unlimited ] || nofile=1048576
ulimits=(--ulimit "nofile=$nofile:$nofile")
nproc=$(ulimit -Hu)
if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
ulimits+=(--ulimit "nproc=$nproc:$nproc")

tmp=$(mktemp -d)
# quiet COMMAND...: podman without its complaints about systemd (which it
# would use for healthcheck timers), unless the command fails.
quiet() {
  "$@" >/dev/null 2>"$tmp/podman.err" || { cat "$tmp/podman.err" >&2; fail "$*"; }
}
services_started=0
cleanup() {
  local rc=$?
  podman rm -f -i "$name-serve" "$name-mailbox" >/dev/null 2>&1 || true
  if [ -n "${admin_url:-}" ]; then
    psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $db_name WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  [ "$services_started" = 1 ] && scripts/services.sh stop
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT

# --- base images ---------------------------------------------------------------
mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -v '^[[:space:]]*#' | grep -oE '(https?|file)://[^ ]*/debian/?( |$)' | grep -v security | head -n 1 | tr -d ' ') || true
  mirror=${mirror:-http://deb.debian.org/debian}
fi

# import_rootfs DIR TAG CHANGES...: a root file system as an image.
import_rootfs() {
  local dir=$1 tag=$2
  shift 2
  local changes=()
  for change in "$@"; do changes+=(--change "$change"); done
  tar --numeric-owner -C "$dir" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -c . |
    podman import "${changes[@]}" - "$tag" >/dev/null 2>"$state/import-${dir##*/}.log" ||
    { cat "$state/import-${dir##*/}.log" >&2; fail "podman import $tag"; }
}

# debootstrap_into DIR PACKAGES: a minimal bookworm, trimmed like
# debian:bookworm-slim (no apt lists, docs, man pages or locales). The
# packages are kept in .local/container/debs-NAME for the next time.
debootstrap_into() {
  local name=${1##*/}
  mkdir -p "$state/debs-$name"
  debootstrap --variant=minbase --include="$2" --cache-dir="$state/debs-$name" \
    bookworm "$1" "$mirror" >"$state/debootstrap-$name.log" 2>&1 ||
    { tail -n 20 "$state/debootstrap-$name.log" >&2; fail "debootstrap from $mirror"; }
  rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb \
    "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/usr/share/info/* "$1"/usr/share/locale/*
}

make_base() {
  debootstrap_into "$tmp/base" ca-certificates
  import_rootfs "$tmp/base" "$base" 'CMD ["bash"]'
  rm -rf "$tmp/base"
}

# The builder: gcc for linking and the host's toolchain (without its docs),
# laid out as the official rust image has it; crates only from the vendored
# directory mounted at /vendor, never the network.
toolchain=$(rustc --print sysroot)
rust_version=$(rustc --version | awk '{print $2}')
builder=localhost/activator-check/rust:$rust_version-bookworm-r$recipe
make_builder() {
  debootstrap_into "$tmp/builder" ca-certificates,gcc,libc6-dev,make,pkg-config
  mkdir -p "$tmp/builder/usr/local/rust" "$tmp/builder/usr/local/cargo"
  for part in bin lib libexec etc; do
    if [ -e "$toolchain/$part" ]; then cp -a "$toolchain/$part" "$tmp/builder/usr/local/rust/"; fi
  done
  printf '%s\n' '[source.crates-io]' 'replace-with = "vendored"' '' \
    '[source.vendored]' 'directory = "/vendor"' '' '[net]' 'offline = true' \
    >"$tmp/builder/usr/local/cargo/config.toml"
  import_rootfs "$tmp/builder" "$builder" \
    'ENV CARGO_HOME=/usr/local/cargo' \
    'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'CMD ["bash"]'
  rm -rf "$tmp/builder"
}

# Both at once when both are missing: debootstrap mostly waits on dpkg.
making=()
if ! podman image exists "$base"; then
  log "making $base with debootstrap from $mirror"
  make_base &
  making+=($!)
fi
if ! podman image exists "$builder"; then
  log "making $builder (debootstrap, Rust $rust_version from $toolchain)"
  make_builder &
  making+=($!)
fi
for pid in "${making[@]}"; do
  wait "$pid" || fail "making the base images"
done

# --- crates ----------------------------------------------------------------------
lock_sum=$(sha256sum Cargo.lock | cut -d' ' -f1)
if [ "$(cat "$state/vendor.sum" 2>/dev/null)" != "$lock_sum" ]; then
  log "cargo vendor into .local/container/vendor"
  rm -f "$state/vendor.sum"
  cargo vendor --locked --versioned-dirs "$state/vendor" >/dev/null 2>"$state/vendor.log" ||
    { tail -n 20 "$state/vendor.log" >&2; fail "cargo vendor"; }
  echo "$lock_sum" >"$state/vendor.sum"
fi

# --- build -----------------------------------------------------------------------
log "podman build (log: .local/container/build.log)"
old_id=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
build_started=$SECONDS
# docker format: the OCI format has no HEALTHCHECK.
podman build --format docker --pull=never --network none \
  --build-arg RUST_IMAGE="$builder" --build-arg RUNTIME_IMAGE="$base" \
  --volume "$state/vendor:/vendor:ro" \
  --tag "$image" . >"$state/build.log" 2>&1 ||
  { tail -n 40 "$state/build.log" >&2; fail "podman build"; }
build_seconds=$((SECONDS - build_started))
new_id=$(podman image inspect --format '{{.Id}}' "$image")
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
  podman rmi "$old_id" >/dev/null 2>&1 || true # still a cache layer: kept
fi

# --- the image -------------------------------------------------------------------
size=$(podman image inspect --format '{{.Size}}' "$image")
user=$(podman image inspect --format '{{.Config.User}}' "$image")
health=$(podman image inspect --format '{{.Config.Healthcheck}}' "$image")
case $user in
  "" | root | 0 | 0:*) fail "the image runs as root (USER '$user')" ;;
esac
[ -n "$health" ] && [ "$health" != "<nil>" ] || fail "the image has no HEALTHCHECK"
quiet podman create --name "$name-serve" "$image"
quiet podman cp "$name-serve:/usr/local/bin/activator" "$tmp/activator"
quiet podman rm "$name-serve"
binary_size=$(stat -c %s "$tmp/activator")
if readelf -S -W "$tmp/activator" | grep -qE '\.debug_|\.symtab'; then
  fail "the binary in the image is not stripped"
fi
log "built in ${build_seconds}s: image $((size / 1000000)) MB, binary $((binary_size / 1000000)) MB stripped, user $user"

# --- the container against PostgreSQL and Redis -------------------------------------
services=$(scripts/services.sh ensure)
eval "$services"
# A database of its own on the test suite's server.
db_name=activator_container_check
admin_url=${DATABASE_URL%/*}/postgres
PGOPTIONS=--client-min-messages=warning psql -q "$admin_url" \
  -c "DROP DATABASE IF EXISTS $db_name WITH (FORCE)" -c "CREATE DATABASE $db_name" >/dev/null
database_url=${DATABASE_URL%/*}/$db_name

free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 30000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
}
api_port=$(free_port)
mail_port=$(free_port)
api=http://127.0.0.1:$api_port
mail=http://127.0.0.1:$mail_port
run=(podman run --net host "${ulimits[@]}")
env=(
  -e DATABASE_URL="$database_url" -e REDIS_URL="$REDIS_URL"
  -e SECRET_KEY="container-check-$(od -An -N24 -tx1 /dev/urandom | tr -d " \n")"
  -e EMAIL_API_URL="$mail/v1/send" -e BCRYPT_COST=4
  -e ROCKET_ADDRESS=127.0.0.1 -e ROCKET_PORT="$api_port"
  # No second listener on a fixed host port.
  -e METRICS_ADDRESS=
)

out=$("${run[@]}" --rm --no-healthcheck "${env[@]}" "$image" migrate 2>"$tmp/migrate.err") ||
  fail "migrate: $(cat "$tmp/migrate.err")"
log "migrate: $out"

# --health-interval disable: no timer to schedule; `podman healthcheck run`
# below runs each check once. The mailbox's is the one docker-compose.yml
# gives it.
quiet "${run[@]}" -d --name "$name-mailbox" --health-interval disable \
  --health-cmd "[\"activator\",\"healthcheck\",\"--url\",\"$mail/v1/messages?limit=1\"]" \
  "$image" mailbox --address 127.0.0.1 --port "$mail_port"
quiet "${run[@]}" -d --name "$name-serve" --health-interval disable "${env[@]}" "$image"

# wait_live NAME URL: until URL answers, or the container has exited.
wait_live() {
  for _ in $(seq 150); do
    curl -fsS -o /dev/null --max-time 1 "$2" 2>/dev/null && return 0
    if [ "$(podman inspect --format '{{.State.Running}}' "$1")" != true ]; then
      podman logs "$1" 2>&1 | tail -n 20 >&2
      fail "$1 exited before answering $2"
    fi
    sleep 0.2
  done
  podman logs "$1" 2>&1 | tail -n 20 >&2
  fail "$2 did not answer within 30s"
}
wait_live "$name-mailbox" "$mail/v1/messages"
wait_live "$name-serve" "$api/health/live"
for container in "$name-serve" "$name-mailbox"; do
  podman healthcheck run "$container" >/dev/null 2>&1 || fail "the HEALTHCHECK of $container failed"
done
log "serve and mailbox answer; both healthchecks pass"

# register -> code from the mailbox -> activate
email="container-check.$$.$RANDOM@example.com"
password='Secr3t!pass'
status=$(curl -sS -o "$tmp/register" -w '%{http_code}' "$api/auth/register" \
  -H 'content-type: application/json' -d "{\"email\":\"$email\",\"password\":\"$password\"}")
[ "$status" = 201 ] || fail "register answered $status: $(cat "$tmp/register")"
code=
for _ in $(seq 50); do
  code=$(curl -sS "$mail/v1/messages?to=$email" | grep -oE '"code": ?"[0-9]+"' | head -n 1 | grep -oE '[0-9]+' || true)
  [ -n "$code" ] && break
  sleep 0.2
done
[ -n "$code" ] || { podman logs "$name-serve" 2>&1 | tail -n 20 >&2; fail "no activation email reached the mailbox"; }
status=$(curl -sS -o "$tmp/activate" -w '%{http_code}' "$api/auth/activate" -u "$email:$password" \
  -H 'content-type: application/json' -d "{\"code\":\"$code\"}")
[ "$status" = 200 ] || fail "activate answered $status: $(cat "$tmp/activate")"
log "registered, got the code from the mailbox, activated"

# SIGTERM: a clean exit within the grace (podman stop sends SIGKILL after 20 s).
stop_started=$(date +%s%N)
quiet podman stop --time 20 "$name-serve"
stop_ms=$((($(date +%s%N) - stop_started) / 1000000))
exit_code=$(podman inspect --format '{{.State.ExitCode}}' "$name-serve")
[ "$exit_code" = 0 ] || { podman logs "$name-serve" 2>&1 | tail -n 20 >&2; fail "serve exited $exit_code after SIGTERM"; }
log "serve stopped on SIGTERM in ${stop_ms} ms, exit 0"

log "ok"
