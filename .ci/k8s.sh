#!/usr/bin/env bash
# deploy/k8s, validated offline: `kubectl kustomize` renders the base, kubernetes-validate (PyPI,
# schemas bundled; installed into ~/.cache once) checks every resource strictly against the
# Kubernetes API schema, and the checks below hold the manifests to what the app needs.
# Usage: .ci/k8s.sh [path to the app binary, to check every configured option exists]
set -euo pipefail
cd "$(dirname "$0")/.."
k8s_version=1.31.0
venv="$HOME/.cache/chat-app/kubernetes-validate-1.37.0"
if ! [ -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "kubernetes-validate==1.37.0"
fi
if ! command -v kubectl >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubectl >/dev/null 2>&1 \
    || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null
fi
rendered=$(mktemp)
trap 'rm -f "$rendered"' EXIT
kubectl kustomize deploy/k8s >"$rendered"
"$venv/bin/kubernetes-validate" --strict --quiet -k "$k8s_version" "$rendered"

# What the app needs of them, read from the rendered manifests.
python3 - "$rendered" "${1:-}" <<'PY'
import re, subprocess, sys
text = open(sys.argv[1]).read()
docs = [d for d in re.split(r"^---$", text, flags=re.M) if d.strip()]
kinds = {}
for d in docs:
    kind = re.search(r"^kind: (\w+)", d, re.M).group(1)
    name = re.search(r"^  name: ([\w-]+)", d, re.M).group(1)
    kinds[(kind, name)] = d
def need(cond, what):
    if not cond:
        sys.exit(f"deploy/k8s: {what}")
app = kinds[("Deployment", "chat-app")]
need("path: /readyz" in app and "readinessProbe" in app, "the app's readiness probe is /readyz")
need("path: /healthz" in app and "livenessProbe" in app, "the app's liveness probe is /healthz")
need(re.search(r"replicas: ([2-9]|\d\d)", app), "the app runs several replicas")
ingress = kinds[("Ingress", "chat-app")]
for annotation in ['proxy-buffering: "off"', "proxy-read-timeout", 'upstream-hash-by: $cookie_chat_session']:
    need(annotation in ingress, f"the ingress sets {annotation}")
need(("Job", "chat-migrate") in kinds and "migration" in kinds[("Job", "chat-migrate")], "a migration Job")
config = kinds[("ConfigMap", "chat-app")]
need('SKIP_MIGRATIONS: "true"' in config, "replicas leave migrations to the Job")
llama = kinds[("Deployment", "llama-server")]
need("persistentVolumeClaim" in llama and "/models" in llama, "llama-server reads its model from a volume")
need(re.search(r"replicas: ([2-9]|\d\d)", llama), "several model servers")
pool = [d for (kind, name), d in kinds.items() if kind == "ConfigMap" and name.startswith("llama-balancer")]
need(pool and "least_conn" in pool[0] and "proxy_buffering off" in pool[0], "the model servers' balancer sends each request to the least busy one, unbuffered")
need("llama-balancer" in kinds[("Service", "llama-server")], "LM_API_URL's Service is the balancer")
need("clusterIP: None" in kinds[("Service", "llama-server-pods")], "the balancer finds the servers through a headless Service")
balancer = kinds[("Deployment", "llama-balancer")]
need(re.search(r"value: llama-server-pods\.\$\(POD_NAMESPACE\)\.svc\.", balancer) and "fieldPath: metadata.namespace" in balancer,
     "the balancer looks the servers up by their full name (nginx's resolver has no search domains)")
if sys.argv[2]:
    # Every variable the manifests give the app is one of its options.
    help_text = subprocess.run([sys.argv[2], "--help"], capture_output=True, text=True, check=True).stdout
    known = set(re.findall(r"\[env: ([A-Z_]+)", help_text)) | {"RUST_LOG"}
    keys = re.findall(r"^  ([A-Z_]+):", config, re.M) + re.findall(r"^  ([A-Z_]+):", kinds[("Secret", "chat-app")], re.M)
    keys += re.findall(r"- name: ([A-Z_]+)\n\s+valueFrom", app)
    # The examples left commented out for an operator to switch on must exist as well.
    for source in ("deploy/k8s/configmap.yaml", "deploy/k8s/secret.yaml"):
        keys += re.findall(r"^  # ([A-Z_]+): ", open(source).read(), re.M)
    unknown = sorted(set(keys) - known)
    need(not unknown, f"options the app does not have: {unknown}")
print(f"deploy/k8s: {len(docs)} resources valid (schemas and the app's needs)")
PY
