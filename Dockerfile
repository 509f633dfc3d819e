# The one `activator` image; every Compose service runs it (serve, mailbox,
# migrate, purge, user ...).
#
#   docker build -t activator .          (podman: add --format docker, or the
#                                          OCI format drops the HEALTHCHECK)
#
# The base images are build arguments so that a machine without a registry
# can build from local ones (scripts/container-check.sh does); the defaults
# are the public images.
ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src

# The dependencies, in a layer of their own: built from the manifest and the
# lock file with stub sources (and a stub build script, so the build script's
# dependencies are in it too), so a change to the code recompiles only
# activator itself. The stubs' own artifacts go, so the real sources below
# are always compiled afresh whatever their timestamps.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > build.rs \
    && for bench in $(awk '/^\[\[bench\]\]/ { b = 1 } b && /^name *=/ { gsub(/[" ]/, ""); sub(/^name=/, ""); print; b = 0 }' Cargo.toml); do \
         echo 'fn main() {}' > "benches/$bench.rs"; \
       done \
    && cargo build --release --locked --bin activator \
    && rm -rf src build.rs target/release/activator* \
       target/release/.fingerprint/activator-* target/release/build/activator-* \
       target/release/deps/activator-* target/release/deps/libactivator-*

# Only what the binary is built from (.dockerignore admits nothing else):
# docs, tests and scripts do not invalidate the build.
COPY build.rs ./
COPY assets assets
COPY migrations migrations
COPY templates templates
COPY src src
RUN cargo build --release --locked --bin activator

FROM ${RUNTIME_IMAGE}
# CA certificates for TLS to an email API or SMTP server through the system
# trust store (add a private CA on top); a base image that already has them
# needs no download. A fixed, unprivileged user: numeric, so orchestrators
# can tell it is not root.
RUN if ! dpkg -s ca-certificates >/dev/null 2>&1; then \
      apt-get update \
      && apt-get install -y --no-install-recommends ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
    && useradd --system --uid 10001 --user-group --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin activator
WORKDIR /app
COPY Rocket.toml /app/Rocket.toml
COPY --from=build /src/target/release/activator /usr/local/bin/activator
USER 10001:10001
# The API on 8000; Prometheus metrics on 9464, on every interface of the
# container so a scraper on its network reaches them (publish only 8000).
ENV ROCKET_ADDRESS=0.0.0.0 ROCKET_PORT=8000 METRICS_ADDRESS=0.0.0.0:9464
EXPOSE 8000 9464
# /health/live on ROCKET_ADDRESS:ROCKET_PORT (the image has no curl). For a
# container running `mailbox` instead of `serve`, override it:
#   activator healthcheck --url http://127.0.0.1:8025/v1/messages?limit=1
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["activator", "healthcheck"]
# SIGTERM (the default stop signal): serve stops accepting, finishes the
# requests and email sends in flight (about 5 s, Rocket.toml [shutdown]) and
# exits 0.
ENTRYPOINT ["activator"]
CMD ["serve"]
