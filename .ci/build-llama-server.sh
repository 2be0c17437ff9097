#!/usr/bin/env bash
# Builds llama.cpp's llama-server from the source that the PyPI sdist of llama-cpp-python carries
# (no internet here beyond package registries; see DESIGN.md) and caches it under ~/.cache, keyed by
# version. Prints the binary's path on stdout. Idempotent: a cached build is reused.
set -euo pipefail
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/llama-server/$VERSION"
BIN="$CACHE/bin/llama-server"
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi

command -v cmake >/dev/null || { apt-get update -qq >&2; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >&2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pip download -q --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -d "$work" >&2
tar -xzf "$work"/llama_cpp_python-"$VERSION".tar.gz -C "$work"
src="$work/llama_cpp_python-$VERSION/vendor/llama.cpp"
cmake -S "$src" -B "$work/build" -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DBUILD_SHARED_LIBS=OFF -DCMAKE_BUILD_TYPE=Release >&2
cmake --build "$work/build" --target llama-server -j"$(nproc)" >&2
mkdir -p "$CACHE/bin"
cp "$work/build/bin/llama-server" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
echo "$BIN"
