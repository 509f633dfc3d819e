#!/usr/bin/env bash
# Checks the Kubernetes manifests in deploy/kubernetes/ offline, without a
# cluster, kubectl or kustomize:
#
#   scripts/check-kubernetes.sh
#
# 1. renders the base and every overlay as `kubectl apply -k` would, with
#    the small kustomize renderer below, which knows only what these
#    kustomizations use (resources, namespace, labels on metadata, images,
#    patches that merge maps) and stops on anything else. Where kubectl is
#    installed, its `kubectl kustomize` must render the same objects.
# 2. validates every rendered object against the Kubernetes API's JSON
#    schemas (kubernetes-validate, strict: unknown fields are errors) for the
#    oldest and the newest Kubernetes it is meant for (KUBERNETES_VERSIONS);
#    checks that every environment variable set is one of .env.example and
#    that no Secret is in the repository;
# 3. scans them with checkov (framework kubernetes): any failed check fails,
#    except those skipped in the manifest itself with a reason
#    (`checkov.io/skip1: CKV_K8S_xx=why`), which are listed.
#
# kubernetes-validate bundles its schemas and checkov its checks: both run
# offline, in a network namespace of their own where `unshare` can make one
# (as root, or in a user namespace), so nothing is fetched at run time. The
# PyPI packages, pinned in scripts/check-kubernetes.requirements.txt, are
# installed once into the git-ignored .local/venv-kubernetes (python3-venv
# from Debian when missing, as root); a rerun installs nothing. Exits 1 if
# anything failed.
set -euo pipefail
started=$SECONDS
cd "$(dirname "${BASH_SOURCE[0]}")/.."

versions=${KUBERNETES_VERSIONS:-1.30 1.37}
venv=.local/venv-kubernetes
requirements=scripts/check-kubernetes.requirements.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- tools ---------------------------------------------------------------------
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "check-kubernetes: Python's venv is missing; install it with: sudo apt-get install -y python3-venv" >&2
      exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >&2
  fi
  echo "check-kubernetes: installing $requirements into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
  echo "$want" >"$venv/.requirements.sha256"
fi
python=$PWD/$venv/bin/python

# offline COMMAND...: COMMAND with no network at all, where possible.
offline=(env)
if unshare --net true 2>/dev/null; then
  offline=(unshare --net)
elif unshare --map-root-user --net true 2>/dev/null; then
  offline=(unshare --map-root-user --net)
else
  echo "check-kubernetes: unshare cannot make a network namespace here; running with the network" >&2
fi

# --- render and validate ---------------------------------------------------------
cat >"$tmp/render_validate.py" <<'PY'
import copy, difflib, os, re, shutil, subprocess, sys
import yaml

out_dir, versions = sys.argv[1], sys.argv[2].split()
kubectl = shutil.which("kubectl")
errors = []

class Unsupported(Exception):
    pass

# Kinds the kustomizations may hold, by scope: kustomize's namespace
# transformer sets metadata.namespace on the namespaced ones and renames
# Namespace objects; any other kind stops the renderer.
NAMESPACED = {"ServiceAccount", "ConfigMap", "Secret", "Service", "Deployment", "Job", "CronJob",
              "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy", "Ingress"}

def docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]

def merge(target, patch, where):
    """A strategic merge patch made of maps only: keys merge, null deletes."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value, f"{where}.{key}")
        elif isinstance(value, list):
            raise Unsupported(f"{where}.{key}: a list in a patch (kustomize merges lists by key): use kustomize")
        else:
            target[key] = copy.deepcopy(value)

def split_image(image):
    if "@" in image:
        name, digest = image.split("@", 1)
        return name, "@" + digest
    colon = image.rfind(":")
    if colon > image.rfind("/"):
        return image[:colon], image[colon:]
    return image, ""

def containers(node):
    """Every container of every pod template, wherever it is nested."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from value
            else:
                yield from containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from containers(item)

