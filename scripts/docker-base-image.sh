#!/usr/bin/env bash
# Build the Debian base image (with python3) that sandboxes and test servers use,
# from the Debian package archive: no image registry is needed. Cached by tag.
set -euo pipefail
TAG=${1:-mcpgw-sandbox-base:bookworm}
if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "$TAG already present"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap missing: apt-get install -y debootstrap" >&2; exit 1; }
ROOTFS=$(mktemp -d)
trap 'rm -rf "$ROOTFS"' EXIT
debootstrap --variant=minbase --include=python3,ca-certificates bookworm "$ROOTFS" >/dev/null
tar -C "$ROOTFS" -c . | docker import - "$TAG"
echo "built $TAG"
