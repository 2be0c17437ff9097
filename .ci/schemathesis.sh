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
# A stand-in model server that lists one model and refuses every completion (as llama-server
# refuses a bad request): replies end at once with a readable error, so every stream is finite and
# the API's error paths are exercised too.
lm_port=13051
python3 - "$lm_port" >"$work/lm.log" 2>&1 <<'PY' &
import http.server, json, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        if self.path == "/v1/models":
            self.send(200, {"object": "list", "data": [{"id": "fuzz-model", "object": "model", "meta": {"n_ctx": 4096}}]})
        else:
            self.send(200, {"status": "ok"})
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send(400, {"error": {"code": 400, "message": "this stand-in does not generate", "type": "invalid_request_error"}})
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
PY
lm_pid=$!
BIND_ADDR="127.0.0.1:$port" DATA_DIR="$work" LM_API_URL="http://127.0.0.1:$lm_port/v1" RATE_LIMITS=off \
  RUST_LOG=warn "$app_bin" >"$work/app.log" 2>&1 &
app_pid=$!
trap 'kill "$app_pid" "$lm_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/readyz" && break; sleep 0.1; done
# The token belongs to a device: signing a device out, or using a link code (which signs out the
# user's own device), can end it, and every later request would be a 401. Those two operations
# are left to app/tests/it/devices.rs.
token=$(curl -fsS -X POST "http://127.0.0.1:$port/api/v1/tokens" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
(cd "$work" && timeout 600 "$venv/bin/schemathesis" run "http://127.0.0.1:$port/api/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
  -H "Authorization: Bearer $token" \
  --exclude-name 'DELETE /api/v1/devices/{id}' --exclude-name 'POST /api/v1/links/{code}' \
  --max-examples 40 --seed 42 --request-timeout 10 --generation-database none --no-color) || {
  echo "--- app log"; tail -n 50 "$work/app.log"; exit 1
}
