#!/usr/bin/env bash
# End-to-end suite: real llama-server (built from source, cached) serving the tiny test model,
# the app's embedded engine on SmolLM2 (no LM_API_URL, SQLite), real PostgreSQL, the release app, nginx with our nginx.conf (upstream pointed here), and
# headless Chromium driven by Playwright. Screenshots go to e2e/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chat-app/target}"
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

need=()
command -v nginx >/dev/null || need+=(nginx)
command -v chromium >/dev/null || need+=(chromium)
command -v cmake >/dev/null || need+=(cmake)
command -v node >/dev/null || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

llama=$(bash .ci/build-llama-server.sh)
bash .ci/postgres.sh
cargo build --release --locked -p app
app_bin="$CARGO_TARGET_DIR/release/app"
(cd e2e && npm ci --no-audit --no-fund --loglevel=error)

wait_http() { # url, what
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "$1" && return 0; sleep 0.2; done
  echo "$2 did not come up at $1" >&2
  return 1
}

# llama-server with the tiny model: 2 slots of 4096 tokens (its training context; beyond it the
# model slows down a hundredfold), one thread, and sampling over the whole vocabulary (top-k off,
# top-p 0.99), which brings it from ~1,500 to ~280 tokens/s: a 1,500-token reply lasts about 5 s,
# long enough for a browser to reload or press Stop in the middle of it. With --jinja, as compose
# and deploy/k8s start it (what tools need).
"$llama" -m "${SHARED_DIR:-$root/../shared}/models/llama-2-tiny-random.gguf" --alias llama-2-tiny-random \
  -c 8192 --parallel 2 -t 1 --top-k 0 --top-p 0.99 --jinja --host 127.0.0.1 --port 18080 >"$work/llama.log" 2>&1 &
pids+=($!)
node e2e/slow-lm.mjs &
pids+=($!)
wait_http http://127.0.0.1:18080/health llama-server
wait_http http://127.0.0.1:18090/health slow-lm

PGPASSWORD=chat psql -h 127.0.0.1 -U chat -d postgres -qc "DROP DATABASE IF EXISTS chat_e2e" -c "CREATE DATABASE chat_e2e"
# The two apps on chat_e2e are two replicas of one deployment: one database, one session key (a
# page on one follows and stops a reply the other writes).
session_key=$(head -c 64 /dev/urandom | base64 -w0)
# TOOLS: the built-in tools the app may offer (the slow model's app: fetch_url, of this
# machine's pages too, the slow model's /page).
start_app() { # port, model URL, database
  BUILTIN_TOOLS="${TOOLS:-}" FETCH_ALLOW_PRIVATE=true \
  SESSION_KEY="$session_key" DATABASE_URL="postgres://chat:chat@127.0.0.1:5432/$3" BIND_ADDR="127.0.0.1:$1" LM_API_URL="$2" \
    LM_MAX_TOKENS=1500 MAX_CONCURRENT_GENERATIONS=2 TRUST_PROXY_HEADERS=true DATA_DIR="$work/data-$1" RUST_LOG=warn \
    "$app_bin" >"$work/app-$1.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$1/readyz" "app on $1"
}
start_app 13000 http://127.0.0.1:18080/v1 chat_e2e
TOOLS=fetch_url start_app 13001 http://127.0.0.1:18090/v1 chat_e2e
# The first command's app: no LM_API_URL (the embedded engine, SmolLM2), SQLite in its data dir,
# and a second model in its library's folder (data/models, the default LM_MODELS_DIR).
mkdir -p "$work/data-13002/models"
ln -sf "${SHARED_DIR:-$root/../shared}/models/llama-2-tiny-random.gguf" "$work/data-13002/models/tiny-random.gguf"
# The operator (ADMIN_TOKEN) may download from the stand-in hub started below.
LM_MODEL_PATH="${SHARED_DIR:-$root/../shared}/models/SmolLM2-135M-Instruct.Q4_1.gguf" LM_MAX_TOKENS=400 LM_THREADS=2 \
  ADMIN_TOKEN=e2e-operator-token-0123456789 HF_ENDPOINT=http://127.0.0.1:18095 HF_HUB_CACHE="$work/hf-cache-13002" \
  LM_SEED=7 MAX_CONCURRENT_GENERATIONS=2 TRUST_PROXY_HEADERS=true BIND_ADDR=127.0.0.1:13002 \
  DATA_DIR="$work/data-13002" RUST_LOG=warn "$app_bin" >"$work/app-13002.log" 2>&1 &
