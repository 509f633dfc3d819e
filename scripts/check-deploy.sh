#!/usr/bin/env bash
# Checks the deployment artifacts in deploy/ without deploying anything:
#
#   scripts/check-deploy.sh [ACTIVATOR_BINARY]
#
# - Prometheus: promtool check rules / test rules / check config;
# - Grafana: the dashboard is valid JSON, uses only core panels and the
#   DS_PROMETHEUS data source, and every metric its queries name is one of
#   SPEC §6 (or process_*, up); its queries parse as PromQL (promtool);
# - nginx: `nginx -t` on a throwaway nginx.conf that includes
#   deploy/nginx/activator.conf, with a throwaway self-signed certificate;
# - systemd: `systemd-analyze verify` and `systemd-analyze security` on the
#   three units;
# - Compose: docker-compose.yml publishes PostgreSQL and Redis nowhere and
#   the API and mailbox on loopback only, requires SECRET_KEY, restarts the
#   API, and has healthchecks for the API and the mailbox.
#
# ACTIVATOR_BINARY (e.g. target/release/activator) is what the systemd
# units' ExecStart= is checked against; /bin/true without it.
#
# Prints one line per check (and the tool's output under a failing one);
# exits 1 if any check failed. Run it as root on Debian 12 when tools are
# missing: it installs Debian's prometheus (for promtool), nginx,
# systemd (systemd-analyze), openssl, python3 and python3-yaml, and stops their services
# from being started or enabled. It starts nothing and leaves nothing behind
# but those packages.
set -euo pipefail
started=$SECONDS
binary=$(readlink -m "${1:-/bin/true}") # before cd: relative to the caller
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PATH=$PATH:/usr/sbin:/sbin

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- tools -----------------------------------------------------------------
scripts/packages.sh promtool:prometheus nginx:nginx systemd-analyze:systemd \
  openssl:openssl python3:python3 py.yaml:python3-yaml

failed=0
# check NAME COMMAND...: runs COMMAND, prints "ok NAME" or "FAIL NAME" and
# COMMAND's output, indented.
check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then
    printf 'ok    %s\n' "$name"
  else
    printf 'FAIL  %s\n' "$name"
    # the first 30 lines of what the tool said, indented
    printf '%s\n' "$out" | sed -n '1,30s/^/      /p'
    [ "$(printf '%s\n' "$out" | wc -l)" -le 30 ] || echo "      ..."
    failed=$((failed + 1))
  fi
}

# --- Prometheus --------------------------------------------------------------
check "promtool check rules deploy/prometheus/alerts.yml" \
  promtool check rules deploy/prometheus/alerts.yml
check "promtool test rules deploy/prometheus/alerts.test.yml" \
  promtool test rules deploy/prometheus/alerts.test.yml
check "promtool check config deploy/prometheus/prometheus.yml" \
  promtool check config deploy/prometheus/prometheus.yml

# --- Grafana -----------------------------------------------------------------
# Metric names: exactly those of SPEC §6, plus process_* and up. Used by
# both the dashboard and the alert rules checks.
cat > "$tmp/metrics.py" <<'PY'
import re

# SPEC §6: each metric's labels, with the values listed there (None: any).
METRICS = {
    "activator_http_requests_total": {"method": None, "route": None, "status": None},
    "activator_http_request_duration_seconds": {"method": None, "route": None},
    "activator_registrations_total": {"outcome": {"created", "conflict", "invalid", "rate_limited", "unavailable"}},
    "activator_activations_total": {"outcome": {"activated", "invalid_code", "locked", "unauthorized", "invalid", "unavailable"}},
    "activator_resends_total": {"outcome": {"sent", "rate_limited", "already_active", "unauthorized", "unavailable"}},
    "activator_rate_limited_total": {"limit": None},
    "activator_emails_total": {"result": {"delivered", "retried", "throttled", "dead", "expired"}},
    "activator_email_send_duration_seconds": {},
    "activator_outbox_messages": {"state": {"queued", "sent", "dead", "expired"}},
    "activator_outbox_oldest_pending_age_seconds": {},
    "activator_password_hash_waiting": {},
    "activator_password_hash_rejected_total": {},
}
TARGET_LABELS = {"job": None, "instance": None}
HISTOGRAMS = {"activator_http_request_duration_seconds", "activator_email_send_duration_seconds"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "Inf", "NaN"}


def allowed(name):
    if name in METRICS or name == "up" or name.startswith("process_"):
        return True
    for h in HISTOGRAMS:
        if name in (h + "_bucket", h + "_sum", h + "_count"):
            return True
    return False


