#!/usr/bin/env bash
# Builds a kind node image here, from what scripts/k8s/build-kubernetes.sh and scripts/base-images.sh
# made, because `kind build node-image` pulls kind's base image and the etcd, CoreDNS, pause,
# kindnetd and local-path images from registries that cannot be reached here.
#   1. the control plane images, named as kubeadm of this release asks for them
#      (`kubeadm config images list`): kube-apiserver, kube-controller-manager, kube-scheduler,
#      kube-proxy, etcd, coredns, pause; each is our Debian base plus the binary built from source
#   2. the node: Debian + systemd + Debian's containerd and runc, our kubelet, kubeadm, kubectl,
#      crictl and CNI plugins, the files of scripts/k8s/node/rootfs (entrypoint, units, containerd
#      config whose CNI template gives pods a bridge network without a CNI daemon)
#   3. the images of (1) imported into the node's containerd (namespace k8s.io), then committed:
#      kubeadm finds them and pulls nothing
# Result: $NODE_IMAGE (default orderflow.local/kind-node:<kubernetes version>), skipped when it
# exists with the same stamp (label orderflow.stamp: the pieces' stamps, the base images' ids, the
# files of scripts/k8s/node and this script).
# Usage: scripts/k8s/node-image.sh            (prints NODE_IMAGE=... on stdout)
# Environment: NODE_IMAGE, IMAGE_NS (orderflow.local), ORDERFLOW_CACHE, K8S_CACHE, DOCKER_HOST
#   (default: scripts/docker.sh env), NODE_POD_DNS (none | docker: see below).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -n "${DOCKER_HOST:-}" ] || eval "$(scripts/docker.sh env)"
export DOCKER_BUILDKIT=0   # the classic builder: BuildKit would pull its frontend and our bases are local

say() { echo "node-image: $*" >&2; }
die() { say "$*"; exit 1; }

eval "$(scripts/k8s/build-kubernetes.sh --print-env)"
for d in "$K8S_BIN" "$ETCD_BIN" "$COREDNS_BIN" "$PAUSE_BIN" "$CRICTL_BIN" "$CNI_BIN"; do
  [ -f "$(dirname "$d")/.stamp" ] || die "$(dirname "$d") is not built: run scripts/k8s/build-kubernetes.sh"
done
mapfile -t BASES < <(scripts/base-images.sh --list)   # slim, iptables, node
for b in "${BASES[@]}"; do docker image inspect "$b" >/dev/null 2>&1 || die "no base image $b: run scripts/base-images.sh"; done
SLIM=${BASES[0]} IPTABLES=${BASES[1]} NODE_BASE=${BASES[2]}

K8S_VERSION=$("$K8S_BIN/kubeadm" version -o short)
NS=${IMAGE_NS:-orderflow.local}
NODE_IMAGE=${NODE_IMAGE:-$NS/kind-node:$K8S_VERSION}
# Where CoreDNS sends names outside the cluster: "none" (nowhere: no DNS traffic leaves the node, as
# this machine's network rules ask) or "docker" (Docker's embedded DNS, as kind's own nodes do).
POD_DNS=${NODE_POD_DNS:-none}
case "$POD_DNS" in none|docker) ;; *) die "NODE_POD_DNS must be none or docker, not '$POD_DNS'" ;; esac

stamp=$( { cat "$(dirname "$K8S_BIN")/.stamp" "$(dirname "$ETCD_BIN")/.stamp" "$(dirname "$COREDNS_BIN")/.stamp" \
             "$(dirname "$PAUSE_BIN")/.stamp" "$(dirname "$CRICTL_BIN")/.stamp" "$(dirname "$CNI_BIN")/.stamp"
           for b in "${BASES[@]}"; do docker image inspect --format '{{.Id}}' "$b"; done
           (cd scripts/k8s/node && find . -type f | LC_ALL=C sort | xargs sha256sum)
           sha256sum "$0" | cut -d' ' -f1; echo "pod-dns=$POD_DNS"; } | sha256sum | cut -c1-16)
have=$(docker image inspect --format '{{index .Config.Labels "orderflow.stamp"}}' "$NODE_IMAGE" 2>/dev/null || true)
if [ "$have" = "$stamp" ]; then say "$NODE_IMAGE present (stamp $stamp)"; echo "NODE_IMAGE=$NODE_IMAGE"; exit 0; fi

t_all=$SECONDS
default_cache=/var/cache/orderflow
[ -w "$default_cache" ] || default_cache=$HOME/.cache/orderflow
STAGE=$(mktemp -d "${ORDERFLOW_CACHE:-$default_cache}/node-image.XXXXXX")
build_cid=""
cleanup() { [ -n "$build_cid" ] && docker rm -f -v "$build_cid" >/dev/null 2>&1; rm -rf "$STAGE"; }
trap cleanup EXIT

