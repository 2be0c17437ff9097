# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, run in a small Debian image as a non-root user.
FROM rust:1.95-bookworm AS build
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
RUN touch app/src/main.rs app/src/lib.rs migration/src/main.rs migration/src/lib.rs \
    && cargo build --release --locked -p app -p migration

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /srv/app --create-home app
WORKDIR /srv/app
COPY --from=build /src/target/release/app /usr/local/bin/app
COPY --from=build /src/target/release/migration /usr/local/bin/migration
COPY templates templates
COPY static static
USER app
ENV BIND_ADDR=0.0.0.0:3000 \
    DATA_DIR=/srv/app/data \
    TEMPLATE_DIR=/srv/app/templates \
    STATIC_DIR=/srv/app/static \
    RUST_LOG=info
EXPOSE 3000
# The app applies pending migrations at start-up; `migration up` does it by hand.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["app", "--healthcheck"]
CMD ["app"]
