#!/usr/bin/env bash
# MCP servers for the tests (app/tests/it/mcp.rs): the protocol's reference server
# mcp-server-time and the Python SDK our misbehaving test server (testkit/fixtures/mcp/) is
# written with, from PyPI, pinned, in a virtualenv under ~/.cache once. Prints its python.
set -euo pipefail
sdk=2.3.0
time_server=2026.10.19
venv="$HOME/.cache/chat-app/mcp-$sdk-$time_server"
if ! [ -x "$venv/bin/mcp-server-time" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q "mcp==$sdk" "mcp-server-time==$time_server" >&2
fi
echo "$venv/bin/python"
