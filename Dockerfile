# syntax=docker/dockerfile:1
# ringback's container image. Build from the repository root:
#   docker build -t ringback:dev .
# Run (configuration from the environment, RINGBACK__SECTION__KEY, or a file at
# RINGBACK_CONFIG):
#   docker run -p 8080:8080 -e RINGBACK__DATABASE__URL=postgres://… ringback:dev
# No HEALTHCHECK: orchestrators probe /healthz (liveness) and /readyz (readiness) themselves.

ARG RUST_VERSION=1.95
ARG DEBIAN=bookworm

# --- build: dependencies first, in their own layer (rebuilt only when Cargo.toml/Cargo.lock
# change), then the crate itself.
FROM rust:${RUST_VERSION}-slim-${DEBIAN} AS build
# librdkafka is built from source by rdkafka-sys (make, g++); OpenSSL for Kafka's SSL and SASL.
# Packages are not pinned (DL3008): the base image's tag pins the Debian release, and within it
# a rebuild should take the release's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ make pkg-config libssl-dev python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY benches benches
RUN mkdir -p src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --bin ringback \
 && rm -rf src target/release/.fingerprint/ringback-*
COPY src src
RUN cargo build --release --locked --bin ringback \
 && cp target/release/ringback /usr/local/bin/ringback

# --- runtime: Debian slim with the CA bundle (TLS to managed PostgreSQL and Kafka) and
# libssl (librdkafka), as an unprivileged user.
FROM debian:${DEBIAN}-slim
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 ringback \
 && useradd --system --uid 10001 --gid ringback --home-dir /var/lib/ringback --shell /usr/sbin/nologin ringback \
 && mkdir -p /var/lib/ringback /etc/ringback \
 && chown ringback:ringback /var/lib/ringback
COPY --from=build /usr/local/bin/ringback /usr/local/bin/ringback
COPY config/production.example.toml /etc/ringback/production.example.toml
# Listen on every interface inside the container; keep the spool on the state volume.
ENV RINGBACK__HTTP__ADDR=0.0.0.0:8080 \
    RINGBACK__SPOOL__PATH=/var/lib/ringback/spool.db \
    RINGBACK__LOG__FORMAT=json
WORKDIR /var/lib/ringback
VOLUME ["/var/lib/ringback"]
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["ringback"]
CMD ["serve"]
