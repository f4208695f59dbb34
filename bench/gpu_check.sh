#!/usr/bin/env bash
# The GPU check, on a CUDA machine without network (bench/GPU_CHECK.md): installs the carried wheels
# (.whl/, if any) into /tmp/site, runs bench/gpu_check.py (JSON to $OUT/gpu_check.json, or
# bench/results/), then the CUDA tests in tests/gpu. Bounded: 330 s + 90 s, under 8 minutes with setup
# (about 2 minutes expected on an H200).
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python3}  # the GPU machine's python3 holds CUDA torch
# Skipped when the device command already installed them (bench/GPU_CHECK.md).
if ! "$py" -c "import pydantic, open_clip, av" 2>/dev/null && compgen -G "$repo/.whl/*.whl" >/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$repo"/.whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH="$repo/lib:$repo:${PYTHONPATH:-}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
timeout 330 "$py" "$repo/bench/gpu_check.py" "$@"
check=$?
junit=${OUT:+--junitxml=$OUT/gpu_tests.xml}
timeout 90 "$py" -m pytest -q -p no:cacheprovider "$repo/tests/gpu" ${junit:-}
tests=$?
echo "gpu_check exit $check, tests/gpu exit $tests"
exit $(( check != 0 || tests != 0 ))