def base(name):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in HISTOGRAMS:
            return name[: -len(suffix)]
    return name


def metric_names(expr):
    """The metric names a PromQL expression selects (good enough for ours)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # ranges
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    e = re.sub(r"\$\{?\w+\}?", "", e)  # Grafana variables
    e = re.sub(r"\b(offset|@)\s*-?[\w.]+", "", e)  # offset 5m, @ 1700000000
    e = re.sub(r"(?<![\w.])\d+(\.\d+)?([eE][+-]?\d+)?(ms|[smhdwy])?\b", "", e)  # numbers, durations
    names = []
    for m in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\()?", e):
        if m.group(2) or m.group(1) in KEYWORDS:
            continue  # a function call or an operator
        names.append(m.group(1))
    return names


def labels_of(name):
    """The labels a series of this metric may carry (None: not ours)."""
    if not allowed(name):
        return None
    labels = dict(TARGET_LABELS)
    labels.update(METRICS.get(base(name), {}))
    if name.endswith("_bucket"):
        labels["le"] = None
    return labels


def label_errors(expr):
    """Label names (and listed values) that SPEC §6 does not give a metric."""
    errors = []
    e = re.sub(r"\$\{?\w+\}?", "x", expr)
    known = set()
    for m in re.finditer(r"([A-Za-z_:][\w:]*)?\s*\{([^}]*)\}", e):
        labels = labels_of(m.group(1)) if m.group(1) else None
        if labels is None:
            continue  # an unknown metric, reported as such
        known |= set(labels)
        for name, op, value in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', m.group(2)):
            if name not in labels:
                errors.append(f"{m.group(1)} has no label {name!r}")
            elif op in ("=", "!=") and labels[name] is not None and value not in labels[name]:
                errors.append(f"{m.group(1)}{{{name}}} has no value {value!r}")
    for n in metric_names(expr):
        known |= set(labels_of(n) or {})
    for m in re.finditer(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", e):
        for name in re.findall(r"[A-Za-z_]\w*", m.group(1)):
            if name not in known:
                errors.append(f"no metric here has the label {name!r}")
    return errors


PY

cat > "$tmp/check_dashboard.py" <<'PY'
import json, re, sys
sys.path.insert(0, sys.argv[2])
from metrics import METRICS, allowed, base, metric_names, label_errors

path, out_rules = sys.argv[1], sys.argv[3]
errors = []
try:
    with open(path) as f:
        dash = json.load(f)
except ValueError as e:
    sys.exit(f"{path}: not JSON: {e}")

if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
    errors.append("schemaVersion missing or older than 36")
for key in ("title", "uid", "panels", "templating"):
    if key not in dash:
        errors.append(f"no {key!r}")

variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
ds = variables.get("DS_PROMETHEUS")
if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
    errors.append("no DS_PROMETHEUS data source variable")
if "instance" not in variables:
    errors.append("no instance template variable")

# No links out, no plugins beyond Grafana's core panels.
CORE = {"row", "timeseries", "stat", "gauge", "bargauge", "table", "text", "heatmap", "barchart", "piechart", "state-timeline", "status-history", "histogram"}
text = json.dumps(dash)
for url in re.findall(r"https?://[^\s\"]+", text):
    errors.append(f"external URL {url}")
if dash.get("links"):
    errors.append("dashboard links")


def datasources(node):
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), dict):
            yield node["datasource"]
        for v in node.values():
            yield from datasources(v)
    elif isinstance(node, list):
        for v in node:
            yield from datasources(v)


for d in datasources(dash):
    if d.get("type") != "grafana" and d.get("uid") != "${DS_PROMETHEUS}":
        errors.append(f"data source {d} is not ${{DS_PROMETHEUS}}")

exprs = []  # (where, expr)
for name, v in variables.items():
    if v.get("type") == "query":
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", q or "")
        if not m:
            errors.append(f"variable {name}: not a label_values() query: {q!r}")
        else:
            exprs.append((f"variable {name}", m.group(1)))

panels = []
for p in dash.get("panels", []):
    panels.append(p)
    panels.extend(p.get("panels", []))  # collapsed rows
ids = set()
cells = {}
for p in panels:
    where = f"panel {p.get('id')} {p.get('title')!r}"
    if p.get("type") not in CORE:
        errors.append(f"{where}: type {p.get('type')!r} is not a core panel")
    if p.get("id") in ids:
        errors.append(f"{where}: duplicate id")
    ids.add(p.get("id"))
    g = p.get("gridPos", {})
    if not all(isinstance(g.get(k), int) for k in "hwxy") or g["x"] + g["w"] > 24:
        errors.append(f"{where}: bad gridPos {g}")
    else:
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    errors.append(f"{where}: overlaps {cells[(x, y)]}")
                    break
                cells[(x, y)] = where
            else:
                continue
            break
    if p.get("type") == "row":
        continue
    if p.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
        errors.append(f"{where}: data source is not ${{DS_PROMETHEUS}}")
    targets = p.get("targets") or []
    if not targets:
        errors.append(f"{where}: no query")
    for t in targets:
        if not t.get("expr"):
            errors.append(f"{where}: target {t.get('refId')} has no expr")
        else:
            exprs.append((where, t["expr"]))
            if 'instance=~"$instance"' not in t["expr"]:
                errors.append(f"{where}: query ignores $instance: {t['expr']}")

used = set()
rules = []
for i, (where, expr) in enumerate(exprs):
    names = metric_names(expr)
    if not names:
        errors.append(f"{where}: no metric name found in {expr!r}")
    for n in names:
        if not allowed(n):
            errors.append(f"{where}: unknown metric {n!r}")
        used.add(base(n))
    for msg in label_errors(expr):
        errors.append(f"{where}: {msg}")
    # For promtool: Grafana's variables replaced by plain values.
    e = re.sub(r"\$__(rate_interval|interval|range)\b", "5m", expr)
    e = re.sub(r"\$\{?\w+\}?", ".*", e)
    rules.append({"record": f"dashboard:query_{i}", "expr": e})
for n in sorted(set(METRICS) - used):
    errors.append(f"metric {n} is on no panel")
for n in ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds", "process_max_fds"):
    if n not in used:
        errors.append(f"metric {n} is on no panel")

with open(out_rules, "w") as f:
    json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
for e in errors:
    print(e)
sys.exit(1 if errors else 0)
PY

cat > "$tmp/check_alert_names.py" <<'PY'
# The metric names in alerts.yml's expressions (read without a YAML
# library: `expr:` on one line, or `expr: >-` and a more indented block).
import re, sys
sys.path.insert(0, sys.argv[2])
from metrics import allowed, metric_names, label_errors

lines = open(sys.argv[1]).read().split("\n")
exprs, alerts, errors = [], 0, []
i = 0
while i < len(lines):
    line = lines[i]
    alerts += bool(re.match(r"\s*- alert:", line))
    m = re.match(r"(\s*)expr:\s*(.*)$", line)
    if m:
        indent, rest = len(m.group(1)), m.group(2)
        if rest in (">-", ">", "|", "|-"):
            block = []
            while i + 1 < len(lines) and (not lines[i + 1].strip() or len(lines[i + 1]) - len(lines[i + 1].lstrip()) > indent):
                i += 1
                block.append(lines[i])
            rest = " ".join(block)
        exprs.append(rest)
    i += 1
if not alerts or len(exprs) != alerts:
    errors.append(f"found {len(exprs)} expr for {alerts} alerts")
for e in exprs:
    for n in metric_names(e):
        if not allowed(n):
            errors.append(f"unknown metric {n!r} in: {e.strip()}")
    for msg in label_errors(e):
        errors.append(f"{msg} in: {e.strip()}")
for e in errors:
    print(e)
sys.exit(1 if errors else 0)
PY

check "dashboard deploy/grafana/activator.json: JSON, panels, metric and label names" \
  python3 "$tmp/check_dashboard.py" deploy/grafana/activator.json "$tmp" "$tmp/dashboard-rules.json"
# The dashboard's queries as recording rules, so promtool parses them.
dashboard_promql() {
  if [ ! -s "$tmp/dashboard-rules.json" ]; then
    echo "no queries to parse: the dashboard check above failed"
    return 1
  fi
  promtool check rules "$tmp/dashboard-rules.json"
}
check "dashboard queries parse as PromQL" dashboard_promql
check "alert rules use only SPEC §6 metric and label names" \
  python3 "$tmp/check_alert_names.py" deploy/prometheus/alerts.yml "$tmp"

# --- nginx -------------------------------------------------------------------
# A copy of the site with the placeholder certificate and log paths pointed
# into $tmp, included from a minimal nginx.conf whose own paths (pid, logs,
# temp directories) are in $tmp too. `nginx -t` only parses and loads
# (certificates included): it binds no port and starts no process.
nginx_check() {
  local d=$tmp/nginx out
  mkdir -p "$d/ssl" "$d/log" "$d/tmp"
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=api.example.com \
    -keyout "$d/ssl/privkey.pem" -out "$d/ssl/fullchain.pem" 2>/dev/null
  sed -e "s#/etc/ssl/activator/#$d/ssl/#g" -e "s#/var/log/nginx/#$d/log/#g" \
    deploy/nginx/activator.conf > "$d/activator.conf"
  cat > "$d/nginx.conf" <<EOF
worker_processes 1;
pid $d/nginx.pid;
error_log $d/log/error.log;
events { worker_connections 64; }
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
  out=$(nginx -t -q -e stderr -p "$d" -c "$d/nginx.conf" 2>&1) || { echo "$out"; return 1; }
  # Warnings fail too (a conflicting server name, an ignored directive).
  if [ -n "$out" ]; then echo "$out"; return 1; fi
}
check "nginx -t with deploy/nginx/activator.conf" nginx_check

# --- systemd -----------------------------------------------------------------
# `systemd-analyze verify` loads the units into a test instance of the
# manager (no running systemd needed: it works in a container whose PID 1
# is not systemd as well as on a booted host). It checks that ExecStart's
# binary exists and is executable, so it verifies copies of the units with
# /usr/local/bin/activator replaced by ACTIVATOR_BINARY ($1, e.g.
# target/release/activator), or by /bin/true without one (then only the
# units themselves are checked). It reports unknown keys and bad values but
# still exits 0, so any line that names one of our units fails the check.
units=(activator.service activator-purge.service activator-purge.timer)
mkdir -p "$tmp/units"
for u in "${units[@]}"; do
  sed "s#/usr/local/bin/activator#$binary#g" "deploy/systemd/$u" > "$tmp/units/$u"
done
verify_units() {
  local out rc=0
  out=$(cd "$tmp/units" && systemd-analyze verify --man=no "${units[@]/#/./}" 2>&1) || rc=$?
  [ -n "$out" ] && printf '%s\n' "$out"
  [ "$rc" = 0 ] || return 1
  ! printf '%s\n' "$out" | grep -q 'activator'
}
check "systemd-analyze verify ${units[*]} (ExecStart=$binary)" verify_units
# The sandbox stays tight: exposure 2.0 or less ("OK") for both services.
security() {
  local u out
  if ! systemd-analyze security --help 2>/dev/null | grep -q -- --offline; then
    echo "systemd-analyze security has no --offline (systemd < 252)"; return 1
  fi
  for u in activator.service activator-purge.service; do
    out=$(cd "$tmp/units" && systemd-analyze security --offline=true --threshold=20 --no-pager "./$u" 2>&1) || {
      printf '%s\n' "$out" | grep -E '✗|Overall'; return 1; }
  done
}
check "systemd-analyze security: exposure <= 2.0" security

# --- Compose -----------------------------------------------------------------
# What the file promises, read as YAML (no container engine needed;
# scripts/container-check.sh runs the image itself).
cat > "$tmp/check_compose.py" <<'PY'
import re, sys, yaml

doc = yaml.safe_load(open(sys.argv[1]))
services = doc.get("services", {})
errors = []
for name in ("postgres", "redis", "api", "mailbox"):
    if name not in services:
        errors.append(f"no service {name!r}")
for name, service in services.items():
    for port in service.get("ports", []):
        text = str(port.get("host_ip", "") if isinstance(port, dict) else port)
        if name in ("postgres", "redis"):
            errors.append(f"{name}: published ({port}); keep it on the Compose network")
        elif not (isinstance(port, dict) and text == "127.0.0.1" or text.startswith("127.0.0.1:")):
            errors.append(f"{name}: {port} is published beyond loopback")
api = services.get("api", {})
env = api.get("environment", {})
if isinstance(env, list):
    env = dict(item.split("=", 1) for item in env)
if not re.fullmatch(r"\$\{SECRET_KEY:\?[^}]+\}", str(env.get("SECRET_KEY", ""))):
    errors.append(f"api: SECRET_KEY is not required from the environment: {env.get('SECRET_KEY')!r}")
if api.get("restart") not in ("always", "unless-stopped") and not str(api.get("restart", "")).startswith("on-failure"):
    errors.append(f"api: no restart policy to wait out a slow database ({api.get('restart')!r})")
for name in ("api", "mailbox"):
    test = services.get(name, {}).get("healthcheck", {}).get("test")
    if not test or "healthcheck" not in " ".join(test if isinstance(test, list) else [test]):
        errors.append(f"{name}: no `activator healthcheck` healthcheck")
for e in errors:
    print(e)
sys.exit(1 if errors else 0)
PY
check "docker-compose.yml: nothing published beyond loopback, SECRET_KEY required, restart, healthchecks" \
  python3 "$tmp/check_compose.py" docker-compose.yml

echo "check-deploy: $((SECONDS - started))s, $failed failed"
[ "$failed" = 0 ]
