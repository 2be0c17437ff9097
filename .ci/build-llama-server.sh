#!/usr/bin/env bash
# Builds llama.cpp's llama-server from the source that the PyPI sdist of llama-cpp-python carries
# (no internet here beyond package registries; see DESIGN.md) and caches it under ~/.cache, keyed by
# version. Prints the binary's path on stdout. Idempotent: a cached build is reused.
#
# Built the way llama.cpp's release builds are, and the way the app's embedded engine is
# (llama-cpp-2's dynamic-backends): shared libraries, ggml's backends loaded at run time, one CPU
# build per instruction level (GGML_CPU_ALL_VARIANTS), the best the CPU runs chosen at start. So
# `bench engine` compares like with like. The libraries and backends sit beside the binary, which
# finds them through its rpath ($ORIGIN) and ggml's search of the executable's folder. The rpath
# is the old kind (DT_RPATH, --disable-new-dtags), which LD_LIBRARY_PATH cannot override: under
# `cargo test` that names the embedded engine's own libllama/libggml (another llama.cpp), and a
# llama-server that loaded those crashed on its first request.
set -euo pipefail
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/llama-server/$VERSION-cpu-variants-rpath"
BIN="$CACHE/bin/llama-server"
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi

command -v cmake >/dev/null || { apt-get update -qq >&2; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >&2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pip download -q --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -d "$work" >&2
tar -xzf "$work"/llama_cpp_python-"$VERSION".tar.gz -C "$work"
src="$work/llama_cpp_python-$VERSION/vendor/llama.cpp"
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
cmake -S "$src" -B "$work/build" -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DBUILD_SHARED_LIBS=ON -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON \
  -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON -DCMAKE_INSTALL_RPATH='$ORIGIN' \
  -DCMAKE_EXE_LINKER_FLAGS=-Wl,--disable-new-dtags -DCMAKE_SHARED_LINKER_FLAGS=-Wl,--disable-new-dtags \
  -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" >&2
# The CPU builds are modules nothing links against: name them, or only llama-server's own
# libraries are built.
variants=$(cmake --build "$work/build" --target help | sed -n 's/^\.\.\. \(ggml-cpu-[a-z0-9_]*\)$/\1/p')
[ -n "$variants" ] || { echo "no ggml-cpu-* targets in the build" >&2; exit 1; }
# shellcheck disable=SC2086
cmake --build "$work/build" --target llama-server $variants -j"$(nproc)" >&2
mkdir -p "$CACHE/tmp"
cp -a "$work/build/bin/llama-server" "$work/build/bin/"*.so* "$CACHE/tmp/"
"$CACHE/tmp/llama-server" --version >&2
rm -rf "$CACHE/bin" && mv "$CACHE/tmp" "$CACHE/bin"
echo "$BIN"
