#!/usr/bin/env bash
# Checks the deployment artifacts in deploy/ without deploying anything:
#
#   scripts/check-deploy.sh [ACTIVATOR_BINARY]
#
# - Prometheus: promtool check rules / test rules / check config;
# - Grafana: the dashboard is valid JSON, uses only core panels and the
#   DS_PROMETHEUS data source, and every metric its queries name is one
#   that docs/OPERATIONS.md lists (or process_*, up); its queries parse as
#   PromQL (promtool);
# - nginx: `nginx -t` on a throwaway nginx.conf that includes
#   deploy/nginx/activator.conf, with a throwaway self-signed certificate;
#   then nginx running that site in a network namespace of its own:
#   activator-client-network.conf's key (IPv4 address, IPv6 /64) against
#   Python's ipaddress for thousands of addresses, and the limits with
#   requests from 40 source addresses of one IPv6 /64; and the site in
#   front of the real serve (ACTIVATOR_BINARY) on free loopback ports: a
#   TLS client's trailing-slash 307 stays on https;
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
# systemd (systemd-analyze), openssl, python3, python3-yaml and iproute2,
# and stops their services from being started or enabled. It starts no
# service: its own nginx runs in a network namespace (`unshare -n` as root;
# as another user, in a user namespace of its own) with nothing but
# loopback, only during its checks. It leaves nothing behind but those
# packages.
set -euo pipefail
started=$SECONDS
binary=$(readlink -m "${1:-/bin/true}") # before cd: relative to the caller
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PATH=$PATH:/usr/sbin:/sbin

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- tools -----------------------------------------------------------------
scripts/packages.sh promtool:prometheus nginx:nginx systemd-analyze:systemd \
  openssl:openssl python3:python3 py.yaml:python3-yaml ip:iproute2 unshare:util-linux

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
# Metric names: exactly those of docs/OPERATIONS.md, plus process_* and up. Used by
# both the dashboard and the alert rules checks.
cat > "$tmp/metrics.py" <<'PY'
import re

# docs/OPERATIONS.md: each metric's labels, with the values listed there (None: any).
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
    "activator_password_hashes_total": {"work": {"hash", "verify"}},
    "activator_events_total": {"type": {"user.activated", "user.registered", "user.deleted"}, "result": {"queued", "delivered", "retried", "dead", "expired"}},
    "activator_trace_spans_dropped_total": {"reason": {"queue_full", "export_failed"}},
    "activator_password_refusals_total": {"rule": {"too_short", "too_long", "too_many_bytes", "whitespace", "control_characters", "character_classes", "breached", "common", "resembles_address", "guessable"}},
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
    """Label names (and listed values) that docs/OPERATIONS.md does not give a metric."""
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
check "alert rules use only docs/OPERATIONS.md metric and label names" \
  python3 "$tmp/check_alert_names.py" deploy/prometheus/alerts.yml "$tmp"

