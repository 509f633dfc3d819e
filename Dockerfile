# Multi-stage build of the one `activator` binary; every Compose service uses it.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin activator

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /app activator
WORKDIR /app
COPY --from=build /src/target/release/activator /usr/local/bin/activator
COPY Rocket.toml /app/Rocket.toml
USER activator
ENV ROCKET_ADDRESS=0.0.0.0 ROCKET_PORT=8000
EXPOSE 8000
ENTRYPOINT ["activator"]
CMD ["serve"]
