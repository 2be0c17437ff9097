# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, run in a small Debian image as a non-root user.
# The image includes the embedded engine (llama.cpp, built by the llama-cpp-sys-2 crate with
# cmake, clang and libclang), so `docker run -p 3000:3000 -v chat-data:/data <image>` alone is a
# working chat: the model downloads into the volume on first start. compose sets LM_API_URL
# and uses llama-server instead.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang libclang-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY app/Cargo.toml app/Cargo.toml
COPY migration/Cargo.toml migration/Cargo.toml
# Build the dependencies first, in their own layer, so code changes rebuild only our crates.
RUN mkdir -p app/src migration/src \
    && echo 'fn main() {}' > app/src/main.rs && touch app/src/lib.rs \
    && echo 'fn main() {}' > migration/src/main.rs && touch migration/src/lib.rs \
    && cargo build --release --locked -p app -p migration \
    && rm -rf app/src migration/src
COPY app app
COPY migration migration
# Built into the binary (include_dir).
COPY templates templates
COPY static static
# Then llama.cpp's shared libraries and backends, collected from where llama-cpp-sys-2 built them.
RUN touch app/src/main.rs app/src/lib.rs migration/src/main.rs migration/src/lib.rs \
    && cargo build --release --locked -p app -p migration \
    && mkdir -p /out/lib /out/backends \
    && cp -a target/release/build/llama-cpp-sys-2-*/out/lib/*.so* /out/lib/ \
    && cp target/release/build/llama-cpp-sys-2-*/out/backends/*.so /out/backends/

# The embedded engine on an NVIDIA GPU: `docker build --target cuda .` (compose.gpu.yaml). The
# same app built with the `cuda` feature in NVIDIA's CUDA image; the driver is the host's (the
# NVIDIA Container Toolkit mounts it), so the build links against the toolkit's stub.
FROM nvidia/cuda:12.6.3-devel-ubuntu24.04 AS build-cuda
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl build-essential \
    cmake clang libclang-dev \
    && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:$PATH \
    LIBRARY_PATH=/usr/local/cuda/lib64/stubs
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain 1.95.0
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY app app
COPY migration migration
COPY templates templates
COPY static static
RUN cargo build --release --locked -p app -p migration --features app/cuda \
    && mkdir -p /out/lib /out/backends \
    && cp -a target/release/build/llama-cpp-sys-2-*/out/lib/*.so* /out/lib/ \
    && cp target/release/build/llama-cpp-sys-2-*/out/backends/*.so /out/backends/

FROM nvidia/cuda:12.6.3-runtime-ubuntu24.04 AS cuda
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /srv/app --create-home app \
    && mkdir /data && chown app /data
WORKDIR /srv/app
COPY --from=build-cuda /src/target/release/app /usr/local/bin/app
COPY --from=build-cuda /src/target/release/migration /usr/local/bin/migration
# As in the CPU image; the backends folder also holds libggml-cuda.so.
COPY --from=build-cuda /out/lib/ /usr/local/lib/
COPY --from=build-cuda /out/backends/ /usr/local/lib/chat-app/backends/
RUN ldconfig
ENV LM_BACKENDS_DIR=/usr/local/lib/chat-app/backends
USER app
ENV BIND_ADDR=0.0.0.0:3000 \
    DATA_DIR=/data \
    HF_HOME=/data/huggingface \
    RUST_LOG=info
VOLUME /data
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["app", "--healthcheck"]
CMD ["app"]

# The default target: the CPU image.
FROM debian:bookworm-slim AS cpu
# libgomp1: llama.cpp's OpenMP threads.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /srv/app --create-home app \
    && mkdir /data && chown app /data
WORKDIR /srv/app
COPY --from=build /src/target/release/app /usr/local/bin/app
COPY --from=build /src/target/release/migration /usr/local/bin/migration
# llama.cpp's shared libraries, and its CPU builds: the app runs the best one this CPU really
# runs (any x86-64, AVX2 or not; AVX-512 where it works), so the image assumes no CPU level.
COPY --from=build /out/lib/ /usr/local/lib/
COPY --from=build /out/backends/ /usr/local/lib/chat-app/backends/
RUN ldconfig
ENV LM_BACKENDS_DIR=/usr/local/lib/chat-app/backends
USER app
# One volume holds the SQLite database, the session key and the downloaded model.
ENV BIND_ADDR=0.0.0.0:3000 \
    DATA_DIR=/data \
    HF_HOME=/data/huggingface \
    RUST_LOG=info
VOLUME /data
EXPOSE 3000
# The app applies pending migrations at start-up; `migration up` does it by hand.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["app", "--healthcheck"]
CMD ["app"]