# --- nginx -------------------------------------------------------------------
# A copy of the site with the placeholder certificate and log paths pointed
# into $tmp/nginx, and there snippets/activator-client-network.conf, a link
# to the file in deploy/nginx/: activator.conf includes it relative to the
# directory of nginx.conf, as it does /etc/nginx/snippets/... on a server.
# Made once, for the checks below.
nginx_site() {
  local d=$tmp/nginx
  [ -e "$d/activator.conf" ] && return 0
  mkdir -p "$d/ssl" "$d/log" "$d/tmp" "$d/snippets"
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=api.example.com \
    -keyout "$d/ssl/privkey.pem" -out "$d/ssl/fullchain.pem" 2>/dev/null || return 1
  ln -s "$PWD/deploy/nginx/activator-client-network.conf" "$d/snippets/"
  sed -e "s#/etc/ssl/activator/#$d/ssl/#g" -e "s#/var/log/nginx/#$d/log/#g" \
    deploy/nginx/activator.conf > "$d/activator.conf"
}
# The site included from a minimal nginx.conf whose own paths (pid, logs,
# temp directories) are in $tmp too. `nginx -t` only parses and loads
# (certificates included): it binds no port and starts no process.
nginx_check() {
  local d=$tmp/nginx out
  nginx_site || { echo "openssl req failed"; return 1; }
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

# The site running, on its own ports (80, 443) in a network namespace of
# its own, with activator's upstream (127.0.0.1:8000) a `return 200`:
# - map: activator-client-network.conf gives each address the key Python's
#   ipaddress gives it (the IPv4 address, also for ::ffff:a.b.c.d; else the
#   /64), for addresses with `::` in every place nginx writes it (fed in
#   through realip, which nginx then writes its own way), and for every
#   other text form, through the same map keyed on a header;
# - limits: one request to /auth/ from each of 40 addresses of 2001:db8::/64
#   is over the site's limit_req (11 at once) and some get 429, while 10
#   addresses of 2001:db8:0:1::/64 right after all get 200; 127.0.0.2 and
#   127.0.0.3 are limited apart; 25 requests held open (no body) from 25
#   addresses of the first /64 are over limit_conn 20: 5 get 429.
# The namespace (and the addresses in it) goes away with the check.
cat > "$tmp/nginx_network.py" <<'PY'
# nginx with deploy/nginx/activator.conf, started here in the network
# namespace this runs in (a new one: nothing but loopback, every port
# free), stopped at the end:
#
#   nginx_network.py map DIR     the client network key against ipaddress
#   nginx_network.py limits DIR  the limits, with requests from many source
#                                addresses of one IPv6 /64 and of another
#
# DIR holds activator.conf with its paths pointed into DIR, the certificate
# under ssl/ and snippets/activator-client-network.conf. Prints what it saw;
# exits 1 on a wrong key or limit.
import ipaddress, random, selectors, signal, socket, ssl, subprocess, sys, time
import http.client

mode, d = sys.argv[1], sys.argv[2]
errors = []


def sh(*cmd):
    subprocess.run(cmd, check=True)


def start_nginx():
    """nginx in the foreground, one process: the site, activator's upstream
    (127.0.0.1:8000) as a `return 200`, and for `map`: on 127.0.0.1:8081 a
    server that believes X-Real-IP and answers "$remote_addr
    $activator_client_network", on 127.0.0.1:8082 one that answers the same
    map's key for the text of X-Addr ($any_text_network)."""
    conf = f"{d}/nginx-{mode}.conf"
    extra = ""
    if mode == "map":
        # The map with only its source (and name) changed, for text forms
        # nginx itself never writes: `::` for one zero group, a run of zeros
        # other than the longest, a dotted tail anywhere.
        text = open(f"{d}/snippets/activator-client-network.conf").read()
        head = "map $remote_addr $activator_client_network {"
        if text.count(head) != 1:
            sys.exit(f"activator-client-network.conf: no {head!r}")
        text = text.replace(head, "map $http_x_addr $any_text_network {")
        text = text.replace("$remote_addr", "$http_x_addr")
        with open(f"{d}/any-text-network.conf", "w") as f:
            f.write(text)
        extra = f"""
    server {{
        listen 127.0.0.1:8081;
        keepalive_requests 1000000;
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Real-IP;
        location / {{ return 200 "$remote_addr $activator_client_network"; }}
    }}
    include {d}/any-text-network.conf;
    server {{
        listen 127.0.0.1:8082;
        keepalive_requests 1000000;
        location / {{ return 200 "$any_text_network"; }}
    }}"""
    with open(conf, "w") as f:
        f.write(f"""
daemon off;
master_process off;
user root;
worker_processes 1;
pid {d}/nginx-{mode}.pid;
error_log {d}/log/error-{mode}.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    include {d}/activator.conf;
    server {{
        listen 127.0.0.1:8000;
        location / {{ return 200 "upstream\\n"; }}
    }}
{extra}
}}
""")
    proc = subprocess.Popen(["nginx", "-p", d, "-c", conf, "-e", f"{d}/log/error-{mode}.log"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 5
    while True:
        try:
            socket.create_connection(("127.0.0.1", 8000), timeout=1).close()
            socket.create_connection(("::1", 443), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                sys.exit("nginx exited: " + proc.stderr.read() + open(f"{d}/log/error-{mode}.log").read())
            if time.monotonic() > deadline:
                proc.kill()
                sys.exit("nginx did not listen within 5 s")
            time.sleep(0.02)


def expected(addr):
    """Python's answer: the IPv4 address (IPv4-mapped ones too), or the /64."""
    ip = ipaddress.ip_address(addr)
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.version == 4:
        return ip
    return ipaddress.IPv6Network(f"{ip}/64", strict=False)


def parse_key(key):
    return ipaddress.ip_network(key) if ":" in key else ipaddress.ip_address(key)


def shape(text):
    """(groups before ::, groups after ::) of an IPv6 address's text; a
    dotted tail counts as two groups; None without ::."""
    if "::" not in text:
        return None
    left, right = text.split("::")
    count = lambda s: 0 if not s else s.count(":") + 1 + s.count(".") // 3
    return count(left), count(right)


def spellings(ip):
    """Every text form of an IPv6 address in lowercase without leading zeros:
    `::` for any run of zero groups or none, a dotted tail or not."""
    g = [int(ip) >> (16 * (7 - i)) & 0xFFFF for i in range(8)]

    def forms(groups):
        h = [f"{x:x}" for x in groups]
        out = [":".join(h)]
        for i in range(len(groups)):
            for j in range(i + 1, len(groups) + 1):
                if groups[j - 1]:
                    break
                out.append(":".join(h[:i]) + "::" + ":".join(h[j:]))
        return out

    tail = f"{g[6] >> 8}.{g[6] & 255}.{g[7] >> 8}.{g[7] & 255}"
    return forms(g) + [f + ("" if f.endswith("::") else ":") + tail for f in forms(g[:6])]


def compare(port, header, texts):
    """Sends each text in HEADER; checks the key against Python's. Returns
    {key: networks}, {network: keys} and the :: shapes nginx saw."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    keys, nets, shapes = {}, {}, set()
    for text in texts:
        conn.request("GET", "/", headers={header: text})
        resp = conn.getresponse()
        body = resp.read().decode()
        remote, key = body.split(" ", 1) if " " in body else (text, body)
        want = expected(text)
        try:
            got = parse_key(key)
        except ValueError:
            got = None
        if resp.status != 200 or got != want:
            written = "" if remote == text else f" (nginx: {remote})"
            errors.append(f"{header}: {text}{written}: key {key!r}, want {want}")
            continue
        keys.setdefault(key, set()).add(want)
        nets.setdefault(want, set()).add(key)
        if ":" in remote and not ipaddress.ip_address(remote).ipv4_mapped:
            shapes.add(shape(remote))
    conn.close()
    for key, ws in keys.items():
        if len(ws) > 1:
            errors.append(f"{header}: key {key!r} for several networks: {sorted(map(str, ws))}")
    for net, ks in nets.items():
        if len(ks) > 1:
            errors.append(f"{header}: {net} has several keys: {sorted(ks)}")
    return keys, nets, shapes


def check_map():
    rng = random.Random(64)
    group = lambda: rng.choice((rng.randint(1, 0xF), rng.randint(0x10, 0xFF), rng.randint(0x100, 0xFFF), rng.randint(0x1000, 0xFFFF)))
    # Every pattern of zero and non-zero groups, so that `::` stands
    # everywhere nginx puts it, with groups of 1 to 4 hex digits.
    patterns = []
    for mask in range(256):
        for _ in range(8):
            groups = [group() if mask >> i & 1 else 0 for i in range(8)]
            patterns.append(ipaddress.IPv6Address(sum(g << (16 * (7 - i)) for i, g in enumerate(groups))))
    addrs = list(patterns)
    # Many addresses in each of some /64s (the interface ID all zero, or
    # with zero groups of its own, too).
    for _ in range(40):
        prefix = rng.choice([rng.getrandbits(64), rng.getrandbits(16) << 48 | rng.getrandbits(16) << 32, 0x20010DB8 << 32, rng.getrandbits(16) << 48])
        for iid in (0, 1, rng.getrandbits(64), rng.getrandbits(16), rng.getrandbits(16) << 48, rng.getrandbits(32) << 16, 0xFFFF_FFFF_FFFF_FFFF):
            addrs.append(ipaddress.IPv6Address(prefix << 64 | iid))
    # IPv4, IPv4-mapped (the same key as the IPv4 address), IPv4-compatible.
    for _ in range(40):
        v4 = ipaddress.IPv4Address(rng.getrandbits(32))
        addrs += [v4, ipaddress.IPv6Address(f"::ffff:{v4}"), ipaddress.IPv6Address(f"::{v4}")]
    # (255.255.255.255 is no address to realip: it keeps the peer's.)
    addrs += [ipaddress.ip_address(a) for a in ("0.0.0.0", "127.0.0.1", "255.255.255.254", "::", "::1", "::2", "::ffff:0.0.0.0", "::ffff:0:1.2.3.4", "fe80::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8::1", "2001:db8::1:0:0:1", "2001:db8:0:0:1::1", "1::2:3:4:5:6")]

    # 1. As nginx writes a peer's address: X-Real-IP (in several spellings)
    # becomes $remote_addr.
    texts = [(ip.compressed, ip.exploded, ip.compressed.upper())[i % 3] for i, ip in enumerate(addrs)]
    _, nets, shapes = compare(8081, "X-Real-IP", texts)
    # Every place nginx puts `::` (for two or more zero groups), and none.
    missing = {(a, b) for a in range(7) for b in range(7) if a + b <= 6} | {None}
    missing -= shapes
    if missing:
        errors.append(f"X-Real-IP: nginx wrote no address with :: after/before these group counts: {sorted(missing, key=str)}")

    # 2. Every other text form of a share of those addresses, through the
    # same map keyed on a header. (IPv4-mapped ones only as nginx writes
    # them, above.)
    texts2 = []
    for ip in patterns[::8] + addrs[len(patterns):]:
        if ip.version == 6 and not ip.ipv4_mapped:
            for t in spellings(ip):
                assert ipaddress.ip_address(t) == ip, (t, ip)
                texts2.append(t)
    _, nets2, shapes2 = compare(8082, "X-Addr", texts2)
    missing = {(a, b) for a in range(8) for b in range(8) if a + b <= 7} | {None}
    missing -= shapes2
    if missing:
        errors.append(f"X-Addr: no text with :: after/before these group counts: {sorted(missing, key=str)}")
    if not errors:
        print(f"{len(addrs)} addresses as nginx writes them ({len(nets)} networks, {len(shapes)} places of ::), "
              f"{len(texts2)} other text forms ({len(nets2)} networks): all keys as Python's ipaddress")


def request(src, dst, path):
    """A GET over TLS to the site from source address SRC: the status."""
    conn = http.client.HTTPSConnection(dst, 443, timeout=5, source_address=(src, 0), context=tls)
    conn.request("GET", path, headers={"Host": "api.example.com"})
    status = conn.getresponse().status
    conn.close()
    return status


def burst(srcs, dst):
    """One request to /auth/ from each source; {status: count}, seconds."""
    started = time.monotonic()
    counts = {}
    for src in srcs:
        s = request(src, dst, "/auth/register")
        counts[s] = counts.get(s, 0) + 1
    return counts, time.monotonic() - started


def check_limits():
    # /auth/: rate=5r/s burst=10 nodelay. At most 11 + 5/s pass at once.
    a = ipaddress.IPv6Network("2001:db8::/64")  # written 2001:db8::...
    b = ipaddress.IPv6Network("2001:db8:0:1::/64")  # differs where :: hides
    rng = random.Random(64)
    iids = [1, 2, 0x10, 0xFFFF, 0x1_0000_0001, 0x1_0000_0000_0001] + [rng.getrandbits(64) for _ in range(34)]
    a_hosts = [str(a[i]) for i in iids]
    b_hosts = [str(b[i]) for i in iids[:10]]
    for h in a_hosts + b_hosts:
        sh("ip", "-6", "addr", "add", f"{h}/128", "dev", "lo", "nodad")

    counts, secs = burst(a_hosts, "::1")
    allowed = 11 + int(5 * secs) + 1
    ok = counts.get(200, 0)
    if set(counts) - {200, 429} or ok > allowed or counts.get(429, 0) == 0:
        errors.append(f"40 addresses of {a}: {counts} in {secs:.2f}s; want at most {allowed} 200, the rest 429")
    print(f"{a}: 40 addresses, 1 request each to /auth/: {counts} in {secs:.2f}s")
    counts, secs = burst(b_hosts, "::1")
    if counts != {200: 10}:
        errors.append(f"10 addresses of {b}, after {a}'s: {counts}; want 10 x 200")
    print(f"{b}: 10 addresses right after: {counts}")
    # IPv4 stays per address.
    counts, secs = burst(["127.0.0.2"] * 20, "127.0.0.1")
    if counts.get(429, 0) == 0:
        errors.append(f"20 requests from 127.0.0.2: {counts}; want some 429")
    print(f"127.0.0.2: 20 requests: {counts}")
    counts, secs = burst(["127.0.0.3"] * 5, "127.0.0.1")
    if counts != {200: 5}:
        errors.append(f"5 requests from 127.0.0.3 after 127.0.0.2's: {counts}; want 5 x 200")
    print(f"127.0.0.3: 5 requests right after: {counts}")

    # limit_conn 20 per client: requests whose body never comes stay open
    # (client_body_timeout 10 s); from 25 addresses of a, 5 get 429 at once.
    held = []
    for h in a_hosts[:25]:
        s = tls.wrap_socket(socket.create_connection(("::1", 443), timeout=5, source_address=(h, 0)), server_hostname="api.example.com")
        s.sendall(b"POST /held HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n")
        s.setblocking(False)
        held.append(s)
    sel = selectors.DefaultSelector()
    for s in held:
        sel.register(s, selectors.EVENT_READ)
    answered = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        events = sel.select(timeout=max(0, deadline - time.monotonic()))
        for key, _ in events:
            s = key.fileobj
            try:
                data = s.recv(4096)
            except ssl.SSLWantReadError:
                continue  # a TLS record without data (a session ticket)
            answered.append(data.split(b" ", 2)[1].decode() if data else "closed")
            sel.unregister(s)
        if len(answered) >= 5 and deadline - time.monotonic() > 0.3:
            deadline = time.monotonic() + 0.3  # then a moment for any more
    status = request(b_hosts[0], "::1", "/health/live")
    if sorted(answered) != ["429"] * 5 or status != 200:
        errors.append(f"25 open requests from {a}: {len(answered)} answered {answered}, want 5 x 429; "
                      f"then {b}: {status}, want 200")
    print(f"{a}: 25 open requests from 25 addresses: {len(held) - len(answered)} held, answered {answered}; {b}: {status}")
    for s in held:
        s.close()


signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped (SIGTERM)"))
tls = ssl.create_default_context()
tls.check_hostname = False
tls.verify_mode = ssl.CERT_NONE
sh("ip", "link", "set", "lo", "up")
nginx = start_nginx()
try:
    check_map() if mode == "map" else check_limits()
finally:
    nginx.terminate()
    try:
        nginx.wait(timeout=5)
    except subprocess.TimeoutExpired:
        nginx.kill()
for e in errors:
    print(e)
sys.exit(1 if errors else 0)
PY
# nginx_network map|limits: root makes the network namespace (CI); another
# user, a user namespace too, where it is root.
nginx_network() {
  nginx_site || { echo "openssl req failed"; return 1; }
  local netns=(unshare --net)
  [ "$(id -u)" = 0 ] || netns=(unshare --map-root-user --net)
  timeout 60 "${netns[@]}" python3 "$tmp/nginx_network.py" "$1" "$tmp/nginx"
}
check "nginx: activator-client-network.conf keys IPv4 by address and IPv6 by /64, as Python's ipaddress" \
  nginx_network map
check "nginx: 40 addresses of one IPv6 /64 share its limits (429), another /64 is not limited" \
  nginx_network limits

# In front of the real `serve` (ACTIVATOR_BINARY, with the private
# PostgreSQL and Redis of scripts/services.sh, started for this check and
# stopped after if they were not running): the site on free loopback ports,
# its upstream pointed at serve. A TLS client's request for a path with a
# trailing slash is answered 307 to https:// on the host it asked for
# (nginx's X-Forwarded-Proto and Host, believed from loopback), so a
# client that follows it never sends its credentials in clear.
nginx_serve() {
  nginx_site || { echo "openssl req failed"; return 1; }
  if [ ! -x "$binary" ] || [ "$binary" = /bin/true ]; then
    echo "needs ACTIVATOR_BINARY"
    return 1
  fi
  local d=$tmp/nginx services started https http serve nginx_pid serve_pid answer=""
  services=$(scripts/services.sh ensure 2>/dev/null) || { echo "scripts/services.sh ensure failed"; return 1; }
  eval "$services"
  started=$services_started
  https=$(free_port) http=$(free_port) serve=$(free_port)
  # A database of its own, dropped after.
  local db=activator_deploy_check_$$
  psql_admin -c "CREATE DATABASE $db" >/dev/null || { echo "could not create $db"; return 1; }
  sed -e "s#^\(\s*\)listen 80;#\1listen 127.0.0.1:$http;#" \
      -e "s#^\(\s*\)listen 443 ssl http2;#\1listen 127.0.0.1:$https ssl http2;#" \
      -e '/listen \[::\]/d' -e "s#server 127.0.0.1:8000 #server 127.0.0.1:$serve #" \
      "$d/activator.conf" > "$d/serve.conf"
  cat > "$d/nginx-serve.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $d/nginx-serve.pid;
error_log $d/log/error-serve.log warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    include $d/serve.conf;
}
EOF
  DATABASE_URL=${DATABASE_URL%/*}/$db \
  SECRET_KEY=deploy-check-secret-key-0123456789abcdef BCRYPT_COST=4 ROCKET_PORT=$serve \
    "$binary" serve --migrate >"$d/log/serve.log" 2>&1 &
  serve_pid=$!
  nginx -p "$d" -c "$d/nginx-serve.conf" -e "$d/log/error-serve.log" 2>>"$d/log/error-serve.log" &
  nginx_pid=$!
  local base="https://api.example.com:$https" url
  local curl=(curl -sk --resolve "api.example.com:$https:127.0.0.1")
  for _ in $(seq 150); do
    [ "$("${curl[@]}" -o /dev/null -w '%{http_code}' "$base/health/live")" = 200 ] && break
    sleep 0.1
  done
  url="$base/auth/activate/?x=1"
  answer=$("${curl[@]}" -o /dev/null -w '%{http_code} %{redirect_url}' -X POST "$url") || true
  kill "$nginx_pid" "$serve_pid" 2>/dev/null
  wait "$nginx_pid" "$serve_pid" 2>/dev/null || true
  psql_admin -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
  [ "$started" = 1 ] && scripts/services.sh stop >/dev/null 2>&1
  echo "POST $url through nginx: $answer"
  # nginx forwards `Host: $host`, which names no port: the site's own is
  # 443, the default of https.
  if [ "$answer" != "307 https://api.example.com/auth/activate?x=1" ]; then
    tail -n 5 "$d/log/serve.log" "$d/log/error-serve.log"
    return 1
  fi
}
# psql_admin ARGS...: psql as postgres on the private PostgreSQL.
psql_admin() {
  local psql
  psql=$(ls /usr/lib/postgresql/*/bin/psql | sort -V | tail -n 1)
  "$psql" -X -q "${DATABASE_URL%/*}/postgres" "$@"
}
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
check "nginx over TLS in front of serve: a trailing-slash 307 stays on https" nginx_serve

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
# Traces are opt-in: a collector only under a profile, no endpoint unless given.
for name, service in services.items():
    if "jaeger" in str(service.get("image", "")) or "opentelemetry-collector" in str(service.get("image", "")):
        if not service.get("profiles"):
            errors.append(f"{name}: a trace collector outside an optional profile")
endpoint = str(env.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""))
if endpoint and not re.fullmatch(r"\$\{OTEL_EXPORTER_OTLP_ENDPOINT:-\}", endpoint):
    errors.append(f"api: traces are on by default ({endpoint!r})")
for e in errors:
    print(e)
sys.exit(1 if errors else 0)
PY
check "docker-compose.yml: nothing published beyond loopback, SECRET_KEY required, restart, healthchecks, traces opt-in" \
  python3 "$tmp/check_compose.py" docker-compose.yml

echo "check-deploy: $((SECONDS - started))s, $failed failed"
[ "$failed" = 0 ]
