# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODEL_ROOT ?= runs/models
REPORT_DIR ?= runs/report
PRESET ?= small
# Models trained at once, each in its own process (python -m models train --jobs): a small model keeps
# ~1.3 of 2 cores busy, so two side by side, one thread each, train the preset faster.
TRAIN_JOBS ?= 2

export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

.PHONY: venv demo test test-slow test-docker test-gpu test-apps test-ci-slow bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m models train --preset $(PRESET) --out $(MODEL_ROOT) --jobs $(TRAIN_JOBS)
	$(PY) -m evaluation --model-root $(MODEL_ROOT) --out $(REPORT_DIR)

# Two pytest-xdist workers: the suite is mostly single-threaded (12 min 4 s in one process, 6 min
# 2 s in two with --dist loadscope, from a fresh clone on a quiet 2-core machine); TEST_WORKERS=0
# for one process.
# --dist loadscope keeps each test module on one worker: tests/test_serving_reload.py's tests evolve
# one model directory in file order, and a module's servers and exports are then built once.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# The keras.applications export matrix (issue 11): eleven families, 30-200 s each on two cores. An
# export is mostly single-threaded tracing, so two pytest workers (pytest-xdist) share the cores.
TEST_APPS_WORKERS ?= 2
test-apps: $(STAMP)
	$(PY) -m pytest -q -m slow -n $(TEST_APPS_WORKERS) tests/test_export_applications.py

# The slow suites CI runs after `make test` (tiny fixtures built once for all of them).
CI_SLOW_TESTS = tests/test_evaluation_e2e.py tests/test_causal.py tests/test_segmenter.py \
	tests/test_distributed_training.py tests/test_folder_training.py tests/test_experiments_faithfulness.py \
	tests/test_foreign_savedmodels.py tests/test_ray_evaluation.py tests/test_summaries_models.py \
	tests/test_findings_tiny.py tests/test_train_export.py tests/test_methods_parity.py \
	tests/test_faithfulness_parity.py
test-ci-slow: $(STAMP)
	$(PY) -m pytest -q -m slow $(CI_SLOW_TESTS)

# Xplique 2.0.2 pins tensorflow<=2.20: its own venv, for the parity tests (tests/test_methods_parity.py,
# tests/test_faithfulness_parity.py; skipped without it) and bench/bench_methods.py.
XPLIQUE_VENV ?= .venv-xplique
.PHONY: xplique-venv
$(XPLIQUE_VENV)/.installed: bench/xplique-requirements.txt
	test -x $(XPLIQUE_VENV)/bin/python || $(PYTHON) -m venv $(XPLIQUE_VENV)
	$(XPLIQUE_VENV)/bin/pip install --quiet -r bench/xplique-requirements.txt
	$(XPLIQUE_VENV)/bin/pip install --quiet --no-deps tf_keras==2.20.1 xplique==2.0.2
	$(XPLIQUE_VENV)/bin/python -c "import xplique, tf_keras, tensorflow"
	touch $@
xplique-venv: $(XPLIQUE_VENV)/.installed

test-docker: $(STAMP)
	$(PY) -m pytest -q -m docker

test-gpu: $(STAMP)
	$(PY) -m pytest -q -m gpu

bench: $(STAMP)
	$(PY) -m bench.bench_datasets
	$(PY) -m bench.bench_training
	$(PY) -m bench.bench_explain
	$(PY) -m bench.bench_serving
	$(PY) -m bench.bench_evaluation --model-root $(MODEL_ROOT)

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

# Reliability suites (issue 6); figures land in bench/RESULTS.md via `make reliability`.
RELIABILITY_OUT ?= runs/reliability
FUZZ_EXAMPLES ?= 5000
LOAD_SECONDS ?= 12
.PHONY: test-load test-fuzz test-faults test-security reliability

test-load: $(STAMP)
	RELIABILITY_OUT=$(RELIABILITY_OUT) LOAD_SECONDS=$(LOAD_SECONDS) $(PY) -m pytest -q -m "load or not slow" tests/test_reliability_load.py

test-fuzz: $(STAMP)
	RELIABILITY_OUT=$(RELIABILITY_OUT) FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -m "fuzz or not slow" tests/test_reliability_fuzz.py tests/test_http_fuzz.py

test-faults: $(STAMP)
	RELIABILITY_OUT=$(RELIABILITY_OUT) $(PY) -m pytest -q -m "faults or not slow" tests/test_reliability_faults.py

test-security: $(STAMP)
	RELIABILITY_OUT=$(RELIABILITY_OUT) $(PY) -m pytest -q -m security tests/test_reliability_security.py

reliability: test-load test-fuzz test-faults test-security
	$(PY) -m bench.run_load --report $(RELIABILITY_OUT)

# checkov (Kubernetes security scan of deploy/k8s, tests/test_k8s_manifests.py) has many dependencies:
# it lives in its own venv so that it never changes .venv's tensorflow/protobuf/grpcio.
TOOLS_VENV ?= .venv-tools
.PHONY: k8s-tools test-k8s
$(TOOLS_VENV)/.installed:
	test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS_VENV)/bin/python -m pip install --quiet 'checkov>=3.3.30,<3.4'
	touch $(TOOLS_VENV)/.installed

k8s-tools: $(TOOLS_VENV)/.installed

test-k8s: $(STAMP) k8s-tools
	$(PY) -m pytest -q tests/test_k8s_manifests.py
