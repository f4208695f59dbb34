# vidx query server: `vidx serve` over the published index (follows CURRENT, swaps atomically).
# No Java and no GPU: search runs on CPU (faiss-cpu), text queries are encoded on CPU. Build args
# as in executor.Dockerfile (EXTRA_CA_PEM, PIP_INDEX_ARGS, TORCH_INDEX_URL).
ARG BASE=debian:bookworm-slim
FROM ${BASE}

ARG EXTRA_CA_PEM=""
ARG PIP_INDEX_ARGS=""
ARG TORCH_INDEX_URL=""

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Unpinned on purpose: bookworm point releases replace package versions on the mirror, so exact
# pins stop building; the suite already fixes the majors (Python 3.11, OpenJDK 17).
# hadolint ignore=DL3008
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3.11 python3.11-venv tini ca-certificates >/dev/null \
 && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml README.md /opt/vidx/src/
COPY lib /opt/vidx/src/lib
COPY schemas /opt/vidx/src/schemas

RUN python3.11 -m venv /opt/vidx/venv \
 && cp /etc/ssl/certs/ca-certificates.crt /tmp/pip-ca.pem \
 && if [ -n "${EXTRA_CA_PEM}" ]; then printf '%s\n' "${EXTRA_CA_PEM}" >> /tmp/pip-ca.pem; fi \
 && export PIP_CERT=/tmp/pip-ca.pem PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
 && if [ -n "${TORCH_INDEX_URL}" ]; then \
      /opt/vidx/venv/bin/pip install -q --index-url "${TORCH_INDEX_URL}" 'torch==2.14.1' 'torchvision==0.29.1'; \
    fi \
 && read -r -a index_args <<< "${PIP_INDEX_ARGS}" \
 && /opt/vidx/venv/bin/pip install -q "${index_args[@]}" "/opt/vidx/src[cpu]" \
 && rm -rf /opt/vidx/src/build /tmp/pip-ca.pem /root/.cache \
 && /opt/vidx/venv/bin/python -c 'import faiss, fastapi, vidx.serve.app'

ENV PATH=/opt/vidx/venv/bin:$PATH \
    PYTHONUNBUFFERED=1

RUN useradd --uid 10001 --create-home --home-dir /home/vidx vidx
USER 10001
EXPOSE 8000
# The warehouse comes from VIDX_WAREHOUSE (e.g. s3://bucket/vidx) and AWS_* variables.
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["vidx", "serve", "--host", "0.0.0.0", "--port", "8000"]