pids+=($!)
wait_http http://127.0.0.1:13002/readyz "app on 13002 (embedded)"
# A first run: no model anywhere, so the app downloads SmolLM2 from a stand-in hub (paced to
# about 5 s once the test lets it go on) into an empty Hugging Face cache, serving pages meanwhile.
MODEL_FILE="${SHARED_DIR:-$root/../shared}/models/SmolLM2-135M-Instruct.Q4_1.gguf" RATE=20000000 PORT=18095 \
  LISTED_FILE=smollm2-135m-instruct-q4_1.gguf node e2e/fake-hub.mjs &
pids+=($!)
wait_http http://127.0.0.1:18095/health fake-hub
HF_ENDPOINT=http://127.0.0.1:18095 HF_HUB_CACHE="$work/hf-cache" LM_MODEL_REPO=HuggingFaceTB/SmolLM2-135M-Instruct-GGUF \
  LM_MODEL_FILE=smollm2-135m-instruct-q4_1.gguf LM_MAX_TOKENS=64 LM_THREADS=2 MAX_CONCURRENT_GENERATIONS=1 \
  BIND_ADDR=127.0.0.1:13003 DATA_DIR="$work/data-13003" RUST_LOG=warn "$app_bin" >"$work/app-13003.log" 2>&1 &
pids+=($!)
wait_http http://127.0.0.1:13003/readyz "app on 13003 (first run)"

# Our nginx.conf, as it is, but for the upstream address, the listen port and the pid file.
start_nginx() { # listen port, app port
  dir="$work/nginx-$1"
  mkdir -p "$dir"
  sed -e "s/server app:3000/server 127.0.0.1:$2/" \
      -e "s/listen 80;/listen 127.0.0.1:$1;/" -e '/listen \[::\]:80;/d' \
      -e "s|pid /tmp/nginx.pid;|pid $dir/nginx.pid;|" nginx.conf >"$dir/nginx.conf"
  nginx -t -q -c "$dir/nginx.conf" -p "$dir"
  nginx -c "$dir/nginx.conf" -p "$dir" -g 'daemon off;' >"$dir/nginx.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$1/healthz" "nginx on $1"
}
start_nginx 18088 13000
start_nginx 18089 13001
start_nginx 18087 13002

# Accounts: an app with AUTH_MODE=oidc (on the slow model) signing in through npm's
# oauth2-mock-server, a provider we did not write; alice is in the admins' group.
PORT=18096 PEOPLE='{"alice": {"groups": ["chat-admins"]}, "bob": {"groups": ["staff"]}}' node e2e/oidc-provider.mjs >"$work/oidc.log" 2>&1 &
pids+=($!)
wait_http http://127.0.0.1:18096/.well-known/openid-configuration "the OpenID provider"
PGPASSWORD=chat psql -h 127.0.0.1 -U chat -d postgres -qc "DROP DATABASE IF EXISTS chat_e2e_accounts" -c "CREATE DATABASE chat_e2e_accounts"
AUTH_MODE=oidc OIDC_ISSUER=http://127.0.0.1:18096 OIDC_CLIENT_ID=chat-e2e OIDC_CLIENT_SECRET=e2e-secret \
  PUBLIC_URL=http://127.0.0.1:18086 ADMIN_GROUPS=chat-admins start_app 13004 http://127.0.0.1:18090/v1 chat_e2e_accounts
start_nginx 18086 13004

export E2E_BASE_URL=http://127.0.0.1:18088 E2E_SLOW_BASE_URL=http://127.0.0.1:18089 E2E_LLAMA_URL=http://127.0.0.1:18080 \
  E2E_EMBEDDED_BASE_URL=http://127.0.0.1:18087 E2E_FIRST_RUN_URL=http://127.0.0.1:13003 \
  E2E_FAKE_HUB_URL=http://127.0.0.1:18095 E2E_ACCOUNTS_URL=http://127.0.0.1:18086 E2E_OIDC_URL=http://127.0.0.1:18096
# E2E_TESTS narrows the run to some files (e.g. E2E_TESTS=tests/features.test.mjs), for work on them.
if ! (cd e2e && if [ -n "${E2E_TESTS:-}" ]; then node --test --test-concurrency=1 $E2E_TESTS; else npm test; fi); then
  for log in "$work"/*.log "$work"/nginx-*/nginx.log; do echo "--- $log"; tail -n 30 "$log"; done
  exit 1
fi
