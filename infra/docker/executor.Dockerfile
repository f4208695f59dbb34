# vidx Spark image: the driver and executors of `spark-submit --master k8s://...`, and `vidx` itself.
#
#   VIDX_EXTRA=gpu (default): CUDA torch from PyPI + faiss-gpu-cu12; run on nodes with an NVIDIA
#                             driver (the device plugin mounts it), one GPU per embed task.
#   VIDX_EXTRA=cpu:           faiss-cpu; the CPU-only variant (`make image-cpu` builds it).
#
# No CUDA base image is needed: torch and faiss-gpu ship the CUDA user-space libraries as wheels.
# BASE: any Debian bookworm rootfs (`make image-cpu` makes one with debootstrap; elsewhere
# debian:bookworm-slim). Build args for machines behind a TLS-inspecting proxy or with a local
# wheel index (all optional, build-time only, not left in the image's environment):
#   EXTRA_CA_PEM       PEM text of extra CA certificates for pip (appended to Debian's bundle)
#   PIP_INDEX_ARGS     e.g. "--extra-index-url file:///opt/pypi/simple --find-links /opt/wheels"
#   TORCH_INDEX_URL    e.g. https://download.pytorch.org/whl/cpu for a CPU-only torch
ARG BASE=debian:bookworm-slim
FROM ${BASE}

ARG VIDX_EXTRA=gpu
ARG EXTRA_CA_PEM=""
ARG PIP_INDEX_ARGS=""
ARG TORCH_INDEX_URL=""

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Python 3.11 and Java 17 are bookworm's own; tini reaps Spark's Python workers as PID 1.
# Unpinned on purpose: bookworm point releases replace package versions on the mirror, so exact
# pins stop building; the suite already fixes the majors (Python 3.11, OpenJDK 17).
# hadolint ignore=DL3008
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3.11 python3.11-venv openjdk-17-jre-headless tini procps ca-certificates >/dev/null \
 && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml README.md /opt/vidx/src/
COPY lib /opt/vidx/src/lib
COPY schemas /opt/vidx/src/schemas

# One layer: install, then drop pip's caches and the build tree. The CA bundle with EXTRA_CA_PEM
# lives in /tmp for this step only.
RUN python3.11 -m venv /opt/vidx/venv \
 && cp /etc/ssl/certs/ca-certificates.crt /tmp/pip-ca.pem \
 && if [ -n "${EXTRA_CA_PEM}" ]; then printf '%s\n' "${EXTRA_CA_PEM}" >> /tmp/pip-ca.pem; fi \
 && export PIP_CERT=/tmp/pip-ca.pem PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
 && if [ -n "${TORCH_INDEX_URL}" ]; then \
      /opt/vidx/venv/bin/pip install -q --index-url "${TORCH_INDEX_URL}" 'torch==2.14.1' 'torchvision==0.29.1'; \
    fi \
 && read -r -a index_args <<< "${PIP_INDEX_ARGS}" \
 && /opt/vidx/venv/bin/pip install -q "${index_args[@]}" "/opt/vidx/src[${VIDX_EXTRA}]" \
 && rm -rf /opt/vidx/src/build /tmp/pip-ca.pem /root/.cache \
 && /opt/vidx/venv/bin/python -c 'import faiss, torch, decord, pyspark, vidx; print("faiss", faiss.__version__, "torch", torch.__version__)'

COPY jobs /opt/vidx/jobs
COPY infra/k8s/spark/gpu-discovery.sh /opt/vidx/bin/gpu-discovery.sh
COPY infra/docker/spark-entrypoint.sh /opt/vidx/bin/spark-entrypoint.sh

# SPARK_HOME is pyspark's own folder: its jars include spark-kubernetes, so no separate Spark
# distribution is needed. CUDA_DEVICE_ORDER=PCI_BUS_ID makes CUDA ordinals equal nvidia-smi indices,
# which the discovery script reports and Spark assigns to tasks. UID 185 is the spark user of Apache Spark's images (pod templates run as it).
ENV PATH=/opt/vidx/venv/bin:$PATH \
    SPARK_HOME=/opt/vidx/venv/lib/python3.11/site-packages/pyspark \
    JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 \
    PYSPARK_PYTHON=/opt/vidx/venv/bin/python \
    PYSPARK_DRIVER_PYTHON=/opt/vidx/venv/bin/python \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    CUDA_DEVICE_ORDER=PCI_BUS_ID \
    PYTHONUNBUFFERED=1

RUN useradd --uid 185 --create-home --home-dir /home/spark spark \
 && mkdir -p /opt/vidx/work && chown spark /opt/vidx/work
WORKDIR /opt/vidx/work
USER 185
ENTRYPOINT ["/opt/vidx/bin/spark-entrypoint.sh"]
CMD ["vidx", "--help"]
