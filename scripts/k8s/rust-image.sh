#!/usr/bin/env bash
# orderflow.local/rust:bookworm: what the public rust:<version>-bookworm image is to the
# Dockerfile's build stage, made on this machine since no registry is reachable:
#   - the `build` base of scripts/base-images.sh: Debian bookworm + build-essential, pkg-config,
#     zlib1g-dev (so the build stage's apt-get install finds them installed and needs no network);
#   - this machine's Rust toolchain (`rustc --print sysroot`: bin/ and lib/, not the docs) at
#     /usr/local/rust;
#   - a cargo home (/usr/local/cargo) whose registry holds every crate of Cargo.lock (`cargo fetch
#     --locked` from crates.io into $ORDERFLOW_CACHE/rust-image/cargo-home), with
#     CARGO_NET_OFFLINE=true: the Dockerfile's `cargo build --locked` runs without network
#     (scripts/k8s/images.sh builds it with --network none).
# Skipped when the image carries the same stamp (toolchain version, Cargo.lock, this recipe).
# Usage: scripts/k8s/rust-image.sh   (prints nothing on stdout; IMAGE=... to name it otherwise)
set -euo pipefail
cd "$(dirname "$0")/../.."

RECIPE=1
IMAGE=${IMAGE:-orderflow.local/rust:bookworm}
default_cache=/var/cache/orderflow
if ! mkdir -p "$default_cache" 2>/dev/null || [ ! -w "$default_cache" ]; then default_cache=$HOME/.cache/orderflow; fi
CACHE=${ORDERFLOW_CACHE:-$default_cache}
[ -n "${DOCKER_HOST:-}" ] || eval "$(scripts/docker.sh env)"
export DOCKER_BUILDKIT=0

say() { echo "rust-image: $*" >&2; }
die() { say "$*"; exit 1; }

sysroot=$(rustc --print sysroot) || die "no rustc on PATH (Rust 1.85+ is needed)"
version=$(rustc --version)
stamp="$version; Cargo.lock $(sha256sum Cargo.lock | cut -c1-16); recipe $RECIPE"
have=$(docker image inspect --format '{{index .Config.Labels "orderflow.stamp"}}' "$IMAGE" 2>/dev/null || true)
if [ "$have" = "$stamp" ]; then say "$IMAGE present ($stamp)"; exit 0; fi

t0=$SECONDS
base=$(scripts/base-images.sh --name build)
docker image inspect "$base" >/dev/null 2>&1 || scripts/base-images.sh build >&2

home=$CACHE/rust-image/cargo-home
mkdir -p "$home"
say "cargo fetch --locked into $home (the crates of Cargo.lock)"
CARGO_HOME=$home cargo fetch --locked >&2

ctx=$(mktemp -d "$CACHE/rust-image-ctx.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/rust" "$ctx/cargo"
cp -a "$sysroot/bin" "$sysroot/lib" "$ctx/rust/"
rm -rf "$ctx/rust/lib/rustlib/src" "$ctx/rust/lib/rustlib/"*/analysis
cp -a "$home/registry" "$ctx/cargo/"
rm -rf "$ctx/cargo/registry/src"   # unpacked again from registry/cache when building
cat >"$ctx/Dockerfile" <<EOF
FROM $base
COPY rust /usr/local/rust
COPY cargo /usr/local/cargo
ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    CARGO_HOME=/usr/local/cargo CARGO_NET_OFFLINE=true
RUN rustc --version && cargo --version
LABEL orderflow.stamp="$stamp"
EOF
say "docker build $IMAGE ($version, $(du -sm "$ctx" | cut -f1) MiB)"
docker build -t "$IMAGE" "$ctx" >"$CACHE/rust-image.log" 2>&1 || { tail -20 "$CACHE/rust-image.log" >&2; die "docker build failed"; }
say "$IMAGE built in $((SECONDS - t0))s"
