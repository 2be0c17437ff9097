#!/usr/bin/env bash
# The test model whose chat template knows tools: SmolLM2-135M-Instruct from the shared folder
# with its GGUF chat template replaced by testkit/fixtures/llama-server-tools/template.jinja
# (Qwen 2.5's, `<tool_call>`), written with the gguf package's gguf-new-metadata (PyPI, pinned,
# in a virtualenv under ~/.cache once). Made once per template; prints the copy's path.
# Used by the llama-server tool-call test (app/tests/it/llama_server_tools.rs) and record.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared=${SHARED_DIR:-$root/../shared}
base=${BASE_MODEL:-$shared/models/SmolLM2-135M-Instruct.Q4_1.gguf}
template="$root/testkit/fixtures/llama-server-tools/template.jinja"
gguf=0.19.0
venv="$HOME/.cache/chat-app/gguf-$gguf"
if ! [ -x "$venv/bin/gguf-new-metadata" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q "gguf==$gguf" >&2
fi
sum=$(cat "$base" "$template" | sha256sum | cut -c1-16)
model="$HOME/.cache/chat-app/smollm2-qwen25-tools-$sum.gguf"
if ! [ -s "$model" ]; then
  "$venv/bin/gguf-new-metadata" --force --chat-template-file "$template" "$base" "$model.part" >&2
  mv "$model.part" "$model"
fi
echo "$model"
