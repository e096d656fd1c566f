# One Dockerfile for every orderflow binary; pick the one with --build-arg SERVICE=...:
#   docker build --build-arg SERVICE=order-service -t orderflow/order-service:dev .
# SERVICE: order-service | inventory-service | analytics-service | replay-controller.
# The build stage does not depend on SERVICE, so building the four images compiles the workspace
# once (Docker reuses the stage). Every image also carries orderflowctl (kubectl exec ... orderflowctl lag).
#
# The base images are build arguments. By default they are the public rust and debian images; a
# machine without a registry passes its own (the test bed: scripts/k8s/images.sh, see
# docs/k8s-test-bed.md). Only classic `docker build` features are used, so BuildKit is optional.
#   RUST_IMAGE     the build stage: Rust 1.85+ on Debian; apt-get installs the C toolchain
#   RUNTIME_IMAGE  the images: Debian slim (glibc), one binary plus orderflowctl
# Dockerfile.prebuilt is this file's runtime stage for binaries built outside Docker (the test bed
# compiles the workspace once, on the host).
ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
# rdkafka-sys builds librdkafka from source (its ./configure + make, static) and links zlib.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY services ./services
RUN cargo build --release --locked \
      -p order-service -p inventory-service -p analytics-service -p replay-controller -p orderflowctl \
 && mkdir -p /out \
 && cp target/release/order-service target/release/inventory-service target/release/analytics-service \
       target/release/replay-controller target/release/orderflowctl /out/ \
 && rm -rf target

# --- runtime (Dockerfile.prebuilt repeats this stage; scripts/k8s/dockerfile_check.py compares them)
FROM ${RUNTIME_IMAGE} AS runtime
ARG SERVICE
RUN test -n "${SERVICE}" || { echo "set --build-arg SERVICE=<binary>"; exit 1; }
COPY --from=build /out/${SERVICE} /out/orderflowctl /usr/local/bin/
# 65532: an unprivileged numeric uid (runAsNonRoot can verify it); no writes to the root fs.
USER 65532:65532
ENV SERVICE=${SERVICE} LOG_FORMAT=json RUST_LOG=info
EXPOSE 8080 8081 8082 8083
# exec: the binary becomes PID 1 and receives SIGTERM directly.
ENTRYPOINT ["/bin/sh", "-c", "exec \"/usr/local/bin/${SERVICE}\" \"$@\"", "--"]
LABEL org.opencontainers.image.source="orderflow" org.opencontainers.image.licenses="Apache-2.0"
