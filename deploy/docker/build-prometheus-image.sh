#!/usr/bin/env bash
# Builds a Prometheus image FROM scratch around Debian's prometheus binary
# (apt-get install prometheus) and deploy/prometheus/compose.yml, for
# deploy/docker/docker-compose.scale.yml where no image can be pulled.
#
#   bash deploy/docker/build-prometheus-image.sh [TAG]   # default: vajra-prometheus:dev
set -euo pipefail
cd "$(dirname "$0")/../.."
TAG=${1:-vajra-prometheus:dev}
BINARY=$(command -v prometheus) || { echo "no prometheus: apt-get install prometheus" >&2; exit 1; }

CONTEXT=target/docker-prometheus
# One build at a time: tests that start compose clusters side by side each
# call this, and one must not clear the context another is sending.
mkdir -p target
exec 9> "target/docker-prometheus.lock"
flock 9
rm -rf "$CONTEXT"
mkdir -p "$CONTEXT/rootfs/bin" "$CONTEXT/rootfs/etc/prometheus" "$CONTEXT/rootfs/prometheus"
cp -L "$BINARY" "$CONTEXT/rootfs/bin/prometheus"
# Every library the dynamic linker resolves, at the same path (none for a
# static Go binary).
for lib in $(ldd "$BINARY" 2>/dev/null | grep -o '/[^ ]*' || true); do
  mkdir -p "$CONTEXT/rootfs$(dirname "$lib")"
  cp -L "$lib" "$CONTEXT/rootfs$lib"
done
cp deploy/prometheus/compose.yml "$CONTEXT/rootfs/etc/prometheus/prometheus.yml"
cat > "$CONTEXT/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus", "--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.listen-address=0.0.0.0:9090"]
DOCKERFILE
docker build --quiet -t "$TAG" "$CONTEXT" > /dev/null
echo "built $TAG ($(du -sh "$CONTEXT/rootfs" | cut -f1))"
