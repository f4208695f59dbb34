#!/usr/bin/env bash
# Entry point of the vidx Spark image, following the contract of Apache Spark's Kubernetes images:
# `driver ARGS` runs spark-submit in client mode inside the driver pod, `executor` starts the
# executor backend from the SPARK_* variables the driver puts in each executor pod, and anything
# else runs as given (`vidx demo`, `bash`, ...).
set -euo pipefail

# Spark looks the user up; OpenShift-style random UIDs have no passwd entry.
if ! getent passwd "$(id -u)" >/dev/null 2>&1 && [ -w /etc/passwd ]; then
  echo "$(id -u):x:$(id -u):$(id -g):spark:${HOME:-/tmp}:/bin/false" >> /etc/passwd
fi

classpath="${SPARK_CONF_DIR:-$SPARK_HOME/conf}:${SPARK_HOME}/jars/*${SPARK_EXTRA_CLASSPATH:+:$SPARK_EXTRA_CLASSPATH}"
case "${1:-}" in
  driver)
    shift
    cmd=("$SPARK_HOME/bin/spark-submit" --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS}"
         --deploy-mode client "$@")
    ;;
  executor)
    shift
    # SPARK_JAVA_OPT_0..N carry the executor's JVM options, in order.
    mapfile -t java_opts < <(env | grep '^SPARK_JAVA_OPT_' | sort -t_ -k4 -n | sed 's/^[^=]*=//')
    cmd=("$JAVA_HOME/bin/java" "${java_opts[@]}" "-Xms${SPARK_EXECUTOR_MEMORY}" "-Xmx${SPARK_EXECUTOR_MEMORY}"
         -cp "$classpath" org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend
         --driver-url "$SPARK_DRIVER_URL" --executor-id "$SPARK_EXECUTOR_ID" --cores "$SPARK_EXECUTOR_CORES"
         --app-id "$SPARK_APPLICATION_ID" --hostname "$SPARK_EXECUTOR_POD_IP"
         --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" --podName "${SPARK_EXECUTOR_POD_NAME:-}")
    ;;
  *)
    cmd=("$@")
    ;;
esac
exec /usr/bin/tini -s -- "${cmd[@]}"
