# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv if missing,
# install the pinned dependencies (once per pyproject.toml change), check Java and run.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
PIP := $(BIN)/python -m pip --disable-pip-version-check
export PYSPARK_PYTHON := $(abspath $(BIN)/python)
export PYSPARK_DRIVER_PYTHON := $(abspath $(BIN)/python)
export SPARK_LOCAL_IP := 127.0.0.1
export PYTHONUNBUFFERED := 1

.PHONY: install java demo test lint typecheck unit integration e2e clean bench bench-scale airflow browser image-tools image-cpu image-gpu image-query

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "vidx needs Python 3.11 (torch 2.14.1 wheels)"'
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	@echo ">> installing vidx and pinned dependencies into $(VENV) (torch alone is ~5 GB; a minute from local wheels)"
	@# pip's own ENOSPC message comes late and names no remedy: warn up front instead.
	@avail=$$(df -Pk . | awk 'NR==2 {print $$4}'); if [ "$${avail:-0}" -lt 9000000 ]; then \
		echo "!! only $$((avail / 1024)) MiB free on $$(pwd): the venv needs about 8 GiB." \
		"Free disk (make clean; rm -rf /tmp/vidx-bench-scale ~/.cache/pip) if the install fails." >&2; fi
	$(PIP) install -q --upgrade pip 2> >(grep -v '^WARNING: Location' >&2)
	$(PIP) install -q -e '.[test]' 2> >(grep -v '^WARNING: Location' >&2)
	@# clip-retrieval only for its client module (tests); its own dependencies would pull a second torch.
	$(PIP) install -q --no-deps 'clip-retrieval==2.45.0' 2> >(grep -v '^WARNING: Location' >&2)
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# Airflow in its own venv (its Spark provider's pyspark-client would overwrite .venv's pyspark).
AF_VENV := .venv-airflow
AF_REQS := infra/airflow-requirements.txt
AF_STAMP := $(AF_VENV)/.installed-$(shell cat $(AF_REQS) | sha1sum | cut -c1-12)

$(AF_VENV)/bin/python:
	$(PYTHON) -m venv $(AF_VENV)

$(AF_STAMP): $(AF_VENV)/bin/python $(AF_REQS)
	@echo ">> installing Airflow + the Spark provider into $(AF_VENV) (about 30 s from the local index)"
	$(AF_VENV)/bin/python -m pip --disable-pip-version-check install -q -r $(AF_REQS) 2> >(grep -v '^WARNING: Location' >&2)
	rm -f $(AF_VENV)/.installed-*
	touch $(AF_STAMP)

airflow: $(AF_STAMP)

java:
	@bash infra/ensure_java.sh

# Debian's chromium + chromium-driver for the search page's browser test: Playwright drives the
# system browser (`playwright install` cannot download one here). apt runs only when one is missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
		echo ">> installing Debian's chromium and chromium-driver (apt)"; \
		$(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	fi

demo: install java
	$(BIN)/vidx demo --workdir $(or $(WORKDIR),./vidx-demo)

lint: install
	$(BIN)/ruff check lib schemas tests jobs bench airflow_dags

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit -q

test: install java lint typecheck airflow browser
	$(BIN)/pytest tests -q --durations=15

bench: install java
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Container images (outside `make test`): buildah + crun, chroot isolation, on a Debian base made by
# debootstrap (no registry pulls). image-cpu also smoke-runs `vidx demo` inside the image. Needs
# root and ~20 GB free disk while building (the CPU image itself is ~8 GB: torch's CUDA wheels).
image-tools:
	@command -v buildah >/dev/null && command -v crun >/dev/null && command -v debootstrap >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah crun debootstrap >/dev/null)

image-cpu: image-tools
	bash infra/docker/build.sh cpu --smoke

image-gpu: image-tools
	bash infra/docker/build.sh gpu

image-query: image-tools
	bash infra/docker/build.sh query

# Scale rehearsal (issue 12): synthetic 1M/3M/10M x 512 warehouses, per-stage wall time and driver
# peak RSS -> bench/results/scale-*.json. Hours on 2 cores; 10M needs ~45 GB free under SCALE_ROOT.
# `make bench-scale SIZES=1000000` runs one size.
SIZES ?= 1000000,3000000,10000000
SCALE_ROOT ?= /tmp/vidx-bench-scale
bench-scale: install java
	$(BIN)/python -m bench.scale --sizes $(SIZES) --root $(SCALE_ROOT)

clean:
	rm -rf vidx-demo .pytest_cache .mypy_cache .ruff_cache