# 1. control plane images. kubeadm names them (its registry, its tags); we build and tag to match.
mapfile -t WANT < <("$K8S_BIN/kubeadm" config images list --kubernetes-version "$K8S_VERSION" 2>/dev/null)
[ ${#WANT[@]} -ge 6 ] || die "kubeadm config images list gave: ${WANT[*]}"
PAUSE_IMAGE=""
component_image() {   # IMAGE BASE BINARY_PATH ENTRYPOINT_PATH
  local image=$1 base=$2 bin=$3 entry=$4 ctx
  ctx=$STAGE/img-$(basename "$3")
  mkdir -p "$ctx"; cp "$bin" "$ctx/"
  { [ "$base" = scratch ] && echo "FROM scratch" || echo "FROM $base"
    echo "COPY $(basename "$bin") $entry"
    echo "ENTRYPOINT [\"$entry\"]"
    echo "LABEL org.opencontainers.image.source=\"orderflow scripts/k8s/node-image.sh: built from source\""
  } >"$ctx/Dockerfile"
  docker build -q -t "$image" "$ctx" >"$ctx.log" 2>&1 || { cat "$ctx.log" >&2; die "docker build $image failed"; }
  say "  $image  ($(docker image inspect --format '{{.Size}}' "$image" | awk '{printf "%d MiB", $1/1048576}'))"
}
say "building the control plane images for $K8S_VERSION"
t0=$SECONDS
for image in "${WANT[@]}"; do
  name=${image##*/}; name=${name%%:*}
  case "$name" in
    kube-apiserver|kube-controller-manager|kube-scheduler)
      component_image "$image" "$SLIM" "$K8S_BIN/$name" "/usr/local/bin/$name" ;;
    kube-proxy) component_image "$image" "$IPTABLES" "$K8S_BIN/kube-proxy" /usr/local/bin/kube-proxy ;;
    etcd) component_image "$image" "$SLIM" "$ETCD_BIN/etcd" /usr/local/bin/etcd ;;
    coredns) component_image "$image" "$SLIM" "$COREDNS_BIN/coredns" /coredns ;;
    pause) component_image "$image" scratch "$PAUSE_BIN/pause" /pause; PAUSE_IMAGE=$image ;;
    *) die "kubeadm wants an image this script does not build: $image" ;;
  esac
done
[ -n "$PAUSE_IMAGE" ] || die "kubeadm listed no pause image"
say "control plane images built in $((SECONDS - t0))s"

# 2. the node, without images
t0=$SECONDS
say "building the node base ($NODE_BASE + kubelet, kubeadm, kubectl, crictl, CNI plugins)"
mkdir -p "$STAGE/node/bin" "$STAGE/node/cni"
cp -a scripts/k8s/node/rootfs scripts/k8s/node/Dockerfile "$STAGE/node/"
sed "s#@PAUSE_IMAGE@#$PAUSE_IMAGE#" scripts/k8s/node/rootfs/etc/containerd/config.toml.in >"$STAGE/node/rootfs/etc/containerd/config.toml"
rm "$STAGE/node/rootfs/etc/containerd/config.toml.in"
echo "$K8S_VERSION" >"$STAGE/node/rootfs/kind/version"
echo "$POD_DNS" >"$STAGE/node/rootfs/kind/orderflow-pod-dns"
cp "$K8S_BIN/kubelet" "$K8S_BIN/kubeadm" "$K8S_BIN/kubectl" "$CRICTL_BIN/crictl" "$STAGE/node/bin/"
cp "$CNI_BIN"/* "$STAGE/node/cni/"
docker build -t "$NS/kind-node-base:$K8S_VERSION" --build-arg BASE_IMAGE="$NODE_BASE" "$STAGE/node" >"$STAGE/node-build.log" 2>&1 \
  || { tail -30 "$STAGE/node-build.log" >&2; die "docker build of the node base failed"; }
grep -E '^(Kubernetes|v1\.|containerd|runc|crictl)' "$STAGE/node-build.log" | sed 's/^/  /' >&2 || true
say "node base built in $((SECONDS - t0))s"

# 3. preload: the images go into the node's containerd, then the container becomes the image.
t0=$SECONDS
say "importing ${#WANT[@]} images into the node's containerd"
docker save "${WANT[@]}" -o "$STAGE/images.tar"
build_cid=$(docker run -d --privileged --entrypoint sleep "$NS/kind-node-base:$K8S_VERSION" infinity)
docker cp "$STAGE/images.tar" "$build_cid:/images.tar"
docker exec "$build_cid" bash -euc '
  containerd >/tmp/containerd.log 2>&1 & pid=$!
  for i in $(seq 100); do ctr version >/dev/null 2>&1 && break; sleep 0.2; done
  ctr --namespace=k8s.io images import --no-unpack --all-platforms /images.tar >/dev/null \
    || { tail -20 /tmp/containerd.log; exit 1; }
  ctr --namespace=k8s.io images list -q | grep -v "^sha256:" | sed "s/^/  preloaded /"
  kill "$pid"; wait "$pid" || true
  rm -rf /images.tar /tmp/containerd.log /run/containerd /var/lib/containerd/io.containerd.runtime.v2.task' >&2 \
  || die "importing the images into the node failed"
docker stop -t 5 "$build_cid" >/dev/null
docker commit \
  --change 'ENTRYPOINT ["/usr/local/bin/orderflow-node-entrypoint"]' --change 'CMD ["/sbin/init"]' \
  --change "LABEL orderflow.stamp=\"$stamp\" orderflow.kubernetes=\"$K8S_VERSION\"" \
  "$build_cid" "$NODE_IMAGE" >/dev/null
# the build container, the intermediate node base's tag and the node image this one replaces
docker rm -f -v "$build_cid" >/dev/null; build_cid=""
docker rmi "$NS/kind-node-base:$K8S_VERSION" >/dev/null 2>&1 || true
docker image prune -f --filter "label=orderflow.kubernetes" >/dev/null 2>&1 || true
say "$NODE_IMAGE committed in $((SECONDS - t0))s ($(docker image inspect --format '{{.Size}}' "$NODE_IMAGE" | awk '{printf "%d MiB", $1/1048576}')); total $((SECONDS - t_all))s"
echo "NODE_IMAGE=$NODE_IMAGE"
