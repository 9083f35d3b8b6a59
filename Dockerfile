# Builds the oms binary and runs it on a slim Debian (librdkafka links OpenSSL for Kafka TLS and SASL).
FROM rust:1.89-bookworm AS build
WORKDIR /src
# npm installs the playground's pinned browser assets (build.rs), which the binary embeds.
RUN apt-get update && apt-get install -y --no-install-recommends cmake nodejs npm && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
COPY migrations migrations
COPY web-playground web-playground
RUN cargo build --release --locked --bin oms

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 oms
COPY --from=build /src/target/release/oms /usr/local/bin/oms
USER oms
ENV LISTEN_ADDR=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["oms"]
CMD ["serve"]
