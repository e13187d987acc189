#!/usr/bin/env bash
# Builds the vajra-peer image FROM scratch: the release binary plus the few
# shared libraries it links (no base image is pulled).
#
#   bash deploy/docker/build-image.sh [TAG]      # default tag: vajra-peer:dev
set -euo pipefail
cd "$(dirname "$0")/../.."
TAG=${1:-vajra-peer:dev}

# One build at a time: tests that start compose clusters side by side each
# call this, and one must not clear the context another is sending.
mkdir -p target
exec 9> "target/docker.lock"
flock 9
cargo build --release --quiet
CONTEXT=target/docker
rm -rf "$CONTEXT"
mkdir -p "$CONTEXT/rootfs/usr/local/bin" "$CONTEXT/rootfs/tmp"
cp target/release/vajra-peer "$CONTEXT/rootfs/usr/local/bin/"
strip "$CONTEXT/rootfs/usr/local/bin/vajra-peer" 2>/dev/null || true
# Every library the dynamic linker resolves, at the same path.
for lib in $(ldd target/release/vajra-peer | grep -o '/[^ ]*'); do
  mkdir -p "$CONTEXT/rootfs$(dirname "$lib")"
  cp -L "$lib" "$CONTEXT/rootfs$lib"
done
cp deploy/docker/Dockerfile "$CONTEXT/"
docker build --quiet -t "$TAG" "$CONTEXT" > /dev/null
echo "built $TAG ($(du -sh "$CONTEXT/rootfs" | cut -f1))"
