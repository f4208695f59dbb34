#!/usr/bin/env bash
# Spark resource discovery script for GPUs (spark.executor.resource.gpu.discoveryScript).
# Prints the GPUs this container sees as {"name": "gpu", "addresses": ["0", "1", ...]}; with the
# NVIDIA device plugin these are exactly the GPUs Kubernetes allocated to the pod.
set -euo pipefail
indices=$(nvidia-smi --query-gpu=index --format=csv,noheader)
addresses=""
while read -r idx; do
  idx=${idx//[[:space:]]/}
  [ -z "$idx" ] && continue
  case "$idx" in
    *[!0-9]*) echo "gpu-discovery: unexpected GPU index '$idx' from nvidia-smi" >&2; exit 1 ;;
  esac
  addresses+="${addresses:+,}\"$idx\""
done <<< "$indices"
printf '{"name": "gpu", "addresses": [%s]}\n' "$addresses"
