# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODEL_ROOT ?= runs/models
REPORT_DIR ?= runs/report
PRESET ?= small

export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

.PHONY: venv demo test test-slow test-docker test-gpu bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m models train --preset $(PRESET) --out $(MODEL_ROOT)
	$(PY) -m evaluation --model-root $(MODEL_ROOT) --out $(REPORT_DIR)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

test-docker: $(STAMP)
	$(PY) -m pytest -q -m docker

test-gpu: $(STAMP)
	$(PY) -m pytest -q -m gpu

bench: $(STAMP)
	$(PY) -m bench.run_all

clean:
	rm -rf runs .pytest_cache

IMAGE ?= localhost/cnn-explain-serving:dev
SMOKE_MODEL_ROOT ?=
.PHONY: docker-smoke docker-lint
# Builds the image with podman, runs it with a model root mounted and calls Predict and Grad-CAM.
docker-smoke: $(STAMP)
	PYTHON=$(PY) IMAGE=$(IMAGE) bash deploy/smoke.sh $(SMOKE_MODEL_ROOT)

docker-lint:
	hadolint Dockerfile
