#!/usr/bin/env bash
# spark-submit settings for vidx on Kubernetes (no operator needed):
#   K8S_API=https://kube.example:6443 IMAGE=registry/vidx-executor-gpu:0.1.0 \
#     infra/k8s/spark/submit.sh embed s3://bucket/archive
#   ... submit.sh build-index
# The namespace needs the ConfigMap vidx-warehouse, the Secret vidx-s3 and the ServiceAccount
# vidx-spark with its Role (kubectl apply -k infra/k8s/overlays/prod creates all but the Secret).
# embed: GPU executors by stage-level scheduling (dynamic allocation + encode.device=cuda);
# build-index: static GPU executors, one GPU per task. DEVICE=cpu runs both on CPU executors.
set -euo pipefail
job=${1:?usage: submit.sh embed ARCHIVE | build-index [ARGS]}
shift
here=$(cd "$(dirname "$0")" && pwd)
device=${DEVICE:-cuda}
common=(
  --master "k8s://${K8S_API:?set K8S_API, e.g. https://kube.example:6443}"
  --deploy-mode cluster
  --name "vidx-$job"
  --conf "spark.kubernetes.namespace=${NAMESPACE:-vidx}"
  --conf "spark.kubernetes.container.image=${IMAGE:?set IMAGE to the executor image}"
  --conf spark.kubernetes.authenticate.driver.serviceAccountName=vidx-spark
  --conf "spark.kubernetes.driver.podTemplateFile=$here/driver-pod-template.yaml"
  --conf "spark.kubernetes.executor.podTemplateFile=$here/executor-pod-template.yaml"
  --conf spark.kubernetes.driverEnv.VIDX_ENCODE__DEVICE="$device"
  --conf spark.executorEnv.VIDX_ENCODE__DEVICE="$device"
  --conf spark.driver.cores=2 --conf spark.driver.memory=4g
  --conf spark.executor.cores=8 --conf spark.executor.memory=24g --conf spark.executor.memoryOverhead=8g
  --conf spark.task.maxFailures=4
)
gpu_static=(
  --conf spark.executor.resource.gpu.amount=1
  --conf spark.executor.resource.gpu.vendor=nvidia.com
  --conf spark.executor.resource.gpu.discoveryScript=/opt/vidx/bin/gpu-discovery.sh
  --conf spark.task.resource.gpu.amount=1
)
case "$job" in
  embed)
    # No spark.executor.resource.gpu.* here: the GPU ResourceProfile vidx builds for the embed
    # stage carries them (amount 1, vendor nvidia.com, the image's discovery script).
    exec spark-submit "${common[@]}" \
      --conf spark.dynamicAllocation.enabled=true \
      --conf spark.dynamicAllocation.shuffleTracking.enabled=true \
      --conf spark.dynamicAllocation.minExecutors=0 \
      --conf "spark.dynamicAllocation.maxExecutors=${MAX_EXECUTORS:-64}" \
      --conf spark.dynamicAllocation.executorIdleTimeout=120s \
      local:///opt/vidx/jobs/embed.py "$@"
    ;;
  build-index)
    extra=()
    [ "$device" = cuda ] && extra=("${gpu_static[@]}")
    exec spark-submit "${common[@]}" "${extra[@]}" \
      --conf "spark.executor.instances=${EXECUTORS:-4}" \
      local:///opt/vidx/jobs/build_index.py "$@"
    ;;
  *) echo "unknown job $job (embed | build-index)" >&2; exit 2 ;;
esac