def render(directory):
    kfile = os.path.join(directory, "kustomization.yaml")
    if not os.path.isfile(kfile):
        raise Unsupported(f"{directory}: no kustomization.yaml")
    k = docs(kfile)[0]
    unknown = set(k) - {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}
    if unknown:
        raise Unsupported(f"{kfile}: {', '.join(sorted(unknown))}: not rendered by this script (commonLabels: use labels)")
    objects = []
    for entry in k.get("resources", []):
        path = os.path.normpath(os.path.join(directory, entry))
        if os.path.isdir(path):
            objects += render(path)
        elif os.path.isfile(path):
            objects += docs(path)
        else:
            raise Unsupported(f"{kfile}: resource {entry}: no such file or directory")
    for entry in k.get("patches", []):
        if set(entry) != {"path"}:
            raise Unsupported(f"{kfile}: patches: only `- path: FILE` (a strategic merge patch)")
        for patch in docs(os.path.join(directory, entry["path"])):
            meta = patch["metadata"]
            found = [o for o in objects if o["kind"] == patch["kind"] and o["metadata"]["name"] == meta["name"]
                     and meta.get("namespace") in (None, o["metadata"].get("namespace"))]
            if len(found) != 1:
                raise Unsupported(f"{kfile}: patch {entry['path']}: {len(found)} objects {patch['kind']}/{meta['name']}")
            merge(found[0], patch, f"{entry['path']}:{patch['kind']}/{meta['name']}")
    if "namespace" in k:
        for o in objects:
            if o["kind"] == "Namespace":
                o["metadata"]["name"] = k["namespace"]
            elif o["kind"] in NAMESPACED:
                o["metadata"]["namespace"] = k["namespace"]
            else:
                raise Unsupported(f"{kfile}: kind {o['kind']}: its scope is unknown to this script")
    for spec in k.get("labels", []):
        if set(spec) - {"pairs", "includeSelectors", "includeTemplates"} or spec.get("includeSelectors") or spec.get("includeTemplates"):
            raise Unsupported(f"{kfile}: labels: only pairs on metadata (includeSelectors and includeTemplates false)")
        for o in objects:
            o["metadata"].setdefault("labels", {}).update(spec["pairs"])
    for spec in k.get("images", []):
        if set(spec) - {"name", "newName", "newTag", "digest"}:
            raise Unsupported(f"{kfile}: images: only name, newName, newTag, digest")
        for c in containers(objects):
            name, ref = split_image(c["image"])
            if name == spec["name"]:
                if "digest" in spec:
                    ref = "@" + spec["digest"]
                elif "newTag" in spec:
                    ref = ":" + str(spec["newTag"])
                c["image"] = spec.get("newName", name) + ref
    return objects

def key(o):
    return (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])

def show(o):
    return f"{o['kind']}/{o['metadata']['name']}"

# .env.example's names: every variable a manifest sets must be one of them.
settings = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", open(".env.example").read(), re.M))

import kubernetes_validate
from kubernetes_validate import ValidationError, SchemaNotFoundError

roots = ["deploy/kubernetes/base"] + sorted(
    os.path.join("deploy/kubernetes/overlays", d) for d in os.listdir("deploy/kubernetes/overlays"))
counts = {}
for i, root in enumerate(roots):
    try:
        objects = render(root)
    except Unsupported as e:
        errors.append(f"render {root}: {e}")
        continue
    # The same objects as kubectl's kustomize, where kubectl is installed.
    if kubectl:
        run = subprocess.run([kubectl, "kustomize", root], capture_output=True, text=True)
        if run.returncode:
            errors.append(f"kubectl kustomize {root}: {run.stderr.strip()}")
        theirs = {key(o): o for o in yaml.safe_load_all(run.stdout) if o} if not run.returncode else {}
        ours = {key(o): o for o in objects}
        for k in sorted(set(ours) | set(theirs)):
            if ours.get(k) != theirs.get(k):
                diff = difflib.unified_diff(yaml.safe_dump(theirs.get(k), sort_keys=True).splitlines(),
                                            yaml.safe_dump(ours.get(k), sort_keys=True).splitlines(),
                                            "kubectl kustomize", "this renderer", lineterm="", n=1)
                errors.append(f"render {root}: {'/'.join(k)} differs from kubectl kustomize:\n" + "\n".join(diff))
    for o in objects:
        where = f"{root}: {show(o)}"
        if o["kind"] == "Secret":
            errors.append(f"{where}: a Secret in the repository; reference the operator's with secretKeyRef")
        names = list(o.get("data", {})) if o["kind"] == "ConfigMap" else []
        names += [e["name"] for c in containers(o) for e in c.get("env", [])]
        for name in names:
            if name not in settings:
                errors.append(f"{where}: {name} is not a setting of .env.example")
        for version in versions:
            try:
                kubernetes_validate.validate(o, version, strict=True)
            except ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                errors.append(f"{where}: Kubernetes {version}: {path}: {e.message}")
            except SchemaNotFoundError as e:
                errors.append(f"{where}: {e.message}")
    name = "base" if i == 0 else "overlay-" + os.path.basename(root)
    with open(os.path.join(out_dir, name + ".yaml"), "w") as f:
        yaml.safe_dump_all(objects, f, sort_keys=False)
    counts[root] = len(objects)

