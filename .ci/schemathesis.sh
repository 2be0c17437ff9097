#!/usr/bin/env bash
# schemathesis (PyPI) against the live /api/openapi.json of the release app: every operation,
# with a bearer token; fails on any server error or any response that the document does not
# describe (status, content type, schema, headers). Installs schemathesis into ~/.cache once.
set -euo pipefail
cd "$(dirname "$0")/.."
version=4.32.5
venv="$HOME/.cache/chat-app/schemathesis-$version"
if ! [ -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==$version"
fi
app_bin="$CARGO_TARGET_DIR/release/app"
work=$(mktemp -d)
port=13050
# The model server is unreachable on purpose: replies end at once with a readable error, so every
# stream is finite and the API's error paths are exercised too.
BIND_ADDR="127.0.0.1:$port" DATA_DIR="$work" LM_API_URL=http://127.0.0.1:9/v1 RATE_LIMITS=off \
  RUST_LOG=warn "$app_bin" >"$work/app.log" 2>&1 &
app_pid=$!
trap 'kill "$app_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/readyz" && break; sleep 0.1; done
token=$(curl -fsS -X POST "http://127.0.0.1:$port/api/v1/tokens" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
(cd "$work" && timeout 600 "$venv/bin/schemathesis" run "http://127.0.0.1:$port/api/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
  -H "Authorization: Bearer $token" \
  --max-examples 40 --seed 42 --request-timeout 10 --generation-database none --no-color) || {
  echo "--- app log"; tail -n 50 "$work/app.log"; exit 1
}
