# syntax=docker/dockerfile:1
# nacos-reconciler: a statically linked binary (x86_64 musl; TLS is rustls + ring, no OpenSSL) on a
# distroless base that holds nothing else. tests/run.sh builds the same binary the same way and checks
# that it is static, and lints this file.
#
#   docker build -t nacos-reconciler:dev .

FROM rust:1-bookworm AS build

ARG TARGET=x86_64-unknown-linux-musl

# musl-tools: musl-gcc, for the C and assembly parts of ring.
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add "${TARGET}"

WORKDIR /src

# Dependencies first, in a layer of their own: rebuilt only when Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./

RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --target "${TARGET}" \
    && rm -rf src

COPY src ./src

# The dummy build above left fresh-looking artifacts of this crate; touching the sources forces a rebuild.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --target "${TARGET}" \
    && cp "target/${TARGET}/release/nacos-reconciler" /nacos-reconciler

FROM gcr.io/distroless/static-debian12:nonroot

LABEL org.opencontainers.image.title="nacos-reconciler" \
      org.opencontainers.image.description="Takes Nacos instances offline when their Kubernetes pod or node is gone" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=build /nacos-reconciler /nacos-reconciler

USER 65532:65532

# /metrics, /healthz, /readyz
EXPOSE 8080

ENTRYPOINT ["/nacos-reconciler"]

CMD ["run"]
