# Entry points of the README. Each target works from a fresh clone: it creates
# the virtualenv in $(VENV) and installs the package with what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Use the smaller CPU build of TensorFlow unless a GPU is visible.
LEAF_AUDIO_TENSORFLOW ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo tensorflow || echo tensorflow-cpu)
export LEAF_AUDIO_TENSORFLOW
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install test test-fast train train-two-workers clean-venv

# The main run: LEAF on the embedded synthetic dataset, then test and export.
RUN_DIR ?= runs/default
# Space-separated .gin files, composed in order.
GIN_CONFIGS ?= gin_configs/default.gin

# One virtualenv; training needs the `experiments` extra, the tests the
# `test` extra (which includes it).
$(VENV)/.installed-%: setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$*]'
	touch $@

.PRECIOUS: $(VENV)/.installed-%

install: $(VENV)/.installed-test

# Test files run in parallel processes, one per core (at most 4: each holds
# TensorFlow); a file's tests stay in one process. Files start in collection
# order (tests/conftest.py puts the longest first), not xdist's order by test
# count. TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= auto
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --maxprocesses=4 --dist loadfile --no-loadscope-reorder

# The package's bytecode, compiled once: the suite starts about 80 Python
# processes, which would each compile it again where PYTHONDONTWRITEBYTECODE
# is set (as on CI machines).
COMPILE := $(BIN)/python -m compileall -q leaf_audio experiments > /dev/null

# The full suite (what CI runs).
test: $(VENV)/.installed-test
	$(COMPILE)
	$(PYTEST) --durations=25 tests

# The suite without the tests marked slow (a few minutes), for development.
test-fast: $(VENV)/.installed-test
	$(COMPILE)
	$(PYTEST) -m "not slow" tests

train: $(VENV)/.installed-experiments
	$(BIN)/python -m experiments.train $(addprefix --gin_config=,$(GIN_CONFIGS)) --model_dir=$(RUN_DIR)

# Two workers on this machine (localhost ports 12345 and 12346), one model:
# the multi-worker set-up of docs/distributed.md, on the embedded dataset.
TWO_WORKER_DIR ?= runs/two_workers
train-two-workers: $(VENV)/.installed-experiments
	for i in 0 1; do \
	  CUDA_VISIBLE_DEVICES=-1 TF_CONFIG='{"cluster": {"worker": ["localhost:12345", "localhost:12346"]}, "task": {"type": "worker", "index": '$$i'}}' \
	  $(BIN)/python -m experiments.train --strategy=multi_worker \
	    $(addprefix --gin_config=,$(GIN_CONFIGS)) --model_dir=$(TWO_WORKER_DIR) & \
	done; wait

clean-venv:
	rm -rf $(VENV)
