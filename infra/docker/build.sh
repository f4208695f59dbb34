#!/usr/bin/env bash
# Build a vidx image with buildah (chroot isolation, crun) on the debootstrap base, then smoke-run it.
#   infra/docker/build.sh cpu|gpu|query [--smoke]
# Uses this host's pip setup (pip config: extra-index-url, find-links, constraint, read-only
# mounted into the build when they are local paths) and passes the host's extra CA certificates
# (/usr/local/share/ca-certificates/*.crt) as the EXTRA_CA_PEM build argument.
set -euo pipefail
variant=${1:?usage: build.sh cpu|gpu|query [--smoke]}
smoke=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
base=${BASE_IMAGE:-localhost/vidx-base:bookworm}
case "$variant" in
  cpu) file=executor.Dockerfile; extra=(--build-arg VIDX_EXTRA=cpu); tag=localhost/vidx-executor-cpu:dev ;;
  gpu) file=executor.Dockerfile; extra=(--build-arg VIDX_EXTRA=gpu); tag=localhost/vidx-executor-gpu:dev ;;
  query) file=query.Dockerfile; extra=(); tag=localhost/vidx-query:dev ;;
  *) echo "unknown variant $variant" >&2; exit 2 ;;
esac
BASE_IMAGE=$base bash "$here/base.sh"

# `pip config get` misses /etc/xdg/pip; `pip config list` shows every file and env variable.
pip_cfg() { python3 -m pip config list 2>/dev/null | sed -n "s/^global\.$1='\(.*\)'\$/\1/p" | head -1; }
index_args=() volumes=()
mount_local() {  # a file:// URL or path -> read-only volume at the same place in the build
  local path=${1#file://}
  case "$path" in /*) [ -e "$path" ] && volumes+=(--volume "$path:$path:ro") ;; esac
  return 0
}
for url in ${PIP_EXTRA_INDEX_URL:-$(pip_cfg extra-index-url)}; do
  index_args+=(--extra-index-url "$url"); mount_local "$(dirname "${url#file://}")"
done
for link in ${PIP_FIND_LINKS:-$(pip_cfg find-links)}; do
  index_args+=(--find-links "$link"); mount_local "$link"
done
constraint=${PIP_CONSTRAINT:-$(pip_cfg constraint)}
if [ -n "$constraint" ] && [ -f "$constraint" ]; then
  index_args+=(--constraint "$constraint"); mount_local "$(dirname "$constraint")"
fi
ca_pem=""
for crt in /usr/local/share/ca-certificates/*.crt; do
  [ -f "$crt" ] && ca_pem+="$(cat "$crt")"$'\n'
done

echo ">> building $tag from $file (index args: ${index_args[*]:-none}; ${#volumes[@]} mounts)"
start=$(date +%s)
buildah build --format docker --isolation chroot --runtime crun --layers=false --pull-never \
  --file "$here/$file" --tag "$tag" --build-arg "BASE=$base" "${extra[@]}" \
  --build-arg "PIP_INDEX_ARGS=${index_args[*]}" --build-arg "EXTRA_CA_PEM=$ca_pem" \
  "${volumes[@]}" "$repo"
build_s=$(( $(date +%s) - start ))
size=$(buildah inspect --type image --format '{{.Size}}' "$tag" 2>/dev/null || echo "")
echo ">> built $tag in ${build_s} s; image size $(buildah images --format '{{.Size}}' "$tag")${size:+ ($size bytes)}"
# buildah build leaves dangling intermediate images of failed/older builds: prune them.
buildah rmi --prune >/dev/null 2>&1 || true

if [ "$smoke" = "--smoke" ]; then
  ctr=$(buildah from --pull-never "$tag")
  trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
  echo ">> smoke run: vidx demo --master 'local[2]' inside $tag"
  start=$(date +%s)
  buildah run --isolation chroot --runtime crun "$ctr" -- vidx demo --master 'local[2]' --workdir /tmp/vidx-demo
  echo ">> smoke run passed in $(( $(date +%s) - start )) s"
fi
