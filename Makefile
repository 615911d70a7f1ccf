# Two commands do everything on a fresh machine:
#   make run    set up, train on the bundled data, evaluate, route example prompts
#   make test   set up, run the whole test suite (what .ci/run calls)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export LITELLM_LOCAL_MODEL_COST_MAP ?= True
export TOKENIZERS_PARALLELISM ?= false
# Machines here set PYTHONDONTWRITEBYTECODE=1, and uv, unlike pip, compiles nothing at install, so every process
# compiled its imports from source again: sentence-transformers with torch 20 s instead of 8 s, scikit-learn and
# onnxruntime 6 s instead of 2 s, in each worker process and test subprocess too. Python caches them on first use.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup run test test-fast bench bench-outcomes train-bench load chaos demo serve lint clean

setup: $(VENV)/.installed

# torch is installed first, from the pinned CPU build, and kept by constraints.txt so that
# sentence-transformers never pulls the CUDA wheels. uv installs the same packages as pip in about a seventh of
# the time (16 s against 116 s on a fresh 2-core machine); pip does it if uv cannot.
# uv reads no pip configuration: it gets pip's find-links (where the CPU torch wheel lies) passed on.
FIND_LINKS := $(or $(PIP_FIND_LINKS),$(shell python3 -m pip config get global.find-links 2>/dev/null))
UV_INSTALL = $(VENV)/bin/uv pip install --quiet --python $(PY) $(foreach d,$(FIND_LINKS),--find-links $(d)) -c constraints.txt
PIP_INSTALL = $(PY) -m pip install --quiet -c constraints.txt

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	( $(PY) -m pip install --quiet uv && $(UV_INSTALL) torch==2.13.0 && $(UV_INSTALL) -e ".[dev,ray]" ) \
	  || { echo "uv could not install; installing with pip"; $(PIP_INSTALL) torch==2.13.0 && $(PIP_INSTALL) -e ".[dev,ray]"; }
	touch $@

run: setup
	$(VENV)/bin/router-ml demo --out artifacts/router $(foreach f,$(wildcard ../shared/eval/dev.jsonl ../shared/eval/multilingual-dev.jsonl),--dev $(f))

test: setup
	$(PY) -m pytest

# the inner loop: everything but the full-data training, the notebook and the chaos runs
test-fast: setup
	$(PY) -m pytest -m "not slow"

bench: setup
	$(PY) scripts/benchmark.py

# success heads on ../shared/outcomes by grouped cross-validation, and a quality route's speed
bench-outcomes: setup
	$(PY) scripts/bench_outcomes.py --json artifacts/bench-outcomes.json

train-bench: setup
	$(PY) scripts/train_bench.py

load: setup
	$(PY) scripts/load_test.py --model artifacts/router

chaos: setup
	$(PY) scripts/chaos.py

serve: setup
	$(VENV)/bin/router-ml serve --model artifacts/router

demo: setup
	$(PY) scripts/demo_dispatch.py --model artifacts/router

lint: setup
	$(VENV)/bin/ruff check router_ml tests scripts
	$(VENV)/bin/ruff format --check router_ml tests scripts

clean:
	rm -rf artifacts .pytest_cache