for e in errors:
    print("FAIL  " + e.replace("\n", "\n      "))
total = sum(counts.values())
print(f"{'ok  ' if not errors else 'FAIL'}  rendered {', '.join(f'{r} ({n})' for r, n in counts.items())}"
      f"{'; the same objects as kubectl kustomize' if kubectl else ' (no kubectl to compare with)'}; "
      f"{total} objects x Kubernetes {', '.join(versions)}: {total * len(versions)} schema validations (strict)")
sys.exit(1 if errors else 0)
PY

mkdir "$tmp/rendered"
failed=0
"${offline[@]}" "$python" "$tmp/render_validate.py" "$tmp/rendered" "$versions" || failed=1

# --- checkov -----------------------------------------------------------------------
# --skip-download and these variables: no platform, no version check.
export CKV_SKIP_PACKAGE_UPDATE_CHECK=true BC_SKIP_MAPPING=TRUE
rc=0
"${offline[@]}" "$venv/bin/checkov" --framework kubernetes --directory "$tmp/rendered" \
  --skip-download --output json >"$tmp/checkov.json" 2>"$tmp/checkov.err" || rc=$?
cat >"$tmp/checkov_summary.py" <<'PY'
import json, sys

rc, path = int(sys.argv[1]), sys.argv[2]
try:
    reports = json.load(open(path))
except ValueError:
    sys.exit(f"FAIL  checkov (exit {rc}) printed no report:\n" + open(sys.argv[3]).read()[-3000:])
reports = reports if isinstance(reports, list) else [reports]
passed, failed, skipped, errors = [], [], [], []
for report in reports:
    results = report.get("results", {})
    passed += results.get("passed_checks", [])
    failed += results.get("failed_checks", [])
    skipped += results.get("skipped_checks", [])
    errors += results.get("parsing_errors", [])
if not passed and not failed:
    errors.append("checkov ran no check")
where = lambda c: f"{c['file_path'].lstrip('/')}: {c['resource']}"
for c in failed:
    print(f"FAIL  checkov {c['check_id']} {c['check_name']}: {where(c)}")
# Skips, one line per check and reason: the files and objects it spares.
reasons, justified = {}, 0
for c in skipped:
    reason = (c.get("check_result") or {}).get("suppress_comment") or ""
    if not reason.strip() or reason == "No comment provided":
        failed.append(c)
        print(f"FAIL  checkov {c['check_id']} skipped without a reason: {where(c)}")
    else:
        reasons.setdefault((c["check_id"], c["check_name"], reason), set()).add(c["resource"])
        justified += 1
for (check, name, reason), resources in sorted(reasons.items()):
    print(f"skip  checkov {check} {name}: {', '.join(sorted(resources))}\n      because: {reason}")
for e in errors:
    print(f"FAIL  checkov: {e}")
ok = not failed and not errors
print(f"{'ok  ' if ok else 'FAIL'}  checkov: {len(passed)} passed, {len(failed)} failed, {justified} skipped")
sys.exit(0 if ok else 1)
PY
"$python" "$tmp/checkov_summary.py" "$rc" "$tmp/checkov.json" "$tmp/checkov.err" || failed=1

echo "check-kubernetes: $((SECONDS - started))s, $([ "$failed" = 0 ] && echo ok || echo FAILED)"
[ "$failed" = 0 ]
