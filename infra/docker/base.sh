#!/usr/bin/env bash
# Builds the base image localhost/vidx-base:bookworm from Debian's own packages with debootstrap,
# so no image is pulled from a registry. Idempotent: an existing base image is kept.
# Needs root, buildah and debootstrap (the Makefile's image-tools target installs them).
set -euo pipefail
image=${BASE_IMAGE:-localhost/vidx-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=${DEBIAN_SUITE:-bookworm}
if buildah inspect --type image "$image" >/dev/null 2>&1; then
  echo ">> base image $image exists"
  exit 0
fi
ctr=$(buildah from scratch)
# Remove the working container on any exit: a failed debootstrap must not leave a rootfs behind.
trap 'buildah umount "$ctr" >/dev/null 2>&1 || true; buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
root=$(buildah mount "$ctr")
echo ">> debootstrap $suite from $mirror into $root"
debootstrap --variant=minbase --include=ca-certificates "$suite" "$root" "$mirror" >/dev/null
# Slim like the official debian:*-slim: apt lists and caches are not part of the base.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
buildah config --env LANG=C.UTF-8 --cmd /bin/bash "$ctr"
buildah commit --rm "$ctr" "$image" >/dev/null
trap - EXIT
echo ">> base image $image: $(buildah images --format '{{.Size}}' "$image")"
